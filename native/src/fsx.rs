//! Atomic file writes: write a temporary file beside the target, flush it to disk, rename it over the
//! target. A reader (or a resumed run) sees the old file or the new one, never half of one.

use std::io::Write;
use std::path::Path;

use mmea_core::Error;

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source: e }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> mmea_core::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Appends one line (a JSON record) and flushes it.
pub fn append_line(path: &Path, line: &str) -> mmea_core::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io(path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| io(path, e))?;
    f.write_all(b"\n").map_err(|e| io(path, e))?;
    f.sync_data().map_err(|e| io(path, e))
}

pub fn read(path: &Path) -> mmea_core::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io(path, e))
}

pub fn create_dir(path: &Path) -> mmea_core::Result<()> {
    std::fs::create_dir_all(path).map_err(|e| io(path, e))
}
