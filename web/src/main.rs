//! The worker binary of the browser demo (see the crate docs in `lib.rs`).

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    mmea_web::worker::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("mmea-web is the browser demo: build it with `trunk build --release` at the repository root.");
}
