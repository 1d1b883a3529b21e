//! A restricted reader for the pickled image-feature dicts of EVA, MCLEA and MEAformer
//! (`zh_en_GA_id_img_feature_dict.pkl`, `FB15K-DB15K_id_img_feature_dict.pkl`, ...): a Python dict
//! `{entity id: numpy vector}` written by `pickle.dump`, protocols 2 to 5, from Python 2 or 3, by numpy 1.x
//! (`numpy.core.*`) or 2.x (`numpy._core.*`).
//!
//! It executes nothing. It interprets the opcodes such a file uses and rebuilds only what the few globals
//! it allows would build: `_reconstruct` + `ndarray` + BUILD (protocols 2–4), `_frombuffer` (protocol 5),
//! `dtype`, `scalar` (numpy integer keys), `_codecs.encode(str, 'latin1')` (Python 3 writing protocol 2)
//! and `bytes()`. Any other global (`os.system`, `builtins.eval`, ...) is refused where it is named, and
//! so is a REDUCE on anything but those globals, the opcodes that build objects of classes (INST, OBJ,
//! NEWOBJ), extensions, persistent ids and out-of-band buffers.
//!
//! Every length prefix is checked against the bytes that are left, so nothing larger than the input is
//! allocated from a prefix; tuples nest at most [`MAX_DEPTH`] deep and lists and dicts do not nest, so
//! nothing recurses; derived data (decoded strings, the output) is bounded by the input's length. Errors
//! name the file and the byte offset of the opcode.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use super::modality::RawFeatures;
use crate::error::{Error, Result};

/// How deep tuples may nest (a numpy array's state is 3 deep).
pub const MAX_DEPTH: usize = 32;
/// At most this many dimensions per array (numpy's own limit is 64).
const MAX_NDIM: usize = 32;
/// The output may be at most this many times the input's length (it can exceed it only when several keys
/// share one array object).
const OUTPUT_FACTOR: usize = 64;

fn fmt_err(path: &str, detail: impl Into<String>) -> Error {
    Error::Format { path: path.to_string(), detail: detail.into() }
}

/// Whether `bytes` look like a pickle (protocol 2 or later starts with the PROTO opcode 0x80) and not like
/// safetensors, whose first byte is that of a little-endian header length and whose ninth is `{`.
pub fn looks_like_pickle(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&0x80) {
        return false;
    }
    let safetensors = bytes.len() > 8 && bytes[8] == b'{' && {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(n) <= (bytes.len() - 8) as u64
    };
    !safetensors
}

/// The globals this reader allows; each is interpreted, never called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    /// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`: an empty array, filled by BUILD.
    Reconstruct,
    /// `numpy.core.multiarray.scalar(dtype, bytes)`: a numpy scalar (integer keys only).
    Scalar,
    Ndarray,
    Dtype,
    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)` (protocol 5).
    FromBuffer,
    /// `_codecs.encode(str, 'latin1')`: how Python 3 writes `bytes` in protocol 2.
    Encode,
    /// `bytes()`: how Python 3 writes an empty `bytes` in protocol 2.
    Bytes,
}

fn allowed_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Some(Global::Reconstruct),
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Some(Global::Scalar),
        ("numpy", "ndarray") => Some(Global::Ndarray),
        ("numpy", "dtype") => Some(Global::Dtype),
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Some(Global::FromBuffer),
        ("_codecs", "encode") => Some(Global::Encode),
        ("builtins" | "__builtin__", "bytes") => Some(Global::Bytes),
        _ => None,
    }
}

/// A numpy dtype as far as it matters here: byte order (`<`, `>`, `|`, `=`), kind (`f`, `i`, ...) and the
/// number after the kind (the item size for numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dtype {
    order: u8,
    kind: u8,
    size: u32,
}

impl Dtype {
    fn text(self) -> String {
        format!("{}{}{}", self.order as char, self.kind as char, self.size)
    }
    fn little(self) -> bool {
        self.order != b'>'
    }
}

/// An array being rebuilt: `_reconstruct` makes an empty one, BUILD gives it shape, dtype and data.
#[derive(Debug, Default)]
struct Array {
    shape: Vec<usize>,
    dtype: Option<Dtype>,
    data: Option<Rc<[u8]>>,
}

#[derive(Debug)]
struct Tuple {
    depth: usize,
    items: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Int(i128),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

#[derive(Debug, Default)]
struct Dict {
    entries: Vec<(Key, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float,
    Str(Rc<str>),
    /// `bytes`, `bytearray` or a Python 2 `str`.
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Dict>>),
    Global(Global),
    Dtype(Rc<Cell<Dtype>>),
    Array(Rc<RefCell<Array>>),
}

impl Value {
    /// The type with its article, for messages: `an int`, `a numpy array`, `None`.
    fn a_type(&self) -> String {
        match self.type_name() {
            "None" => "None".to_string(),
            t if t.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {t}"),
            t => format!("a {t}"),
        }
    }
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "numpy dtype",
            Value::Array(_) => "numpy array",
        }
    }
    /// Short text (at most 16 bytes) from a `str` or a Python 2 `str` (bytes, read as latin-1): dtype
    /// strings, byte orders, encodings.
    fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) if s.len() <= 16 => Some(s.to_string()),
            Value::Bytes(b) if b.len() <= 16 => Some(b.iter().map(|&c| c as char).collect()),
            _ => None,
        }
    }
    fn int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }
}

/// Reads a pickled `{entity id: numpy vector}` dict. Ids are the keys as decimal strings (int keys) or as
/// they are (str keys), in the dict's insertion order; vectors are float32 or float64 (read as float32),
/// 1-D or `(1, d)`, all of one length.
pub fn read_feature_dict(path: &str, bytes: &[u8]) -> Result<RawFeatures> {
    if bytes.first() != Some(&0x80) {
        return Err(fmt_err(path, "not a pickle of protocol 2 or later (it must start with the PROTO opcode 0x80); re-save it with pickle.dump(d, f, protocol=4)"));
    }
    let top = Machine::new(path, bytes).run()?;
    let Value::Dict(dict) = top else {
        return Err(fmt_err(path, format!("the pickle holds {}, not a dict of entity id to numpy vector", top.a_type())));
    };
    let dict = dict.borrow();
    if dict.entries.is_empty() {
        return Err(fmt_err(path, "the dict is empty"));
    }
    let budget = bytes.len().saturating_mul(OUTPUT_FACTOR);
    let mut ids = Vec::with_capacity(dict.entries.len());
    let mut dim = None;
    let mut data: Vec<f32> = Vec::new();
    for (key, value) in &dict.entries {
        let id = match key {
            Key::Int(i) => i.to_string(),
            Key::Str(s) => s.to_string(),
            Key::Bytes(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| fmt_err(path, format!("the key {} is bytes that are not UTF-8 text", escape(&String::from_utf8_lossy(b)))))?
            }
        };
        let Value::Array(a) = value else {
            return Err(fmt_err(path, format!("the value of key {} is {}, not a numpy array", escape(&id), value.a_type())));
        };
        let a = a.borrow();
        let (Some(dtype), Some(raw)) = (a.dtype, a.data.as_ref()) else {
            return Err(fmt_err(path, format!("the array of key {} never got its data (no BUILD)", escape(&id))));
        };
        let d = match a.shape.as_slice() {
            [d] | [1, d] => *d,
            s => return Err(fmt_err(path, format!("the array of key {} has shape {s:?}; a 1-D vector (or a (1, d) row) is needed", escape(&id)))),
        };
        match dim {
            None if d == 0 => return Err(fmt_err(path, format!("the vector of key {} is empty (length 0)", escape(&id)))),
            None => dim = Some(d),
            Some(first) if first != d => {
                return Err(fmt_err(path, format!("the vector of key {} has {d} values, the first key's has {first}: all vectors need one length", escape(&id))));
            }
            Some(_) => {}
        }
        if data.len().saturating_add(d).saturating_mul(4) > budget {
            return Err(fmt_err(path, format!("the dict describes more than {OUTPUT_FACTOR}× its own size in vectors (keys sharing one array); refused")));
        }
        let start = data.len();
        match dtype.size {
            4 => data.extend(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            _ => data.extend(raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)),
        }
        if let Some(pos) = data[start..].iter().position(|v| !v.is_finite()) {
            return Err(fmt_err(path, format!("the vector of key {} has a non-finite value at position {pos} (as float32)", escape(&id))));
        }
        ids.push(id);
    }
    Ok(RawFeatures { path: path.to_string(), ids, dim: dim.unwrap_or(0), data })
}

/// A name or key for a message, with control characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(200) {
        let _ = write!(out, "{}", c.escape_debug());
    }
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

fn op_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// The pickle machine: a stack with marks and a memo, fed opcode by opcode.
struct Machine<'a> {
    path: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Where the opcode being run starts.
    at: usize,
    op: u8,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// Bytes that derived data (latin-1 decoded strings, dict keys) may still take.
    budget: usize,
}

impl<'a> Machine<'a> {
    fn new(path: &'a str, bytes: &'a [u8]) -> Self {
        Machine { path, bytes, pos: 0, at: 0, op: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), budget: bytes.len() }
    }

    fn err(&self, detail: impl std::fmt::Display) -> Error {
        fmt_err(self.path, format!("offset {} ({}): {detail}", self.at, op_name(self.op)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(fmt_err(self.path, format!("truncated at offset {}: {} at offset {} needs {n} more bytes, {left} are left", self.pos, op_name(self.op), self.at)));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A length that must fit in the bytes left.
    fn len64(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(fmt_err(self.path, format!("truncated at offset {}: {} at offset {} announces {n} bytes, {left} are left", self.pos, op_name(self.op), self.at)));
        }
        self.take(n as usize)
    }
    /// A text line (without its `\n`).
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(fmt_err(self.path, format!("truncated at offset {}: {} at offset {} has no end of line", self.bytes.len(), op_name(self.op), self.at)));
        };
        let l = self.take(n + 1)?;
        std::str::from_utf8(&l[..n]).map_err(|_| self.err("its argument is not UTF-8 text"))
    }
    fn utf8(&self, b: &[u8]) -> Result<Value> {
        std::str::from_utf8(b).map(|s| Value::Str(Rc::from(s))).map_err(|_| self.err("the string is not valid UTF-8"))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }
    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    fn top(&self) -> Result<&Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }
    /// The items above the last mark, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }
    fn tuple(&self, items: Vec<Value>) -> Result<Value> {
        let mut depth = 0;
        for v in &items {
            match v {
                Value::Tuple(t) => depth = depth.max(t.depth),
                Value::List(_) | Value::Dict(_) => return Err(self.err(format!("a {} inside a tuple is not part of a feature dict", v.type_name()))),
                _ => {}
            }
        }
        if depth + 1 > MAX_DEPTH {
            return Err(self.err(format!("tuples nest more than {MAX_DEPTH} deep")));
        }
        Ok(Value::Tuple(Rc::new(Tuple { depth: depth + 1, items })))
    }
    fn memo_get(&self, k: u64) -> Result<Value> {
        self.memo.get(&k).cloned().ok_or_else(|| self.err(format!("memo entry {k} was never stored")))
    }
    fn memo_put(&mut self, k: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(k, v);
        Ok(())
    }
    fn charge(&mut self, n: usize) -> Result<()> {
        if n > self.budget {
            return Err(self.err("the pickle derives more data than it holds (repeated keys or strings); refused"));
        }
        self.budget -= n;
        Ok(())
    }

    fn run(mut self) -> Result<Value> {
        loop {
            self.at = self.pos;
            if self.pos >= self.bytes.len() {
                self.op = 0;
                return Err(fmt_err(self.path, format!("truncated at offset {}: the pickle ends without STOP", self.pos)));
            }
            self.op = self.bytes[self.pos];
            self.pos += 1;
            match self.op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("pickle protocol {p} is not supported (2 to 5)")));
                    }
                }
                0x95 => {
                    let n = self.u64()?;
                    let left = (self.bytes.len() - self.pos) as u64;
                    if n > left {
                        return Err(fmt_err(self.path, format!("truncated at offset {}: FRAME at offset {} announces {n} bytes, {left} are left", self.pos, self.at)));
                    }
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                // --- numbers -----------------------------------------------------------------------
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i128));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v as i128));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v as i128));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.long(b)?;
                    self.push(v);
                }
                0x8b => {
                    let n = self.u32()?;
                    let b = self.len64(n as u64)?;
                    let v = self.long(b)?;
                    self.push(v);
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(l.parse::<i128>().map_err(|_| self.err(format!("'{}' is not an integer", escape(l))))?),
                    };
                    self.push(v);
                }
                b'L' => {
                    let l = self.line()?;
                    let v = l.strip_suffix('L').unwrap_or(l).parse::<i128>().map_err(|_| self.err(format!("'{}' is not an integer (or is too large)", escape(l))))?;
                    self.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float);
                }
                // --- strings -----------------------------------------------------------------------
                b'X' => {
                    let n = self.u32()?;
                    let b = self.len64(n as u64)?;
                    let v = self.utf8(b)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.u8()?;
                    let b = self.take(n as usize)?;
                    let v = self.utf8(b)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.u64()?;
                    let b = self.len64(n)?;
                    let v = self.utf8(b)?;
                    self.push(v);
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.arr()?);
                    if n < 0 {
                        return Err(self.err(format!("negative length {n}")));
                    }
                    let b = self.len64(n as u64)?;
                    self.push(Value::Bytes(Rc::from(b)));
                }
                b'U' | b'C' => {
                    let n = self.u8()?;
                    let b = self.take(n as usize)?;
                    self.push(Value::Bytes(Rc::from(b)));
                }
                b'B' => {
                    let n = self.u32()?;
                    let b = self.len64(n as u64)?;
                    self.push(Value::Bytes(Rc::from(b)));
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let b = self.len64(n)?;
                    self.push(Value::Bytes(Rc::from(b)));
                }
                // --- containers --------------------------------------------------------------------
                b')' => self.push(Value::Tuple(Rc::new(Tuple { depth: 1, items: Vec::new() }))),
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.push(t);
                }
                0x85..=0x87 => {
                    let n = (self.op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.push(t);
                }
                b']' => self.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.check_items(&items)?;
                    self.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = Value::Dict(Rc::default());
                    self.set_items(&d, items)?;
                    self.push(d);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, items)?;
                }
                // --- memo --------------------------------------------------------------------------
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(k as u64)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k as u64)?;
                }
                b'p' => {
                    let l = self.line()?;
                    let k = l.parse::<u64>().map_err(|_| self.err(format!("'{}' is not a memo key", escape(l))))?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    let v = self.memo_get(k as u64)?;
                    self.push(v);
                }
                b'j' => {
                    let k = self.u32()?;
                    let v = self.memo_get(k as u64)?;
                    self.push(v);
                }
                b'g' => {
                    let l = self.line()?;
                    let k = l.parse::<u64>().map_err(|_| self.err(format!("'{}' is not a memo key", escape(l))))?;
                    let v = self.memo_get(k)?;
                    self.push(v);
                }
                // --- globals and calls -------------------------------------------------------------
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.err(format!("STACK_GLOBAL needs two str, got {} and {}", module.type_name(), name.type_name())));
                    };
                    let g = self.global(module, name)?;
                    self.push(g);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.err(format!("REDUCE needs a tuple of arguments, got {}", args.a_type())));
                    };
                    let Value::Global(g) = f else {
                        return Err(self.err(format!("REDUCE calls {}, not one of the allowed numpy globals; refused", f.a_type())));
                    };
                    let v = self.reduce(g, &args.items)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(&target, &state)?;
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                    return Err(self.err(format!("INST builds an instance of `{}.{}`; refused", escape(module), escape(name))));
                }
                op @ (b'o' | 0x81 | 0x92) => return Err(self.err(format!("{} builds an instance of a class; refused (this reader only rebuilds numpy arrays)", op_name(op)))),
                0x82..=0x84 => return Err(self.err("extension-registry globals are refused")),
                b'P' | b'Q' => return Err(self.err("persistent ids are refused")),
                0x97 | 0x98 => return Err(self.err("out-of-band buffers are not supported; pickle the dict without buffer_callback")),
                op @ (b'F' | b'S' | b'V' | 0x8f | 0x90 | 0x91) => {
                    return Err(self.err(format!("opcode {} is not part of a feature dict; re-save with pickle.dump(d, f, protocol=4)", op_name(op))))
                }
                op => return Err(self.err(format!("unknown opcode 0x{op:02x}"))),
            }
        }
    }

    /// LONG1/LONG4: little-endian two's complement.
    fn long(&self, b: &[u8]) -> Result<Value> {
        if b.len() > 16 {
            return Err(self.err(format!("an integer of {} bytes is too large", b.len())));
        }
        let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 16] } else { [0u8; 16] };
        buf[..b.len()].copy_from_slice(b);
        Ok(Value::Int(i128::from_le_bytes(buf)))
    }

    fn global(&self, module: &str, name: &str) -> Result<Value> {
        match allowed_global(module, name) {
            Some(g) => Ok(Value::Global(g)),
            None => Err(self.err(format!(
                "the pickle names the global `{}.{}`, which is refused: this reader only rebuilds numpy arrays and executes nothing",
                escape(module),
                escape(name)
            ))),
        }
    }

    fn check_items(&self, items: &[Value]) -> Result<()> {
        match items.iter().find(|v| matches!(v, Value::List(_) | Value::Dict(_))) {
            Some(v) => Err(self.err(format!("a {} inside a list is not part of a feature dict", v.type_name()))),
            None => Ok(()),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        self.check_items(&items)?;
        let Value::List(l) = self.top()? else {
            return Err(self.err(format!("APPEND to {}, not a list", self.top()?.a_type())));
        };
        l.borrow_mut().extend(items);
        Ok(())
    }

    fn set_items(&mut self, d: &Value, items: Vec<Value>) -> Result<()> {
        let Value::Dict(d) = d else {
            return Err(self.err(format!("SETITEM on {}, not a dict", d.a_type())));
        };
        if items.len() % 2 != 0 {
            return Err(self.err("an odd number of items for a dict"));
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = match &k {
                Value::Int(i) => Key::Int(*i),
                Value::Str(s) => {
                    self.charge(s.len())?;
                    Key::Str(s.clone())
                }
                Value::Bytes(b) => {
                    self.charge(b.len())?;
                    Key::Bytes(b.clone())
                }
                other => return Err(self.err(format!("a dict key is {}; feature dicts have int or str keys", other.a_type()))),
            };
            if let Value::List(_) | Value::Dict(_) = v {
                let shown = match &key {
                    Key::Int(i) => i.to_string(),
                    Key::Str(s) => escape(s),
                    Key::Bytes(b) => escape(&String::from_utf8_lossy(b)),
                };
                return Err(self.err(format!("the value of key {shown} is {}, not a numpy array", v.a_type())));
            }
            let mut d = d.borrow_mut();
            match d.index.get(&key) {
                Some(&i) => d.entries[i].1 = v,
                None => {
                    let i = d.entries.len();
                    d.index.insert(key.clone(), i);
                    d.entries.push((key, v));
                }
            }
        }
        Ok(())
    }

    fn reduce(&mut self, g: Global, args: &[Value]) -> Result<Value> {
        match g {
            Global::Reconstruct => match args {
                [Value::Global(Global::Ndarray), _, _] => Ok(Value::Array(Rc::default())),
                _ => Err(self.err(format!("_reconstruct needs (numpy.ndarray, shape, typecode), got {}", types(args)))),
            },
            Global::Dtype => {
                let Some(spec) = args.first().and_then(Value::text) else {
                    return Err(self.err(format!("numpy.dtype needs a type string such as 'f4', got {}", types(args))));
                };
                let d = self.dtype(&spec)?;
                Ok(Value::Dtype(Rc::new(Cell::new(d))))
            }
            Global::Scalar => {
                let (Some(Value::Dtype(d)), Some(Value::Bytes(b))) = (args.first(), args.get(1)) else {
                    return Err(self.err(format!("numpy scalar needs (dtype, bytes), got {}", types(args))));
                };
                let d = d.get();
                if !matches!(d.kind, b'i' | b'u') || !matches!(d.size, 1 | 2 | 4 | 8) || b.len() != d.size as usize {
                    return Err(self.err(format!("a numpy scalar of dtype '{}' ({} bytes); only integer scalars (keys) are supported", escape(&d.text()), b.len())));
                }
                let mut buf = [0u8; 16];
                let n = b.len();
                if d.little() {
                    buf[..n].copy_from_slice(b);
                } else {
                    for (i, &x) in b.iter().rev().enumerate() {
                        buf[i] = x;
                    }
                }
                if d.kind == b'i' && buf[n - 1] & 0x80 != 0 {
                    buf[n..].fill(0xff);
                }
                Ok(Value::Int(i128::from_le_bytes(buf)))
            }
            Global::FromBuffer => {
                let [Value::Bytes(buf), Value::Dtype(d), shape, order] = args else {
                    return Err(self.err(format!("_frombuffer needs (buffer, dtype, shape, order), got {}", types(args))));
                };
                let fortran = match order.text().as_deref() {
                    Some("C") | Some("A") | Some("K") => false,
                    Some("F") => true,
                    _ => return Err(self.err(format!("_frombuffer's order is {}, not 'C' or 'F'", order.a_type()))),
                };
                let shape = self.shape(shape)?;
                let arr = self.array(shape, d.get(), fortran, buf.clone())?;
                Ok(Value::Array(Rc::new(RefCell::new(arr))))
            }
            Global::Encode => {
                let (Some(Value::Str(s)), Some(enc)) = (args.first(), args.get(1).and_then(Value::text)) else {
                    return Err(self.err(format!("_codecs.encode needs (str, 'latin1'), got {}", types(args))));
                };
                if args.len() != 2 || !matches!(enc.to_ascii_lowercase().as_str(), "latin1" | "latin-1" | "iso-8859-1") {
                    return Err(self.err(format!("_codecs.encode with encoding '{}'; only latin1 is allowed", escape(&enc))));
                }
                let s = s.clone();
                self.charge(s.len())?;
                let mut out = Vec::with_capacity(s.len());
                for c in s.chars() {
                    let c = u8::try_from(c as u32).map_err(|_| self.err(format!("U+{:04X} is not latin-1", c as u32)))?;
                    out.push(c);
                }
                Ok(Value::Bytes(Rc::from(out)))
            }
            Global::Bytes => match args {
                [] => Ok(Value::Bytes(Rc::from(&[][..]))),
                _ => Err(self.err(format!("bytes() is only allowed without arguments, got {}", types(args)))),
            },
            Global::Ndarray => Err(self.err("REDUCE on numpy.ndarray itself is refused (arrays are rebuilt through _reconstruct)")),
        }
    }

    fn build(&mut self, target: &Value, state: &Value) -> Result<()> {
        let Value::Tuple(st) = state else {
            return Err(self.err(format!("BUILD with {} as state; a numpy state is a tuple", state.a_type())));
        };
        match target {
            Value::Dtype(d) => {
                let order = st.items.get(1).and_then(Value::text);
                let order = match order.as_deref() {
                    Some(o @ ("<" | ">" | "|" | "=")) => o.as_bytes()[0],
                    _ => return Err(self.err("the dtype's state has no byte order ('<', '>', '|' or '=')")),
                };
                let mut v = d.get();
                v.order = order;
                d.set(v);
                Ok(())
            }
            Value::Array(a) => {
                // (version, shape, dtype, is_fortran, data), or without the version (old numpy).
                let items = match st.items.as_slice() {
                    [_, rest @ ..] if rest.len() == 4 => rest,
                    all if all.len() == 4 => all,
                    _ => return Err(self.err(format!("an array's state has {} items, 5 are expected", st.items.len()))),
                };
                let [shape, Value::Dtype(d), fortran, data] = items else {
                    return Err(self.err(format!("an array's state is {}; (version, shape, dtype, is_fortran, data) is expected", types(&st.items))));
                };
                let fortran = fortran.int().ok_or_else(|| self.err(format!("is_fortran is {}", fortran.a_type())))? != 0;
                let Value::Bytes(raw) = data else {
                    return Err(self.err(format!("the array's data is {}, not bytes (object arrays are not supported)", data.a_type())));
                };
                let shape = self.shape(shape)?;
                let arr = self.array(shape, d.get(), fortran, raw.clone())?;
                *a.borrow_mut() = arr;
                Ok(())
            }
            other => Err(self.err(format!("BUILD on {}; only numpy arrays and dtypes are rebuilt", other.a_type()))),
        }
    }

    fn shape(&self, v: &Value) -> Result<Vec<usize>> {
        let Value::Tuple(t) = v else {
            return Err(self.err(format!("an array's shape is {}, not a tuple", v.a_type())));
        };
        if t.items.len() > MAX_NDIM {
            return Err(self.err(format!("an array of {} dimensions", t.items.len())));
        }
        t.items
            .iter()
            .map(|d| d.int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| self.err(format!("an array's shape {} is not made of sizes", types(&t.items)))))
            .collect()
    }

    fn array(&self, shape: Vec<usize>, d: Dtype, fortran: bool, data: Rc<[u8]>) -> Result<Array> {
        if !(d.kind == b'f' && matches!(d.size, 4 | 8)) {
            return Err(
                self.err(format!("an array of dtype '{}'; only float32 ('<f4') and float64 ('<f8') vectors are supported (convert with .astype(np.float32))", escape(&d.text())))
            );
        }
        if !d.little() {
            return Err(self.err(format!("an array of dtype '{}' is big-endian; save it little-endian (.astype('<f4'))", d.text())));
        }
        if fortran && shape.iter().filter(|&&s| s > 1).count() > 1 {
            return Err(self.err(format!("an array of shape {shape:?} in Fortran order; save it in C order (np.ascontiguousarray)")));
        }
        let count = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
        let need = count.and_then(|c| c.checked_mul(d.size as usize));
        if need != Some(data.len()) {
            return Err(self.err(format!("an array of shape {shape:?} and dtype '{}' has {} data bytes (truncated or inconsistent)", d.text(), data.len())));
        }
        Ok(Array { shape, dtype: Some(d), data: Some(data) })
    }

    /// `f4`, `<f8`, `i8`, `U10`, ...
    fn dtype(&self, spec: &str) -> Result<Dtype> {
        let b = spec.as_bytes();
        let bad = || self.err(format!("numpy.dtype('{}') is not a type string such as 'f4'", escape(spec)));
        if b.is_empty() {
            return Err(bad());
        }
        let (order, rest) = match b[0] {
            o @ (b'<' | b'>' | b'|' | b'=') => (o, &b[1..]),
            _ => (b'=', b),
        };
        let (&kind, digits) = rest.split_first().ok_or_else(bad)?;
        if !kind.is_ascii_alphabetic() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let size = if digits.is_empty() { 0 } else { std::str::from_utf8(digits).ok().and_then(|s| s.parse::<u32>().ok()).ok_or_else(bad)? };
        Ok(Dtype { order, kind, size })
    }
}

/// The types of some values, for messages: `(int, str, tuple)`.
fn types(v: &[Value]) -> String {
    let names: Vec<&str> = v.iter().take(8).map(Value::type_name).collect();
    format!("({}{})", names.join(", "), if v.len() > 8 { ", …" } else { "" })
}
