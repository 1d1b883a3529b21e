//! The op set (see `ARCHITECTURE.md`, and mmea-spec §7 for the formulas). One module per kernel family;
//! each holds the public tensor-level functions (which dispatch on the tensors' device), the GPU launcher
//! and a `cpu` module with the plain-Rust twin on slices.

pub mod contrastive;
pub mod elementwise;
pub mod fusion;
pub mod matmul;
pub mod reduce;

pub use elementwise::{add, axpby, mul, scale, scale_by, sub, unary, unary_backward, Unary};
pub use matmul::{linear, linear_backward, matmul, matmul_backward, matmul_ex};
pub use reduce::{sum_all, sum_rows};
pub use contrastive::{icl, info_nce};
pub use fusion::{lmf_combine, lmf_combine_backward, low_rank_fusion, low_rank_fusion_backward, LowRankFusionGrads};
