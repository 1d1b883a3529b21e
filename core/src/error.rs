//! One error type for the core crate, grouped by category. Each variant carries what a user needs to fix
//! the problem: the op, the shapes, the limit that was hit.

use std::fmt;

/// Shapes are printed as `[rows, cols]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ShapeList(pub Vec<Vec<usize>>);

impl fmt::Debug for ShapeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|s| format!("{s:?}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- shapes and arguments -------------------------------------------------------------------
    #[error("{op}: shape mismatch: {detail} (got {shapes:?})")]
    Shape { op: &'static str, detail: String, shapes: ShapeList },
    #[error("{op}: {detail}")]
    InvalidArgument { op: &'static str, detail: String },
    #[error("{op}: expected a {expected} tensor, got {got}")]
    DType { op: &'static str, expected: &'static str, got: &'static str },
    #[error("{op}: inputs live on different devices ({a} and {b}); move them with Tensor::to_device first")]
    DeviceMismatch { op: &'static str, a: String, b: String },

    // --- the GPU ---------------------------------------------------------------------------------
    #[error("no GPU adapter found ({0}); use `--backend cpu` or install a Vulkan/Metal/DX12 driver (lavapipe: apt-get install mesa-vulkan-drivers)")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    #[error("{op}: a binding of {bytes} bytes exceeds the {limit}-byte storage binding limit; tile the work (browsers allow 128 MiB per binding)")]
    BindingTooLarge { op: &'static str, bytes: u64, limit: u64 },
    #[error("{op}: {groups} workgroups exceed the {limit} allowed in one dispatch dimension")]
    TooManyWorkgroups { op: &'static str, groups: u64, limit: u32 },
    #[error("GPU out of memory while allocating {bytes} bytes for {what}; reduce the batch size, the embedding dimension or the evaluation tile size, or use `--backend cpu`")]
    OutOfMemory { what: String, bytes: u64 },
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("reading a buffer back from the GPU failed: {0}")]
    Readback(String),

    // --- numerics --------------------------------------------------------------------------------
    #[error("{op}: non-finite value ({detail})")]
    NonFinite { op: &'static str, detail: String },

    // --- files -----------------------------------------------------------------------------------
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {detail}")]
    Parse { path: String, line: usize, detail: String },
    #[error("{path}: {detail}")]
    Format { path: String, detail: String },

    // --- run configuration -----------------------------------------------------------------------
    #[error("{origin}: `{key}`: {detail}")]
    Config { origin: String, key: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>, shapes: &[&[usize]]) -> Self {
        Error::Shape { op, detail: detail.into(), shapes: ShapeList(shapes.iter().map(|s| s.to_vec()).collect()) }
    }
    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument { op, detail: detail.into() }
    }
}
