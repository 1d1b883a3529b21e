use mmea_core::gpu::{GpuContext, GpuOptions};
use mmea_core::{selfcheck, Device, Error};
use wasm_bindgen::JsValue;

fn document() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

fn show(text: &str) {
    if let Some(el) = document().and_then(|d| d.get_element_by_id("out")) {
        let old = el.text_content().unwrap_or_default();
        el.set_text_content(Some(&format!("{old}{text}\n")));
    }
    web_sys::console::log_1(&JsValue::from_str(text));
}

fn set_title(t: &str) {
    if let Some(d) = document() {
        d.set_title(t);
    }
}

/// `navigator.gpu` may exist while `requestAdapter()` still returns null (e.g. Chromium without
/// `--enable-unsafe-webgpu` on Linux), so both are checked and reported separately.
fn has_navigator_gpu() -> bool {
    web_sys::window()
        .map(|w| js_sys::Reflect::get(&w.navigator(), &JsValue::from_str("gpu")).map(|v| !v.is_undefined()).unwrap_or(false))
        .unwrap_or(false)
}

pub async fn run() {
    let device = if !has_navigator_gpu() {
        show("WebGPU unavailable: this browser has no navigator.gpu. Using the CPU backend (wasm).");
        Device::Cpu
    } else {
        match GpuContext::new(&GpuOptions::default()).await {
            Ok(ctx) => {
                let r = ctx.report();
                let name = if r.name.is_empty() { "(name not exposed by the browser)" } else { r.name.as_str() };
                show(&format!("WebGPU adapter: {name} ({}, {})", r.backend, r.device_type));
                show(&format!(
                    "  max storage binding {} MiB, max invocations per workgroup {}",
                    r.limits.max_storage_buffer_binding_size >> 20,
                    r.limits.max_compute_invocations_per_workgroup
                ));
                Device::Gpu(ctx)
            }
            Err(e) => {
                let why = match e {
                    Error::NoAdapter(_) => "navigator.gpu exists but requestAdapter() found no adapter (Chromium on Linux needs --enable-unsafe-webgpu)".to_string(),
                    other => format!("the GPU device could not be opened: {other}"),
                };
                show(&format!("WebGPU unavailable: {why}. Using the CPU backend (wasm)."));
                Device::Cpu
            }
        }
    };
    match selfcheck::run_async(&device).await {
        Ok(report) => {
            for l in &report.lines {
                show(l);
            }
            show(&format!("self-check: {} passed, {} failed", report.passed, report.failed));
            set_title(if report.failed == 0 { "PASS" } else { "FAIL" });
        }
        Err(e) => {
            show(&format!("self-check error: {e}"));
            set_title("FAIL");
        }
    }
}
