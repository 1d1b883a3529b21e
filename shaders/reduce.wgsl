// Column sums of a row-major matrix, deterministic (fixed summation order, no atomics):
//   out[chunk, j] = sum_{i in chunk} x[i, j],  chunks of CHUNK rows.
// The launcher applies it repeatedly (rows -> ceil(rows / CHUNK) -> ... -> 1) to get sum over all rows,
// e.g. the bias gradient g_b = sum_rows(g_Y).
//
// Bindings: 0 params, 1 x (read, rows x cols), 2 out (write, ceil(rows / chunk) x cols).
// Threads: one invocation per (column, chunk); 64 columns per workgroup along x, one chunk per workgroup
//   along y. Each invocation walks its chunk's rows, so reads of a row are coalesced across the workgroup.
// Cost: rows*cols FLOPs and 4*rows*cols bytes read per pass; the second pass reads 1/CHUNK of that.

struct Params {
    rows: u32,
    cols: u32,
    chunk: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn sum_rows_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let col = gid.x;
    let chunk = wid.y;
    if col >= p.cols { return; }
    let start = chunk * p.chunk;
    let end = min(start + p.chunk, p.rows);
    var s = 0.0;
    for (var i = start; i < end; i++) {
        s += x[i * p.cols + col];
    }
    out[chunk * p.cols + col] = s;
}
