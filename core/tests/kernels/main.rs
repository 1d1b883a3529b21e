//! Kernel tests: every op against its CPU twin (on shapes spanning several workgroups with ragged tails,
//! and on degenerate shapes), every backward against finite differences on the CPU twin and then GPU
//! backward against CPU backward. One test binary, so wgpu is linked once.

mod common;

mod autodiff;
mod contrastive;
mod elementwise;
mod engine;
mod eval;
mod evaluate;
mod fusion;
mod gat;
mod matmul;
mod optim;
mod reflection;
mod rows;
mod sinkhorn;
mod sparse;
