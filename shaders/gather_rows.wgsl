// Row gather: Y[e, :] = X[idx[e], :]  (X: n x d, idx: e u32, Y: e x d, row-major).
// An index >= n yields a zero row (the CPU twin reports it as an error instead; indices built on the host
// are validated there). The adjoint, a segment sum over the same index, is in segment_sum.wgsl.
//
// Bindings: 0 params, 1 x (read, n*d f32), 2 idx (read, e u32), 3 y (write, e*d f32).
// Threads: one invocation per output element (e*d of them), 256 per workgroup; consecutive invocations
//   take consecutive columns of a row, so reads of a source row and writes of Y coalesce. Workgroups are
//   spread over x and y (linear index wid.x + wid.y * nwg.x) so e*d may exceed 65,535 * 256.
// Cost: no FLOPs; per element 4 bytes read from X, 4 written to Y, plus 4 bytes of index per row
//   (one integer division per element to find the row).

struct Params {
    rows: u32,  // e
    d: u32,
    n_src: u32, // n
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.rows * p.d { return; }
    let e = i / p.d;
    let col = i - e * p.d;
    let src = idx[e];
    var v = 0.0;
    if src < p.n_src {
        v = x[src * p.d + col];
    }
    y[i] = v;
}
