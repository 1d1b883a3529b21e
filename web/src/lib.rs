//! The browser demo (`index.html` + `web/`, built with trunk). The page itself is plain JavaScript
//! (`web/ui.js`): it starts this crate's binary as a Web Worker, so that the model's forward pass, the
//! score matrices, Sinkhorn and PCA run off the main thread. The worker answers the page's requests with
//! JSON computed by [`engine::Engine`] through mmea-core, on WebGPU when the browser offers an adapter and
//! on the CPU twin compiled to wasm otherwise.

pub mod engine;
#[cfg(target_arch = "wasm32")]
pub mod worker;
