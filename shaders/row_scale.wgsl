// Per-row scaling of a row-major [n, d] matrix and the row dot product (its weight gradient):
//   scale_rows: y_ik = x_ik * s_i          backward: g_x = scale_rows(g, s), g_s_i = row_dot(g, x)_i
//   row_dot:    out_i = Σ_k a_ik b_ik      backward: g_a = scale_rows(b, g_out), g_b = scale_rows(a, g_out)
//
// Bindings (entry `scale_rows`): 0 params, 1 x (read, n*d), 2 s (read, n), 3 y (write, n*d)
//          (entry `row_dot`):    0 params, 1 a (read, n*d), 2 b (read, n*d), 3 out (write, n)
// Threads: scale_rows: one invocation per element, 256 per workgroup, linear index
//   (wid.x + wid.y * nwg.x) * 256 + lid.x (2-D grid for large n*d); row i = index / d.
//   row_dot: one workgroup of 256 per row (row = wid.x + wid.y * nwg.x, 2-D grid for n > 65,535);
//   invocation t sums columns t, t+256, ... in order, then a tree reduction (128, 64, ..., 1) in workgroup
//   memory (1 KiB); the CPU twin sums in the same order. d = 0 writes out_i = 0.
// Cost: scale_rows 1 FLOP and 12 bytes per element (s reads hit the cache);
//   row_dot 2d FLOPs and 8d + 4 bytes per row.

struct Params {
    n: u32,     // rows
    d: u32,     // columns
    total: u32, // n * d
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> sx: array<f32>;
@group(0) @binding(2) var<storage, read> ss: array<f32>;
@group(0) @binding(3) var<storage, read_write> sy: array<f32>;

@compute @workgroup_size(256)
fn scale_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.total { return; }
    sy[i] = sx[i] * ss[i / p.d];
}

var<workgroup> red: array<f32, 256>;

@group(0) @binding(1) var<storage, read> da: array<f32>;
@group(0) @binding(2) var<storage, read> db: array<f32>;
@group(0) @binding(3) var<storage, read_write> dout: array<f32>;

@compute @workgroup_size(256)
fn row_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.n { return; }
    let t = lid.x;
    let base = row * p.d;
    var s = 0.0;
    for (var k = t; k < p.d; k += 256u) {
        s += da[base + k] * db[base + k];
    }
    red[t] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if t < st { red[t] += red[t + st]; }
        workgroupBarrier();
    }
    if t == 0u { dout[row] = red[0]; }
}
