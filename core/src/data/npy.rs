//! A small reader and writer for NumPy's `.npy` format (versions 1–3): the magic `\x93NUMPY`, a version,
//! a header length (u16 in v1, u32 in v2/v3), an ASCII/UTF-8 Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }` padded with spaces and a newline, then
//! the raw data. Only little-endian numbers in C order are accepted; anything else is a clear error.

use crate::error::{Error, Result};

/// Element types this reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
    I32,
    I64,
    U32,
    U64,
}

impl NpyDtype {
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F32 | NpyDtype::I32 | NpyDtype::U32 => 4,
            _ => 8,
        }
    }
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
            NpyDtype::I32 => "<i4",
            NpyDtype::I64 => "<i8",
            NpyDtype::U32 => "<u4",
            NpyDtype::U64 => "<u8",
        }
    }
}

/// A parsed `.npy` array: dtype, shape and the raw little-endian data bytes.
#[derive(Debug)]
pub struct NpyArray<'a> {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

fn fmt_err(path: &str, detail: impl Into<String>) -> Error {
    Error::Format { path: path.to_string(), detail: detail.into() }
}

/// Parses the header and checks that the data length matches the shape exactly.
pub fn parse<'a>(path: &str, bytes: &'a [u8]) -> Result<NpyArray<'a>> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(fmt_err(path, "not a .npy file (it must start with \\x93NUMPY)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(fmt_err(path, "truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(fmt_err(path, format!(".npy format version {v} is not supported (1, 2 or 3)"))),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| fmt_err(path, "truncated .npy header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| fmt_err(path, ".npy header is not text"))?;
    let dict = parse_dict(header).map_err(|d| fmt_err(path, format!("bad .npy header ({d}): {}", header.trim())))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            _ => {}
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err(fmt_err(path, ".npy header lacks descr, fortran_order or shape"));
    };
    if fortran {
        return Err(fmt_err(path, "the array is in Fortran order; save it in C order (np.ascontiguousarray)"));
    }
    let dtype = match descr.as_str() {
        "<f4" => NpyDtype::F32,
        "<f8" => NpyDtype::F64,
        "<i4" => NpyDtype::I32,
        "<i8" => NpyDtype::I64,
        "<u4" => NpyDtype::U32,
        "<u8" => NpyDtype::U64,
        d if d.starts_with('>') => return Err(fmt_err(path, format!("dtype {d} is big-endian; save it little-endian (.astype('<f4'))"))),
        d => return Err(fmt_err(path, format!("dtype {d} is not supported (float32 '<f4' for features; '<i4'/'<i8' for ids)"))),
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| fmt_err(path, "shape overflows"))?;
    let need = count.checked_mul(dtype.size()).ok_or_else(|| fmt_err(path, "shape overflows"))?;
    let data = &bytes[end..];
    if data.len() != need {
        return Err(fmt_err(path, format!("shape {shape:?} of {} needs {need} data bytes, the file has {} (truncated or wrong header)", dtype.descr(), data.len())));
    }
    Ok(NpyArray { dtype, shape, data })
}

/// Reads a 2-D float32 array: (rows, cols, row-major data).
pub fn read_f32_2d(path: &str, bytes: &[u8]) -> Result<(usize, usize, Vec<f32>)> {
    let a = parse(path, bytes)?;
    if a.dtype != NpyDtype::F32 {
        return Err(fmt_err(path, format!("dtype {} where float32 ('<f4') is needed; convert with .astype(np.float32)", a.dtype.descr())));
    }
    if a.shape.len() != 2 {
        return Err(fmt_err(path, format!("shape {:?} where a 2-D (entities, dim) matrix is needed", a.shape)));
    }
    let data = a.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((a.shape[0], a.shape[1], data))
}

/// Reads a 1-D integer array (ids) of any supported integer dtype.
pub fn read_ids(path: &str, bytes: &[u8]) -> Result<Vec<u64>> {
    let a = parse(path, bytes)?;
    if a.shape.len() != 1 && !(a.shape.len() == 2 && a.shape[1] == 1) {
        return Err(fmt_err(path, format!("shape {:?} where a 1-D id list is needed", a.shape)));
    }
    let neg = || fmt_err(path, "negative id");
    match a.dtype {
        NpyDtype::I32 => a.data.chunks_exact(4).map(|c| u64::try_from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])).map_err(|_| neg())).collect(),
        NpyDtype::U32 => Ok(a.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64).collect()),
        NpyDtype::I64 => a
            .data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::try_from(i64::from_le_bytes(b)).map_err(|_| neg())
            })
            .collect(),
        NpyDtype::U64 => Ok(a
            .data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect()),
        d => Err(fmt_err(path, format!("dtype {} where integer ids are needed", d.descr()))),
    }
}

/// Writes a version-1 `.npy` of the given dtype and shape from raw little-endian bytes.
pub fn write(dtype: NpyDtype, shape: &[usize], data_le: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype.descr(), shape_s);
    // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
    let total = 10 + header.len() + 1;
    let pad = (64 - total % 64) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data_le.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data_le);
    out
}

/// Writes a 2-D float32 `.npy`.
pub fn write_f32_2d(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write(NpyDtype::F32, &[rows, cols], &bytes)
}

/// Writes a 1-D int64 `.npy` of ids.
pub fn write_ids(ids: &[u64]) -> Vec<u8> {
    let bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    write(NpyDtype::I64, &[ids.len()], &bytes)
}

enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header's Python dict literal (string keys; string, bool or int-tuple values).
fn parse_dict(s: &str) -> std::result::Result<Vec<(String, Value)>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> std::result::Result<String, String> {
        let q = *c.get(*i).ok_or("unexpected end")?;
        if q != '\'' && q != '"' {
            return Err("expected a quoted string".into());
        }
        *i += 1;
        let st = *i;
        while *i < c.len() && c[*i] != q {
            *i += 1;
        }
        if *i >= c.len() {
            return Err("unterminated string".into());
        }
        let out: String = c[st..*i].iter().collect();
        *i += 1;
        Ok(out)
    };
    skip(&mut i);
    if c.get(i) != Some(&'{') {
        return Err("expected '{'".into());
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip(&mut i);
        match c.get(i) {
            Some('}') => break,
            None => return Err("unexpected end".into()),
            _ => {}
        }
        let key = string(&mut i)?;
        skip(&mut i);
        if c.get(i) != Some(&':') {
            return Err("expected ':'".into());
        }
        i += 1;
        skip(&mut i);
        let v = match c.get(i) {
            Some('\'') | Some('"') => Value::Str(string(&mut i)?),
            Some('T') if c[i..].starts_with(&['T', 'r', 'u', 'e']) => {
                i += 4;
                Value::Bool(true)
            }
            Some('F') if c[i..].starts_with(&['F', 'a', 'l', 's', 'e']) => {
                i += 5;
                Value::Bool(false)
            }
            Some('(') => {
                i += 1;
                let mut dims = Vec::new();
                loop {
                    skip(&mut i);
                    match c.get(i) {
                        Some(')') => {
                            i += 1;
                            break;
                        }
                        Some(',') => i += 1,
                        Some(d) if d.is_ascii_digit() => {
                            let st = i;
                            while i < c.len() && c[i].is_ascii_digit() {
                                i += 1;
                            }
                            let num: String = c[st..i].iter().collect();
                            // Python 2 headers may write longs as `3L`.
                            if c.get(i) == Some(&'L') {
                                i += 1;
                            }
                            dims.push(num.parse::<usize>().map_err(|_| "dimension too large")?);
                        }
                        _ => return Err("bad shape tuple".into()),
                    }
                }
                Value::Tuple(dims)
            }
            _ => return Err(format!("unsupported value for '{key}'")),
        };
        out.push((key, v));
        skip(&mut i);
        match c.get(i) {
            Some(',') => i += 1,
            Some('}') => break,
            _ => return Err("expected ',' or '}'".into()),
        }
    }
    Ok(out)
}
