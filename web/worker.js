// Starts the engine worker: loads the wasm-bindgen glue (no-modules build) and the wasm next to it.
importScripts('./mmea-web.js');
wasm_bindgen({ module_or_path: './mmea-web_bg.wasm' });
