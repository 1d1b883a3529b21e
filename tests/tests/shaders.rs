//! naga validation of every shader in `shaders/`, with browser-like capabilities and limits, without a
//! device: no f16, no f64, no subgroups, no atomics (our reductions are over sorted segments), at most 256
//! invocations per workgroup, at most 16 KiB of workgroup memory (WebGPU's default), at most 8 storage
//! buffers per entry point (WebGPU's default), and a header comment that documents the kernel.

use std::path::PathBuf;

use naga::valid::{Capabilities, GlobalUse, ValidationFlags, Validator};

const MAX_INVOCATIONS: u32 = 256;
const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;
const MAX_STORAGE_BUFFERS: usize = 8;

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders")
}

fn has_atomic(module: &naga::Module, ty: naga::Handle<naga::Type>) -> bool {
    match &module.types[ty].inner {
        naga::TypeInner::Atomic(_) => true,
        naga::TypeInner::Array { base, .. } | naga::TypeInner::BindingArray { base, .. } => has_atomic(module, *base),
        naga::TypeInner::Struct { members, .. } => members.iter().any(|m| has_atomic(module, m.ty)),
        _ => false,
    }
}

/// Everything wrong with one shader, as readable messages (empty = valid).
fn check_shader(name: &str, src: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let module = match naga::front::wgsl::parse_str(src) {
        Ok(m) => m,
        Err(e) => return vec![e.emit_to_string_with_path(src, name)],
    };
    // Browser capabilities: WebGPU core offers none of naga's optional capabilities that we could use.
    let info = match Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&module) {
        Ok(i) => i,
        Err(e) => return vec![e.emit_to_string_with_path(src, name)],
    };
    let gctx = module.to_ctx();
    for (i, ep) in module.entry_points.iter().enumerate() {
        if ep.stage != naga::ShaderStage::Compute {
            continue;
        }
        let [x, y, z] = ep.workgroup_size;
        if x * y * z > MAX_INVOCATIONS {
            problems.push(format!("{name}: entry `{}` has {x}x{y}x{z} = {} invocations per workgroup (browsers allow {MAX_INVOCATIONS})", ep.name, x * y * z));
        }
        let fi = info.get_entry_point(i);
        let mut wg_bytes = 0;
        let mut storage = 0;
        for (h, var) in module.global_variables.iter() {
            let used = fi[h];
            if used.is_empty() {
                continue;
            }
            if used.contains(GlobalUse::ATOMIC) || has_atomic(&module, var.ty) {
                problems.push(format!("{name}: entry `{}` uses atomics on `{}` (reductions must be over sorted segments)", ep.name, var.name.as_deref().unwrap_or("?")));
            }
            match var.space {
                naga::AddressSpace::WorkGroup => wg_bytes += module.types[var.ty].inner.size(gctx),
                naga::AddressSpace::Storage { .. } => storage += 1,
                _ => {}
            }
        }
        if wg_bytes > MAX_WORKGROUP_BYTES {
            problems.push(format!("{name}: entry `{}` uses {wg_bytes} bytes of workgroup memory (browsers guarantee {MAX_WORKGROUP_BYTES})", ep.name));
        }
        if storage > MAX_STORAGE_BUFFERS {
            problems.push(format!("{name}: entry `{}` binds {storage} storage buffers (browsers guarantee {MAX_STORAGE_BUFFERS})", ep.name));
        }
    }
    // Tint (Chromium's WGSL compiler) rejects float literals beyond the f32 range that naga accepts and
    // rounds, e.g. -3.4028235e38.
    for (ln, line) in src.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for tok in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '+' || c == '-')) {
            let t = tok.trim_start_matches(['-', '+']).trim_end_matches('f');
            if t.starts_with(|c: char| c.is_ascii_digit()) && t.contains(['e', 'E']) && !t.starts_with("0x") {
                if let Ok(v) = t.parse::<f64>() {
                    if v > f32::MAX as f64 {
                        problems.push(format!("{name}:{}: the literal `{tok}` is outside the f32 range (browsers reject it)", ln + 1));
                    }
                }
            }
        }
    }
    let header: String = src.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n").to_lowercase();
    for word in ["bindings", "threads", "cost"] {
        if !header.contains(word) {
            problems.push(format!("{name}: the header comment must document its {word} (bindings, thread-to-data mapping, FLOPs and bytes)"));
        }
    }
    problems
}

#[test]
fn every_shader_validates_under_browser_limits() {
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(shader_dir()).expect("shaders/ exists").map(|e| e.expect("readable dir entry").path()).filter(|p| p.extension().is_some_and(|e| e == "wgsl")).collect();
    names.sort();
    assert!(!names.is_empty(), "no shaders found");
    let mut all = Vec::new();
    for p in &names {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(p).unwrap();
        let problems = check_shader(&name, &src);
        println!("{name}: {}", if problems.is_empty() { "ok".to_string() } else { format!("{} problem(s)", problems.len()) });
        all.extend(problems);
    }
    assert!(all.is_empty(), "shader problems:\n{}", all.join("\n"));
}

#[test]
fn a_broken_shader_is_reported_readably() {
    // A type error: a u32 assigned to an f32 variable.
    let src = "// Bindings: none. Threads: one. Cost: none.\n@compute @workgroup_size(64)\nfn main() {\n    var x: f32 = 1u;\n}\n";
    let problems = check_shader("broken.wgsl", src);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let msg = &problems[0];
    println!("{msg}");
    assert!(msg.contains("broken.wgsl"), "names the file: {msg}");
    assert!(msg.contains("var x: f32 = 1u"), "quotes the line: {msg}");
    assert!(msg.contains("f32") && msg.contains("u32"), "says what is wrong: {msg}");
}

#[test]
fn browser_limits_are_enforced() {
    let too_big = "// Bindings: none. Threads: 512. Cost: none.\n@compute @workgroup_size(512)\nfn main() {}\n";
    assert!(check_shader("big.wgsl", too_big).iter().any(|p| p.contains("512 invocations")));
    let f16 = "// Bindings: none. Threads: one. Cost: none.\nenable f16;\n@compute @workgroup_size(1)\nfn main() { var h: f16 = 1.0h; }\n";
    assert!(!check_shader("half.wgsl", f16).is_empty(), "f16 must be rejected");
    let wg = "// Bindings: none. Threads: one. Cost: none.\nvar<workgroup> t: array<f32, 8192>;\n@compute @workgroup_size(1)\nfn main() { t[0] = 1.0; }\n";
    assert!(check_shader("wg.wgsl", wg).iter().any(|p| p.contains("workgroup memory")));
    let atom = "// Bindings: one. Threads: one. Cost: none.\n@group(0) @binding(0) var<storage, read_write> c: atomic<u32>;\n@compute @workgroup_size(1)\nfn main() { atomicAdd(&c, 1u); }\n";
    assert!(check_shader("atom.wgsl", atom).iter().any(|p| p.contains("atomics")));
}

#[test]
fn out_of_range_float_literals_are_reported() {
    let src = "// Bindings: none. Threads: one. Cost: nothing.\nconst LOWEST: f32 = -3.4028235e38;\n@compute @workgroup_size(1) fn main() { _ = LOWEST; }\n";
    let problems = check_shader("lowest.wgsl", src);
    assert!(problems.iter().any(|p| p.contains("lowest.wgsl:2") && p.contains("outside the f32 range")), "{problems:?}");
    let ok = src.replace("-3.4028235e38", "-3.40282346638528859811704183484516925440e38");
    assert!(check_shader("lowest.wgsl", &ok).is_empty(), "{:?}", check_shader("lowest.wgsl", &ok));
}
