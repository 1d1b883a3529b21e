//! The browser front end, built with trunk from `index.html`. For now it opens WebGPU through mmea-core
//! (or says why it cannot and falls back to the CPU backend compiled to wasm), prints the adapter report
//! and runs the kernel self-check against the CPU twins. The page title becomes PASS or FAIL so that
//! headless drivers can wait on it.

#[cfg(target_arch = "wasm32")]
mod app;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    wasm_bindgen_futures::spawn_local(app::run());
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("mmea-web is the browser demo: build it with `trunk build --release` at the repository root.");
}
