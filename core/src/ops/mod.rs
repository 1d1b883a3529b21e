//! The op set (see `ARCHITECTURE.md`, and mmea-spec §7 for the formulas). One module per kernel family;
//! each holds the public tensor-level functions (which dispatch on the tensors' device), the GPU launcher
//! and a `cpu` module with the plain-Rust twin on slices.

pub mod contrastive;
pub mod elementwise;
pub mod eval;
pub mod fusion;
pub mod gat;
pub mod matmul;
pub mod reduce;
pub mod sinkhorn;

pub use elementwise::{add, add_into, axpby, mul, scale, scale_by, sub, unary, unary_backward, Unary};
pub use matmul::{linear, linear_backward, matmul, matmul_backward, matmul_ex};
pub use reduce::{sum_all, sum_rows};
pub mod reflection;
pub mod sparse;
pub use reflection::{reflection_attention, reflection_attention_backward, Act, ReflectionSaved, RelGraph};
pub use sparse::{gather_rows, gather_rows_backward, segment_sum, segment_sum_backward, spmm, spmm_backward, spmm_heads, Csr, SegmentIndex};
pub mod optim;
pub mod rows;
pub use contrastive::{icl, info_nce, info_nce_neg, nhs, nhs_row_scales, nhs_with_scales};
pub use eval::{
    argmax_cols, argmax_rows, csls, metrics, mutual_nn, rank_counts, similarity_tiles, similarity_tiles_blocks, topk_cols, topk_rows, topk_select_rows, Metrics, Ranks, TopK,
};
pub use fusion::{lmf_combine, lmf_combine_backward, low_rank_fusion, low_rank_fusion_backward, LowRankFusionGrads};
pub use gat::{gat_attention, gat_attention_backward, GatGraph, GatLogit, GatSaved};
pub use optim::{global_grad_sq_norm, AdamW, AdamWConsts};
pub use rows::{
    concat_cols, concat_rows, l2_normalize, l2_normalize_backward, prepend_ones_col, prepend_ones_col_backward, row_dot, scale_rows, scale_rows_backward, slice_cols,
    slice_cols_backward, slice_rows, slice_rows_backward, softmax_rows, softmax_rows_backward,
};
pub use sinkhorn::{sinkhorn, sinkhorn_backward, sinkhorn_topk, SinkhornOut, TiledMatrix, TopkIndex};
