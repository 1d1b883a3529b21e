//! The Web Worker side: a message loop over [`Engine`]. The page posts `{id, method, params, bytes?}`
//! (`params` a JSON string, `bytes` an ArrayBuffer for `load`); the worker answers `{id, ok}` (a JSON
//! string) or `{id, error}`, and posts `{event: "started"}` once it listens and `{event: "progress",
//! text}` while it works. Requests are answered in order, one at a time.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Reflect, Uint8Array};
use mmea_core::gpu::{GpuContext, GpuOptions};
use mmea_core::{selfcheck, Device, Error};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::engine::{report_json, Engine};

thread_local! {
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
    static ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
    /// Requests wait here so that they run one at a time, in order.
    static QUEUE: RefCell<std::collections::VecDeque<JsValue>> = const { RefCell::new(std::collections::VecDeque::new()) };
    static BUSY: RefCell<bool> = const { RefCell::new(false) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(fields: &[(&str, JsValue)]) {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    let _ = scope().post_message(&o);
}

fn progress(text: &str) {
    post(&[("event", "progress".into()), ("text", text.into())]);
}

/// Installs the message handler and tells the page.
pub fn start() {
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
        QUEUE.with(|q| q.borrow_mut().push_back(ev.data()));
        pump();
    });
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    handler.forget();
    post(&[("event", "started".into())]);
}

fn pump() {
    if BUSY.with(|b| *b.borrow()) {
        return;
    }
    let Some(msg) = QUEUE.with(|q| q.borrow_mut().pop_front()) else { return };
    BUSY.with(|b| *b.borrow_mut() = true);
    wasm_bindgen_futures::spawn_local(async move {
        let id = Reflect::get(&msg, &"id".into()).unwrap_or(JsValue::NULL);
        match handle(&msg).await {
            Ok(v) => post(&[("id", id), ("ok", v.to_string().into())]),
            Err(e) => post(&[("id", id), ("error", e.into())]),
        }
        BUSY.with(|b| *b.borrow_mut() = false);
        pump();
    });
}

fn get_str(msg: &JsValue, key: &str) -> Option<String> {
    Reflect::get(msg, &key.into()).ok().and_then(|v| v.as_string())
}

fn engine() -> Result<Rc<Engine>, String> {
    ENGINE.with(|e| e.borrow().clone()).ok_or_else(|| "no checkpoint is loaded yet".to_string())
}

fn device() -> Result<Device, String> {
    DEVICE.with(|d| d.borrow().clone()).ok_or_else(|| "the device is not open yet (call init first)".to_string())
}

fn num(p: &Value, key: &str, default: f64) -> f64 {
    p.get(key).and_then(Value::as_f64).unwrap_or(default)
}

async fn handle(msg: &JsValue) -> Result<Value, String> {
    let method = get_str(msg, "method").ok_or("a request needs a method")?;
    let params: Value = match get_str(msg, "params") {
        Some(s) => serde_json::from_str(&s).map_err(|e| format!("bad params: {e}"))?,
        None => Value::Null,
    };
    let show = |e: Error| e.to_string();
    match method.as_str() {
        "init" => {
            let force_cpu = params.get("cpu").and_then(Value::as_bool).unwrap_or(false);
            let (dev, info) = open_device(force_cpu).await;
            DEVICE.with(|d| *d.borrow_mut() = Some(dev));
            Ok(info)
        }
        "load" => {
            let name = get_str(msg, "name").unwrap_or_else(|| "checkpoint".into());
            let bytes = Reflect::get(msg, &"bytes".into()).map_err(|_| "load needs the file's bytes")?;
            if bytes.is_undefined() || bytes.is_null() {
                return Err("load needs the file's bytes".into());
            }
            let bytes = Uint8Array::new(&bytes).to_vec();
            progress(&format!("opening {name} ({:.1} MB) and running the forward pass", bytes.len() as f64 / 1e6));
            let e = Engine::load(device()?, &name, &bytes).await.map_err(show)?;
            let summary = e.summary();
            ENGINE.with(|s| *s.borrow_mut() = Some(Rc::new(e)));
            Ok(summary)
        }
        "metrics" => {
            let e = engine()?;
            progress("evaluating the test pairs (plain, CSLS, Sinkhorn)");
            Ok(report_json(&e.metrics().await.map_err(show)?))
        }
        "entity" => engine()?.entity(num(&params, "index", 0.0) as usize).map_err(show),
        "sinkhorn" => {
            let e = engine()?;
            let (i, size, iters) = (num(&params, "index", 0.0) as usize, num(&params, "size", 12.0) as usize, num(&params, "iters", 10.0) as usize);
            let eps = num(&params, "eps", e.opened.spec.train.sinkhorn_eps as f64) as f32;
            e.sinkhorn_steps(i, size, iters, eps).await.map_err(show)
        }
        "pca" => {
            let e = engine()?;
            progress("projecting the embeddings (PCA)");
            e.pca(num(&params, "iters", 40.0) as usize).await.map_err(show)
        }
        "selfcheck" => {
            let dev = device()?;
            let r = selfcheck::run_async(&dev).await.map_err(show)?;
            Ok(json!({ "lines": r.lines, "passed": r.passed, "failed": r.failed }))
        }
        other => Err(format!("unknown method `{other}`")),
    }
}

/// WebGPU if the browser offers an adapter, else the CPU backend, with the reason.
async fn open_device(force_cpu: bool) -> (Device, Value) {
    let cpu = |why: String| (Device::Cpu, json!({ "backend": "cpu", "reason": why }));
    if force_cpu {
        return cpu("the page asked for the CPU backend".into());
    }
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    let has_gpu = !nav.is_undefined() && Reflect::get(&nav, &"gpu".into()).map(|g| !g.is_undefined()).unwrap_or(false);
    if !has_gpu {
        return cpu("this browser has no navigator.gpu (WebGPU is not available here, or not in workers)".into());
    }
    match GpuContext::new(&GpuOptions::default()).await {
        Ok(ctx) => {
            let r = ctx.report();
            let name = if r.name.is_empty() { "(name not exposed by the browser)".to_string() } else { r.name.clone() };
            let info = json!({
                "backend": "webgpu",
                "adapter": name,
                "kind": format!("{}, {}", r.backend, r.device_type),
                "max_binding_mib": r.limits.max_storage_buffer_binding_size >> 20,
                "max_invocations": r.limits.max_compute_invocations_per_workgroup,
            });
            (Device::Gpu(ctx), info)
        }
        Err(Error::NoAdapter(_)) => cpu("navigator.gpu exists but requestAdapter() found no adapter (Chromium on Linux needs --enable-unsafe-webgpu)".into()),
        Err(e) => cpu(format!("the GPU device could not be opened: {e}")),
    }
}
