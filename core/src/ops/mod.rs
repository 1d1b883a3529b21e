//! The op set (see `ARCHITECTURE.md`, and mmea-spec §7 for the formulas). One module per kernel family;
//! each holds the public tensor-level functions (which dispatch on the tensors' device), the GPU launcher
//! and a `cpu` module with the plain-Rust twin on slices.

pub mod elementwise;
pub mod eval;
pub mod matmul;
pub mod reduce;
pub mod sinkhorn;

pub use elementwise::{add, axpby, mul, scale, scale_by, sub, unary, unary_backward, Unary};
pub use matmul::{linear, linear_backward, matmul, matmul_backward, matmul_ex};
pub use reduce::{sum_all, sum_rows};
pub use eval::{argmax_cols, argmax_rows, csls, metrics, mutual_nn, rank_counts, similarity_tiles, topk_cols, topk_rows, Metrics, Ranks, TopK};
pub use sinkhorn::{sinkhorn, sinkhorn_backward, sinkhorn_topk, SinkhornOut, TiledMatrix, TopkIndex};
