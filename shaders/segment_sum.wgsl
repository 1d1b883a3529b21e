// Segment sum / CSR sparse-times-dense product, deterministic (each output summed by one invocation in
// segment order; no atomics):
//   Y[i, :] = sum_{k in offsets[i] .. offsets[i+1]} w_k * X[src_k, :]
// with src_k = cols[k] when GATHER (a permutation of a segment index, or the column indices of a CSR
// matrix) and src_k = k otherwise; w_k = vals[k] when WEIGHTED and 1 otherwise. Empty segments give zero.
// Used for segment_sum (GATHER = perm present, not WEIGHTED), the backward of gather_rows, and spmm
// (GATHER and WEIGHTED; neighbour means, relation mixing) and its transpose.
// With HEAD_WIDTH = m > 0 (spmm_heads, the relation heads of the training-free aligner) each entry has one
// weight per head of m columns: w_k = vals[k * (d / m) + col / m] (vals is [nnz, d / m], row-major).
//
// Bindings: 0 params, 1 offsets (read, rows+1 u32), 2 cols (read, nnz u32; bound but unused unless GATHER),
//           3 vals (read, nnz f32; unused unless WEIGHTED), 4 x (read, n_src*d f32), 5 y (write, rows*d f32).
// Specialisation: GATHER, WEIGHTED, HEAD_WIDTH (one pipeline each; HEAD_WIDTH only with WEIGHTED).
// Threads: one invocation per output element (rows*d), 256 per workgroup, consecutive invocations on
//   consecutive columns of a row, so each X row read is coalesced across the row's invocations. Workgroups
//   are spread over x and y (linear index wid.x + wid.y * nwg.x). Sources >= n_src contribute nothing.
// Cost: nnz*d multiply-adds; bytes about 4*(nnz*d (X rows) + rows*d (Y)) plus 8*nnz of indices/values per
//   column touched (cached across a row's invocations); with heads 4*nnz*d/m bytes of weights.

struct Params {
    rows: u32,
    d: u32,
    n_src: u32,
    _pad: u32,
}

override GATHER: bool = false;
override WEIGHTED: bool = false;
override HEAD_WIDTH: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read> cols: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn segment_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.rows * p.d { return; }
    let row = i / p.d;
    let col = i - row * p.d;
    let k0 = offsets[row];
    let k1 = offsets[row + 1u];
    var heads = 1u;
    var head = 0u;
    if HEAD_WIDTH > 0u {
        // max(): the pipeline without heads must not divide by the constant 0.
        heads = p.d / max(HEAD_WIDTH, 1u);
        head = col / max(HEAD_WIDTH, 1u);
    }
    var acc = 0.0;
    for (var k = k0; k < k1; k++) {
        var src = k;
        if GATHER {
            src = cols[k];
        }
        if src >= p.n_src { continue; }
        let v = x[src * p.d + col];
        if WEIGHTED {
            acc += vals[k * heads + head] * v;
        } else {
            acc += v;
        }
    }
    y[i] = acc;
}
