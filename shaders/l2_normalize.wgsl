// Row L2 normalisation of a row-major [n, d] matrix and its backward (mmea-spec §7 op 3):
//   forward:  y_i = x_i / max(‖x_i‖, eps)                                 (eps = 1e-12, as torch's normalize)
//   backward: g_x_i = (g_i − (g_i·y_i) y_i) / ‖x_i‖     when ‖x_i‖ >= eps
//             g_x_i = g_i / eps                          when ‖x_i‖ <  eps (the clamp is constant there)
//
// Bindings (entry `l2_normalize`):          0 params, 1 x (read, n*d), 2 y (write, n*d)
//          (entry `l2_normalize_backward`): 0 params, 1 x (read), 2 y (read), 3 g = dL/dy (read), 4 gx (write)
// Threads: one workgroup of 256 invocations per row (rows may reach 100k: the row index is the linear
//   workgroup index wid.x + wid.y * nwg.x, so the launcher spreads rows over a 2-D grid). Invocation t
//   accumulates columns t, t+256, t+512, ... in order, then a tree reduction in workgroup memory
//   (128, 64, ..., 1) gives the row sum; the CPU twin sums in exactly this order. Row lengths up to a few
//   thousand (d = 2400 is ~10 columns per invocation) keep every invocation busy.
// Workgroup memory: 2 x 256 f32 = 2 KiB.
// Cost per row: forward 3d FLOPs + 1 sqrt, 8d bytes moved (x read twice is cached: 4d read + 4d written);
//   backward 6d FLOPs, 16d bytes (x, y, g read; gx written).

struct Params {
    n: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// Tree-reduce red_a (reduce_a) or red_a and red_b together (reduce_ab) into element 0, pairing t with
// t + s for s = 128, 64, ..., 1. Called in uniform control flow (every invocation reaches the barriers).
fn reduce_a(t: u32) {
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s { red_a[t] += red_a[t + s]; }
        workgroupBarrier();
    }
}
fn reduce_ab(t: u32) {
    for (var s = 128u; s > 0u; s >>= 1u) {
        if t < s {
            red_a[t] += red_a[t + s];
            red_b[t] += red_b[t + s];
        }
        workgroupBarrier();
    }
}

@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read_write> fy: array<f32>;

@compute @workgroup_size(256)
fn l2_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let t = lid.x;
    let base = row * p.d;
    var s = 0.0;
    for (var k = t; k < p.d; k += 256u) {
        let v = fx[base + k];
        s += v * v;
    }
    red_a[t] = s;
    workgroupBarrier();
    reduce_a(t);
    let nrm = max(sqrt(red_a[0]), p.eps);
    for (var k = t; k < p.d; k += 256u) {
        fy[base + k] = fx[base + k] / nrm;
    }
}

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> by: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> bgx: array<f32>;

@compute @workgroup_size(256)
fn l2_normalize_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let t = lid.x;
    let base = row * p.d;
    var sxx = 0.0;
    var sgy = 0.0;
    for (var k = t; k < p.d; k += 256u) {
        let v = bx[base + k];
        sxx += v * v;
        sgy += bg[base + k] * by[base + k];
    }
    red_a[t] = sxx;
    red_b[t] = sgy;
    workgroupBarrier();
    reduce_ab(t);
    let nrm = sqrt(red_a[0]);
    let dt = red_b[0];
    if nrm >= p.eps {
        for (var k = t; k < p.d; k += 256u) {
            bgx[base + k] = (bg[base + k] - dt * by[base + k]) / nrm;
        }
    } else {
        for (var k = t; k < p.d; k += 256u) {
            bgx[base + k] = bg[base + k] / p.eps;
        }
    }
}
