//! # mmea-core
//!
//! The maths of multi-modal entity alignment, written once as WGSL compute shaders run through wgpu and
//! once as plain Rust (the test oracle and the fallback when no GPU exists). Every op takes [`Tensor`]s on
//! one [`Device`] and dispatches to the matching implementation, so one model definition runs on either
//! backend. [`autodiff`] records ops on a tape and runs their backward kernels in reverse.
//!
//! Layout: [`gpu`] (context, pipeline cache, buffer pool), [`tensor`], [`ops`] (one module per kernel
//! family, each with its CPU twin), [`autodiff`].

pub mod autodiff;
pub mod cpu;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod profile;
pub mod run;
pub mod selfcheck;
pub mod tensor;
/// Training needs blocking readbacks: native only (the browser runs inference).
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use error::{Error, Result};
pub use tensor::{Backend, DType, Device, Tensor};
