//! The file layer: a dataset is a set of named byte blobs. [`DirFiles`] reads them from a directory
//! (native), [`MemFiles`] holds them in memory (the embedded demo, the browser, tests). Everything above
//! this module parses bytes, so the same readers run natively and in wasm32.
//!
//! Gzip is recognised by its magic bytes (`1f 8b`), not by the name: `triples_1` may be gzip and
//! `triples_1.gz` must be. A file named `*.gz` that is not gzip is an error, not a silent pass-through.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the files of one dataset come from. Names are relative (`triples_1`, `721_5fold/1/train_links`).
pub trait FileSource {
    /// The path to show in messages for `name` (e.g. `/data/zh_en/triples_1.gz`).
    fn describe(&self, name: &str) -> String;
    /// The raw bytes of `name`, `Ok(None)` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>>;
    /// Whether `name` exists (without reading it where the source can tell).
    fn exists(&self, name: &str) -> bool {
        matches!(self.read(name), Ok(Some(_)))
    }
}

/// Files held in memory, by name.
#[derive(Clone, Debug, Default)]
pub struct MemFiles {
    /// Shown before each name in messages (e.g. `demo:`).
    pub label: String,
    pub files: BTreeMap<String, Cow<'static, [u8]>>,
}

impl MemFiles {
    pub fn new(label: impl Into<String>) -> Self {
        MemFiles { label: label.into(), files: BTreeMap::new() }
    }
    /// Adds (or replaces) a file.
    pub fn insert(&mut self, name: impl Into<String>, bytes: impl Into<Cow<'static, [u8]>>) {
        self.files.insert(name.into(), bytes.into());
    }
    /// The bytes of `name`, if present (no decompression).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|c| c.as_ref())
    }
    /// Removes a file, returning its bytes.
    pub fn remove(&mut self, name: &str) -> Option<Cow<'static, [u8]>> {
        self.files.remove(name)
    }
    /// Writes every file under `dir` (creating sub-directories).
    pub fn write_to_dir(&self, dir: &Path) -> Result<()> {
        for (name, bytes) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }
}

impl FileSource for MemFiles {
    fn describe(&self, name: &str) -> String {
        if self.label.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.label, name)
        }
    }
    fn read(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>> {
        Ok(self.files.get(name).map(|c| Cow::Borrowed(c.as_ref())))
    }
}

/// Files in a directory on disk.
#[derive(Clone, Debug)]
pub struct DirFiles {
    pub root: PathBuf,
}

impl DirFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirFiles { root: root.into() }
    }
}

impl FileSource for DirFiles {
    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
    fn read(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>> {
        let path = self.root.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(Cow::Owned(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A directory where a file is expected reads as "absent" on some platforms and as an error on
            // others; report it as an error so the user sees it.
            Err(e) => Err(io_err(&path, e)),
        }
    }
    fn exists(&self, name: &str) -> bool {
        self.root.join(name).is_file()
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// One file of a dataset, found and decompressed.
#[derive(Debug)]
pub struct TextFile<'a> {
    /// The path to show in messages.
    pub path: String,
    /// The decompressed bytes (not yet checked for UTF-8: that is done per line).
    pub bytes: Cow<'a, [u8]>,
}

/// True when `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decompresses gzip (recognised by its magic bytes) and passes anything else through; a name ending in
/// `.gz` whose bytes are not gzip is a [`Error::Format`].
pub fn decode<'a>(path: &str, bytes: Cow<'a, [u8]>) -> Result<Cow<'a, [u8]>> {
    if is_gzip(&bytes) {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
        let mut dec = flate2::read::MultiGzDecoder::new(&bytes[..]);
        dec.read_to_end(&mut out).map_err(|e| Error::Format { path: path.to_string(), detail: format!("corrupt gzip data: {e}") })?;
        Ok(Cow::Owned(out))
    } else if path.ends_with(".gz") {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Err(Error::Format {
            path: path.to_string(),
            detail: format!(
                "the name ends in .gz but the file is not gzip (first bytes: {}; gzip starts with 1f 8b)",
                if head.is_empty() { "none, the file is empty".to_string() } else { head.join(" ") }
            ),
        })
    } else {
        Ok(bytes)
    }
}

/// Compresses `bytes` with gzip (default level).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Finds `name` or `name.gz` in `src` and decompresses it. `Ok(None)` when neither exists.
pub fn open<'a>(src: &'a dyn FileSource, name: &str) -> Result<Option<TextFile<'a>>> {
    for candidate in [name.to_string(), format!("{name}.gz")] {
        if let Some(raw) = src.read(&candidate)? {
            let path = src.describe(&candidate);
            let bytes = decode(&path, raw)?;
            return Ok(Some(TextFile { path, bytes }));
        }
    }
    Ok(None)
}

/// Splits bytes into lines (1-based numbers), dropping a trailing `\r` and the empty piece after a final
/// newline. Lines are not yet UTF-8 checked.
pub(crate) fn raw_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let trailing_newline = bytes.last() == Some(&b'\n');
    let n_pieces = bytes.split(|&b| b == b'\n').count();
    let keep = if trailing_newline || bytes.is_empty() { n_pieces.saturating_sub(1) } else { n_pieces };
    bytes.split(|&b| b == b'\n').take(keep).enumerate().map(|(i, l)| {
        let l = if l.last() == Some(&b'\r') { &l[..l.len() - 1] } else { l };
        (i + 1, l)
    })
}
