//! Problems found while reading a dataset. Readers never stop at the first bad line: they record a
//! [`Problem`] and go on, so `mmea data check` can list every problem at once. The strict loaders turn
//! the first error into an [`Error`]; warnings travel with the loaded dataset in its report.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The dataset is usable; the user should know.
    Warning,
    /// The dataset cannot be used as it is.
    Error,
}

/// What kind of problem (one line per kind in the check summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// A required file is absent.
    MissingFile,
    /// A required file has no records.
    EmptyFile,
    /// A file could not be decoded (corrupt gzip, `.gz` that is not gzip, bad npy header...).
    BadFile,
    /// A line that does not parse (wrong column count, non-numeric id, invalid UTF-8, bad JSON).
    MalformedLine,
    /// An id or name that the entity/relation lists do not define, or that belongs to the other KG.
    UnknownId,
    /// The same id defined twice in one KG, or one URI under two ids.
    DuplicateId,
    /// One id defined in both KGs.
    IdInBothKgs,
    /// The same (head, relation, tail) twice in one KG.
    DuplicateTriple,
    /// The same link twice.
    DuplicateLink,
    /// An entity linked to more than one entity of the other KG.
    LinkNotOneToOne,
    /// An entity that occurs in no triple (it gets no structure signal).
    EntityWithoutTriple,
    /// A modality (names, attributes, images...) is missing for part of the entities.
    ModalityMissing,
    /// A record skipped as the reference code skips it (e.g. attributes of an unknown URI).
    Skipped,
    /// A split that overlaps itself or leaves the gold links.
    BadSplit,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::MissingFile => "missing file",
            ProblemKind::EmptyFile => "empty file",
            ProblemKind::BadFile => "unreadable file",
            ProblemKind::MalformedLine => "malformed line",
            ProblemKind::UnknownId => "unknown id",
            ProblemKind::DuplicateId => "duplicate id",
            ProblemKind::IdInBothKgs => "id in both KGs",
            ProblemKind::DuplicateTriple => "duplicate triple",
            ProblemKind::DuplicateLink => "duplicate link",
            ProblemKind::LinkNotOneToOne => "link not one-to-one",
            ProblemKind::EntityWithoutTriple => "entity with no triple",
            ProblemKind::ModalityMissing => "modality missing",
            ProblemKind::Skipped => "skipped record",
            ProblemKind::BadSplit => "bad split",
        }
    }
}

/// One problem, with where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    /// The file (as shown to the user); empty for dataset-level problems.
    pub path: String,
    /// 1-based line; 0 when the problem is not about one line.
    pub line: usize,
    pub message: String,
    /// The offending line's text (shortened, control characters escaped).
    pub text: Option<String>,
}

impl Problem {
    /// The matching [`Error`]: `Parse` for a line, `Format` otherwise.
    pub fn to_error(&self) -> Error {
        let mut detail = self.message.clone();
        if let Some(t) = &self.text {
            detail.push_str(&format!(" (line: \"{t}\")"));
        }
        let path = if self.path.is_empty() { "dataset".to_string() } else { self.path.clone() };
        if self.line > 0 {
            Error::Parse { path, line: self.line, detail }
        } else {
            Error::Format { path, detail }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: ")?;
        match (self.path.is_empty(), self.line) {
            (true, _) => {}
            (false, 0) => write!(f, "{}: ", self.path)?,
            (false, l) => write!(f, "{}:{}: ", self.path, l)?,
        }
        write!(f, "{}", self.message)?;
        if let Some(t) = &self.text {
            write!(f, ": \"{t}\"")?;
        }
        Ok(())
    }
}

/// Shortens a line for messages: at most 120 characters, control characters escaped.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= 120 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// How many problems of one kind are kept with their full text; the rest are only counted, so a binary
/// file cannot fill memory with millions of messages.
const KEEP_PER_KIND: usize = 1000;

/// The problems found so far.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    problems: Vec<Problem>,
    counts: BTreeMap<(Severity, ProblemKind), usize>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, p: Problem) {
        let c = self.counts.entry((p.severity, p.kind)).or_insert(0);
        *c += 1;
        if *c <= KEEP_PER_KIND {
            self.problems.push(p);
        }
    }
    pub(crate) fn line(&mut self, sev: Severity, kind: ProblemKind, path: &str, line: usize, msg: impl Into<String>, text: &[u8]) {
        self.push(Problem { severity: sev, kind, path: path.to_string(), line, message: msg.into(), text: Some(excerpt(text)) });
    }
    pub(crate) fn file(&mut self, sev: Severity, kind: ProblemKind, path: &str, msg: impl Into<String>) {
        self.push(Problem { severity: sev, kind, path: path.to_string(), line: 0, message: msg.into(), text: None });
    }
    pub(crate) fn dataset(&mut self, sev: Severity, kind: ProblemKind, msg: impl Into<String>) {
        self.file(sev, kind, "", msg)
    }
    /// Records an error returned by a lower layer (I/O, gzip) as a problem.
    pub(crate) fn error(&mut self, e: &Error) {
        let (path, line, detail) = match e {
            Error::Parse { path, line, detail } => (path.clone(), *line, detail.clone()),
            Error::Format { path, detail } => (path.clone(), 0, detail.clone()),
            Error::Io { path, source } => (path.clone(), 0, source.to_string()),
            other => (String::new(), 0, other.to_string()),
        };
        let kind = if line > 0 { ProblemKind::MalformedLine } else { ProblemKind::BadFile };
        self.push(Problem { severity: Severity::Error, kind, path, line, message: detail, text: None });
    }
    /// The kept problems, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
    /// How many problems of each (severity, kind) were found (including those not kept).
    pub fn counts(&self) -> &BTreeMap<(Severity, ProblemKind), usize> {
        &self.counts
    }
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.counts.iter().filter(|((_, k), _)| *k == kind).map(|(_, c)| *c).sum()
    }
    pub fn has_errors(&self) -> bool {
        self.counts.keys().any(|(s, _)| *s == Severity::Error)
    }
    pub fn first_error(&self) -> Option<&Problem> {
        self.problems.iter().find(|p| p.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Warning)
    }
    /// Fails with the first error, if any.
    pub fn into_result(&self) -> crate::Result<()> {
        match self.first_error() {
            Some(p) => Err(p.to_error()),
            None => Ok(()),
        }
    }
}
