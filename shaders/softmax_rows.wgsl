// Softmax over the short axis of a row-major [n, m] matrix (m = number of modalities, <= 64) and its
// backward (mmea-spec §7 op 5):
//   forward:  y_ij = exp(x_ij − max_k x_ik) / Σ_k exp(x_ik − max_k x_ik)
//   backward: g_x_ij = y_ij (g_ij − Σ_k y_ik g_ik)
// Subtracting the row maximum keeps every exp argument <= 0, so nothing overflows.
//
// Bindings (entry `softmax_rows`):          0 params, 1 x (read, n*m), 2 y (write, n*m)
//          (entry `softmax_rows_backward`): 0 params, 1 y (read), 2 g = dL/dy (read), 3 gx (write)
// Threads: one invocation per row, 64 per workgroup; workgroups spread over x and y (row index
//   (wid.x + wid.y * nwg.x) * 64 + lid.x) so n may exceed 65,535 * 64. Each invocation walks its row
//   sequentially (max, sum of exps, write), the same order as the CPU twin.
// Cost per row: forward 2m exp + 4m FLOPs, 8m bytes (reads of x after the first hit the cache);
//   backward 4m FLOPs, 12m bytes.

struct Params {
    n: u32,
    m: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read_write> fy: array<f32>;

@compute @workgroup_size(64)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = (wid.x + wid.y * nwg.x) * 64u + lid.x;
    if row >= p.n || p.m == 0u { return; }
    let base = row * p.m;
    var mx = fx[base];
    for (var k = 1u; k < p.m; k++) { mx = max(mx, fx[base + k]); }
    var s = 0.0;
    for (var k = 0u; k < p.m; k++) { s += exp(fx[base + k] - mx); }
    for (var k = 0u; k < p.m; k++) { fy[base + k] = exp(fx[base + k] - mx) / s; }
}

@group(0) @binding(1) var<storage, read> by: array<f32>;
@group(0) @binding(2) var<storage, read> bg: array<f32>;
@group(0) @binding(3) var<storage, read_write> bgx: array<f32>;

@compute @workgroup_size(64)
fn softmax_rows_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = (wid.x + wid.y * nwg.x) * 64u + lid.x;
    if row >= p.n { return; }
    let base = row * p.m;
    var dt = 0.0;
    for (var k = 0u; k < p.m; k++) { dt += by[base + k] * bg[base + k]; }
    for (var k = 0u; k < p.m; k++) { bgx[base + k] = by[base + k] * (bg[base + k] - dt); }
}
