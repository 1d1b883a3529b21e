// Row and column top-k (k <= 16) of a score matrix stored as row blocks, the top-k means CSLS needs, and
// the CSLS rescoring itself. Evaluation only: no backward exists for any of these.
//   order: (v, i) is better than (w, j) iff v > w, or v == w and i < j (ties go to the lower index), so the
//   top-k is unique and the result does not depend on how the work is split. Scores must not be NaN.
//   mean_k = (sum_{t<k} v_t) * inv_k, summed from the best down (the CPU twin does the same).
//   CSLS_ij = 2 S_ij - r_L(i) - r_R(j), r_L / r_R the row / column top-k means.
// Each launch sees ONE row block [rows x cols] whose first row is global row row_off. Column top-k goes
// through partials: chunk c of the block (chunk rows) writes its sorted list to slot chunk_off + c; a merge
// kernel folds the nchunks slots of each column in slot order.
// Lists are padded with (LOWEST, NONE), which is worse than any finite score.
//
// Entry points, bindings (0 is the Params uniform), threads, cost (B = rows * cols):
//   row_topk           1 s (read), 2 vals (write, [n x k]), 3 idx (write, [n x k] u32).
//   row_topk_mean      1 s (read), 2 mean (write, [n]).
//                      One workgroup of 64 per row (linear workgroup index over x and y). Lane l keeps a
//                      sorted private list of its columns l, l+64, ..; the 64 lists are merged pairwise in a
//                      tree in workgroup memory (8 KiB). ~B compares (+ k per insertion), 4B bytes read.
//   col_topk_partial   1 s (read), 2 pvals (write, [slots x cols x k]), 3 pidx (write). One invocation per
//                      (column, chunk): 64 columns per workgroup along x, chunk index along y; reads of a row
//                      coalesce across the workgroup. ~B compares, 4B bytes read, 8*k*cols per chunk written.
//   col_topk_merge     1 pvals, 2 pidx (read), 3 vals (write, [cols x k]), 4 idx (write).
//   col_topk_merge_mean 1 pvals, 2 pidx (read), 3 mean (write, [cols]).
//                      One invocation per column (64 per workgroup); 2k compares and 8k bytes per slot.
//   csls_apply         1 s (read), 2 r_l (read, [n]), 3 r_r (read, [cols]), 4 out (write). One invocation per
//                      element. 3B FLOPs, 8B bytes.

struct Params {
    rows: u32,
    cols: u32,
    row_off: u32,
    k: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    inv_k: f32,
}

// Exactly -f32::MAX: browsers (Tint) reject a literal that rounds beyond the f32 range, such as -3.4028235e38.
const LOWEST: f32 = -3.40282346638528859811704183484516925440e38;
const NONE: u32 = 0xffffffffu;
const KMAX: u32 = 16u;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> tv: array<f32, 1024>; // LANES x KMAX
var<workgroup> ti: array<u32, 1024>;

fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

struct List {
    v: array<f32, 16>,
    i: array<u32, 16>,
}

fn empty_list() -> List {
    var l: List;
    for (var t = 0u; t < KMAX; t++) {
        l.v[t] = LOWEST;
        l.i[t] = NONE;
    }
    return l;
}

// Insert (v, i) into the sorted list of length p.k if it beats the last entry.
fn insert(l: ptr<function, List>, v: f32, i: u32) {
    let k = p.k;
    if !better(v, i, (*l).v[k - 1u], (*l).i[k - 1u]) { return; }
    var pos = k - 1u;
    while pos > 0u && better(v, i, (*l).v[pos - 1u], (*l).i[pos - 1u]) {
        (*l).v[pos] = (*l).v[pos - 1u];
        (*l).i[pos] = (*l).i[pos - 1u];
        pos -= 1u;
    }
    (*l).v[pos] = v;
    (*l).i[pos] = i;
}

fn list_mean(l: ptr<function, List>) -> f32 {
    var s = 0.0;
    for (var t = 0u; t < p.k; t++) {
        s += (*l).v[t];
    }
    return s * p.inv_k;
}

// Top-k of one row across the workgroup; the result is in slot 0 of tv/ti. Uniform control flow.
fn row_list(r: u32, lid: u32) {
    var l = empty_list();
    let base = r * p.cols;
    for (var j = lid; j < p.cols; j += LANES) {
        insert(&l, rs[base + j], j);
    }
    for (var t = 0u; t < p.k; t++) {
        tv[lid * KMAX + t] = l.v[t];
        ti[lid * KMAX + t] = l.i[t];
    }
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if lid < st {
            var out: List;
            var a = lid * KMAX;
            var b = (lid + st) * KMAX;
            for (var t = 0u; t < p.k; t++) {
                if better(tv[a], ti[a], tv[b], ti[b]) {
                    out.v[t] = tv[a];
                    out.i[t] = ti[a];
                    a += 1u;
                } else {
                    out.v[t] = tv[b];
                    out.i[t] = ti[b];
                    b += 1u;
                }
            }
            for (var t = 0u; t < p.k; t++) {
                tv[lid * KMAX + t] = out.v[t];
                ti[lid * KMAX + t] = out.i[t];
            }
        }
        workgroupBarrier();
    }
}

@group(0) @binding(1) var<storage, read> rs: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_idx: array<u32>;

@compute @workgroup_size(64)
fn row_topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let lid = lid3.x;
    if r >= p.rows { return; }
    row_list(r, lid);
    if lid < p.k {
        let o = (p.row_off + r) * p.k + lid;
        r_vals[o] = tv[lid];
        r_idx[o] = ti[lid];
    }
}

@group(0) @binding(2) var<storage, read_write> r_mean: array<f32>;

@compute @workgroup_size(64)
fn row_topk_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let lid = lid3.x;
    if r >= p.rows { return; }
    row_list(r, lid);
    if lid == 0u {
        var s = 0.0;
        for (var t = 0u; t < p.k; t++) {
            s += tv[t];
        }
        r_mean[p.row_off + r] = s * p.inv_k;
    }
}

@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read_write> c_pv: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_pi: array<u32>;

@compute @workgroup_size(64)
fn col_topk_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let start = wid.y * p.chunk;
    let end = min(start + p.chunk, p.rows);
    var l = empty_list();
    for (var r = start; r < end; r++) {
        insert(&l, cs[r * p.cols + j], p.row_off + r);
    }
    let o = ((p.chunk_off + wid.y) * p.cols + j) * p.k;
    for (var t = 0u; t < p.k; t++) {
        c_pv[o + t] = l.v[t];
        c_pi[o + t] = l.i[t];
    }
}

@group(0) @binding(1) var<storage, read> m_pv: array<f32>;
@group(0) @binding(2) var<storage, read> m_pi: array<u32>;
@group(0) @binding(3) var<storage, read_write> m_vals: array<f32>;
@group(0) @binding(4) var<storage, read_write> m_idx: array<u32>;

// Merge the column's partial lists in slot order.
fn col_list(j: u32) -> List {
    var l = empty_list();
    for (var c = 0u; c < p.nchunks; c++) {
        let base = (c * p.cols + j) * p.k;
        var out: List;
        var a = 0u;
        var b = 0u;
        for (var t = 0u; t < p.k; t++) {
            if better(l.v[a], l.i[a], m_pv[base + b], m_pi[base + b]) {
                out.v[t] = l.v[a];
                out.i[t] = l.i[a];
                a += 1u;
            } else {
                out.v[t] = m_pv[base + b];
                out.i[t] = m_pi[base + b];
                b += 1u;
            }
        }
        l = out;
    }
    return l;
}

@compute @workgroup_size(64)
fn col_topk_merge(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let l = col_list(j);
    for (var t = 0u; t < p.k; t++) {
        m_vals[j * p.k + t] = l.v[t];
        m_idx[j * p.k + t] = l.i[t];
    }
}

@group(0) @binding(3) var<storage, read_write> m_mean: array<f32>;

@compute @workgroup_size(64)
fn col_topk_merge_mean(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    var l = col_list(j);
    m_mean[j] = list_mean(&l);
}

@group(0) @binding(1) var<storage, read> a_s: array<f32>;
@group(0) @binding(2) var<storage, read> a_rl: array<f32>;
@group(0) @binding(3) var<storage, read> a_rr: array<f32>;
@group(0) @binding(4) var<storage, read_write> a_out: array<f32>;

@compute @workgroup_size(256)
fn csls_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if e >= p.rows * p.cols { return; }
    let r = e / p.cols;
    let j = e - r * p.cols;
    a_out[e] = (2.0 * a_s[e] - a_rl[p.row_off + r]) - a_rr[j];
}
