//! The op set (see `ARCHITECTURE.md`, and mmea-spec §7 for the formulas). One module per kernel family;
//! each holds the public tensor-level functions (which dispatch on the tensors' device), the GPU launcher
//! and a `cpu` module with the plain-Rust twin on slices.

pub mod elementwise;
pub mod matmul;
pub mod reduce;

pub use elementwise::{add, axpby, mul, scale, scale_by, sub, unary, unary_backward, Unary};
pub use matmul::{linear, linear_backward, matmul, matmul_backward, matmul_ex};
pub use reduce::{sum_all, sum_rows};
pub mod reflection;
pub mod sparse;
pub use reflection::{reflection_attention, reflection_attention_backward, Act, RelGraph, ReflectionSaved};
pub use sparse::{gather_rows, gather_rows_backward, segment_sum, segment_sum_backward, spmm, spmm_backward, Csr, SegmentIndex};
