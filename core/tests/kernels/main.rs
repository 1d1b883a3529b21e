//! Kernel tests: every op against its CPU twin (on shapes spanning several workgroups with ragged tails,
//! and on degenerate shapes), every backward against finite differences on the CPU twin and then GPU
//! backward against CPU backward. One test binary, so wgpu is linked once.

mod common;

mod autodiff;
mod engine;
mod evaluate;
mod contrastive;
mod elementwise;
mod fusion;
mod gat;
mod matmul;
mod reflection;
mod sparse;
mod optim;
mod rows;
mod eval;
mod sinkhorn;
