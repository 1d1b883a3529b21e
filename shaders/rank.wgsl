// Rank counting for evaluation (mmea-spec §2 step 7, §7 op 24) on a square score matrix whose gold pairs
// lie on the diagonal, stored as row blocks. No sort: rank = number of strictly better candidates.
//   l2r: rank_i = #{j : S_ij > S_ii}      r2l: rank_j = #{i : S_ij > S_jj}
// Ties with the gold score are not counted (the gold wins a tie). Evaluation only: no backward.
// Each launch sees ONE row block [rows x cols] whose first row is global row row_off. The column counts go
// through per-chunk partial counts (chunk c of the block writes slot chunk_off + c) and a combine kernel.
//
// Entry points, bindings (0 is the Params uniform), threads, cost (B = rows * cols):
//   rank_rows          1 s (read), 2 l2r (write, [n] u32), 3 diag (write, [n] f32: S_ii, for the r2l pass).
//                      One workgroup of 256 per row (linear workgroup index over x and y), lanes over columns,
//                      counts summed in a tree. B compares, 4B bytes read.
//   rank_cols_partial  1 s (read), 2 diag (read), 3 part (write, [slots x cols] u32). One invocation per
//                      (column, chunk): 64 columns per workgroup along x, chunk index along y. B compares,
//                      4B bytes read.
//   rank_cols_combine  1 part (read), 2 r2l (write, [cols] u32). One invocation per column (256 per
//                      workgroup); nchunks adds per column.

struct Params {
    rows: u32,
    cols: u32,
    row_off: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    _p0: u32,
    _p1: u32,
}

const LANES: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> wc: array<u32, 256>;

@group(0) @binding(1) var<storage, read> r_s: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_rank: array<u32>;
@group(0) @binding(3) var<storage, read_write> r_diag: array<f32>;

@compute @workgroup_size(256)
fn rank_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let lid = lid3.x;
    if r >= p.rows { return; }
    let i = p.row_off + r;
    let base = r * p.cols;
    let d = r_s[base + i];
    var c = 0u;
    for (var j = lid; j < p.cols; j += LANES) {
        c += select(0u, 1u, r_s[base + j] > d);
    }
    wc[lid] = c;
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if lid < st {
            wc[lid] += wc[lid + st];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        r_rank[i] = wc[0];
        r_diag[i] = d;
    }
}

@group(0) @binding(1) var<storage, read> c_s: array<f32>;
@group(0) @binding(2) var<storage, read> c_diag: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_part: array<u32>;

@compute @workgroup_size(64)
fn rank_cols_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let start = wid.y * p.chunk;
    let end = min(start + p.chunk, p.rows);
    let d = c_diag[j];
    var c = 0u;
    for (var r = start; r < end; r++) {
        c += select(0u, 1u, c_s[r * p.cols + j] > d);
    }
    c_part[(p.chunk_off + wid.y) * p.cols + j] = c;
}

@group(0) @binding(1) var<storage, read> k_part: array<u32>;
@group(0) @binding(2) var<storage, read_write> k_rank: array<u32>;

@compute @workgroup_size(256)
fn rank_cols_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    var c = 0u;
    for (var s = 0u; s < p.nchunks; s++) {
        c += k_part[s * p.cols + j];
    }
    k_rank[j] = c;
}
