// Dense log-domain Sinkhorn in the potentials form, over a matrix stored as row blocks ("tiles"), and its
// exact unrolled backward. The score matrix S (n x m) is only read; X = S / eps is formed on the fly.
//   forward, k = 1..L:  f^k_i = log a_i - LSE_j(X_ij + g^{k-1}_j)        (row step, g^0 = 0)
//                       g^k_j = log b_j - LSE_i(X_ij + f^k_i)            (column step)
//   output:             l_ij  = X_ij + f^L_i + g^L_j                     (log-plan; P = exp l)
//   backward (G = dL/dl): g_X = G, g_f = rowsum G, g_g = colsum G; for k = L..1:
//     Q_ij = exp(X_ij + f^k_i + g^k_j - log b_j):  g_X -= Q (.) g_g[j];  g_f[i] -= sum_j Q_ij g_g[j]
//     R_ij = exp(X_ij + g^{k-1}_j + f^k_i - log a_i): g_X -= R (.) g_f[i]; g_g[j] = -sum_i R_ij g_f[i]
//   and g_S = g_X / eps (folded into the k = 1 row-step pass as `scale`).
// Potentials of every iteration live in f_hist [(L+1) x n] and g_hist [(L+1) x m]; row k holds f^k / g^k
// (row 0 is zero), addressed by the element offsets f_off = k*n and g_off = k*m.
//
// Every launch works on ONE row block [rows x m] of a tiled matrix whose first row has global index
// row_off. Column reductions go through partials: a block is cut into chunks of `chunk` rows; chunk c of
// the block owns slot chunk_off + c of the partial buffers (nchunks slots over all blocks); a combine
// kernel folds the slots of each column in slot order (deterministic, no atomics).
//
// Entry points, bindings (0 is always the Params uniform), threads, cost per launch (B = rows * m):
//   row_lse          1 s (read), 2 g_hist (read), 3 log_a (read), 4 f_hist (write).
//                    One workgroup of 256 per row (linear workgroup index over x and y); lane l walks columns
//                    l, l+256, .. with an online (max, sum-exp) and the lanes are folded in a tree.
//                    ~4B FLOPs + B exp, 4B + 4m*(rows/256 reuse) bytes read.
//   col_lse_partial  1 s (read), 2 f_hist (read), 3 part (write: max at [slot*m + j], sum at
//                    [(nchunks + slot)*m + j]). One invocation per (column, chunk): 64 columns per
//                    workgroup along x, chunk index along y; reads of a row coalesce across the workgroup.
//                    ~4B FLOPs + B exp, 4B bytes read.
//   col_lse_combine  1 part (read), 2 log_b (read), 3 g_hist (write). One invocation per column (256 per
//                    workgroup). 2*nchunks exp per column, 8*nchunks*m bytes read.
//   log_plan         1 s (read), 2 f_hist (read), 3 g_hist (read), 4 out (write). One invocation per element.
//                    3B FLOPs, 8B bytes.
//   exp_plan         1 l (read), 2 out (write). One invocation per element: P = exp(min(l, 80)). B exp, 8B bytes.
//   col_sum_partial  1 gx (read), 2 part (write, [slot*m + j]). As col_lse_partial. B FLOPs, 4B bytes.
//   col_sum_combine  1 part (read), 2 gg (write): gg[j] = scale * sum_slot part. nchunks*m FLOPs.
//   bwd_col_step     1 s, 2 f_hist, 3 g_hist, 4 log_b, 5 gg (read), 6 gx (read_write), 7 gf (write).
//                    One workgroup of 256 per row, lanes over columns, tree sums. With flag = 1 (k = L) gf
//                    starts from the row sum of the incoming gx (= G), else from 0. ~6B FLOPs + B exp, 12B bytes.
//   bwd_row_step     1 s, 2 f_hist, 3 g_hist, 4 log_a, 5 gf (read), 6 gx (read_write), 7 part (write).
//                    As col_lse_partial; gx = (gx - R g_f) * scale. ~6B FLOPs + B exp, 12B bytes.
// Exponents of Q and R are <= 0 in exact arithmetic (they are softmax entries); they are clamped at 30 so
// that rounding can never overflow. NEG (-3e38) stands for -inf in running maxima (WGSL has no infinities).

struct Params {
    rows: u32,
    cols: u32,
    row_off: u32,
    f_off: u32,
    g_off: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    flag: u32,
    inv_eps: f32,
    scale: f32,
    _pad: u32,
}

const NEG: f32 = -3.0e38;
const LANES: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> wm: array<f32, 256>;
var<workgroup> ws: array<f32, 256>;

// Fold x into a running (max, sum of exp(. - max)).
fn online(acc: vec2<f32>, x: f32) -> vec2<f32> {
    if x > acc.x {
        return vec2<f32>(x, acc.y * exp(acc.x - x) + 1.0);
    }
    return vec2<f32>(acc.x, acc.y + exp(x - acc.x));
}

fn combine(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

fn finish(a: vec2<f32>) -> f32 {
    return a.x + log(a.y);
}

// Tree fold of the per-lane (max, sum) pairs in wm/ws; lane 0 ends with the result. Uniform control flow.
fn tree_lse(lid: u32) {
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if lid < st {
            let r = combine(vec2<f32>(wm[lid], ws[lid]), vec2<f32>(wm[lid + st], ws[lid + st]));
            wm[lid] = r.x;
            ws[lid] = r.y;
        }
        workgroupBarrier();
    }
}

// Tree sums of wm and ws (two independent sums).
fn tree_sum2(lid: u32) {
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if lid < st {
            wm[lid] = wm[lid] + wm[lid + st];
            ws[lid] = ws[lid] + ws[lid + st];
        }
        workgroupBarrier();
    }
}

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// ---- forward ------------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> rl_s: array<f32>;
@group(0) @binding(2) var<storage, read> rl_g: array<f32>;
@group(0) @binding(3) var<storage, read> rl_la: array<f32>;
@group(0) @binding(4) var<storage, read_write> rl_f: array<f32>;

@compute @workgroup_size(256)
fn row_lse(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = row_index(wid, nwg);
    let lid = lid3.x;
    // `r` is uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if r >= p.rows { return; }
    var acc = vec2<f32>(NEG, 0.0);
    let base = r * p.cols;
    for (var j = lid; j < p.cols; j += LANES) {
        acc = online(acc, rl_s[base + j] * p.inv_eps + rl_g[p.g_off + j]);
    }
    wm[lid] = acc.x;
    ws[lid] = acc.y;
    workgroupBarrier();
    tree_lse(lid);
    if lid == 0u {
        let i = p.row_off + r;
        rl_f[p.f_off + i] = rl_la[i] - finish(vec2<f32>(wm[0], ws[0]));
    }
}

@group(0) @binding(1) var<storage, read> cp_s: array<f32>;
@group(0) @binding(2) var<storage, read> cp_f: array<f32>;
@group(0) @binding(3) var<storage, read_write> cp_part: array<f32>;

@compute @workgroup_size(64)
fn col_lse_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let start = wid.y * p.chunk;
    let end = min(start + p.chunk, p.rows);
    var acc = vec2<f32>(NEG, 0.0);
    for (var r = start; r < end; r++) {
        acc = online(acc, cp_s[r * p.cols + j] * p.inv_eps + cp_f[p.f_off + p.row_off + r]);
    }
    let slot = p.chunk_off + wid.y;
    cp_part[slot * p.cols + j] = acc.x;
    cp_part[(p.nchunks + slot) * p.cols + j] = acc.y;
}

@group(0) @binding(1) var<storage, read> cc_part: array<f32>;
@group(0) @binding(2) var<storage, read> cc_lb: array<f32>;
@group(0) @binding(3) var<storage, read_write> cc_g: array<f32>;

@compute @workgroup_size(256)
fn col_lse_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    var acc = vec2<f32>(NEG, 0.0);
    for (var c = 0u; c < p.nchunks; c++) {
        acc = combine(acc, vec2<f32>(cc_part[c * p.cols + j], cc_part[(p.nchunks + c) * p.cols + j]));
    }
    cc_g[p.g_off + j] = cc_lb[j] - finish(acc);
}

@group(0) @binding(1) var<storage, read> lp_s: array<f32>;
@group(0) @binding(2) var<storage, read> lp_f: array<f32>;
@group(0) @binding(3) var<storage, read> lp_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> lp_out: array<f32>;

@compute @workgroup_size(256)
fn log_plan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = row_index(wid, nwg) * 256u + lid.x;
    if e >= p.rows * p.cols { return; }
    let r = e / p.cols;
    let j = e - r * p.cols;
    lp_out[e] = lp_s[e] * p.inv_eps + lp_f[p.f_off + p.row_off + r] + lp_g[p.g_off + j];
}

@group(0) @binding(1) var<storage, read> ep_l: array<f32>;
@group(0) @binding(2) var<storage, read_write> ep_out: array<f32>;

@compute @workgroup_size(256)
fn exp_plan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = row_index(wid, nwg) * 256u + lid.x;
    if e >= p.rows * p.cols { return; }
    ep_out[e] = exp(min(ep_l[e], 80.0));
}

// ---- backward -----------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> sp_gx: array<f32>;
@group(0) @binding(2) var<storage, read_write> sp_part: array<f32>;

@compute @workgroup_size(64)
fn col_sum_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let start = wid.y * p.chunk;
    let end = min(start + p.chunk, p.rows);
    var s = 0.0;
    for (var r = start; r < end; r++) {
        s += sp_gx[r * p.cols + j];
    }
    sp_part[(p.chunk_off + wid.y) * p.cols + j] = s;
}

@group(0) @binding(1) var<storage, read> sc_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> sc_gg: array<f32>;

@compute @workgroup_size(256)
fn col_sum_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    var s = 0.0;
    for (var c = 0u; c < p.nchunks; c++) {
        s += sc_part[c * p.cols + j];
    }
    sc_gg[j] = p.scale * s;
}

@group(0) @binding(1) var<storage, read> bc_s: array<f32>;
@group(0) @binding(2) var<storage, read> bc_f: array<f32>;
@group(0) @binding(3) var<storage, read> bc_g: array<f32>;
@group(0) @binding(4) var<storage, read> bc_lb: array<f32>;
@group(0) @binding(5) var<storage, read> bc_gg: array<f32>;
@group(0) @binding(6) var<storage, read_write> bc_gx: array<f32>;
@group(0) @binding(7) var<storage, read_write> bc_gf: array<f32>;

@compute @workgroup_size(256)
fn bwd_col_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid3: vec3<u32>) {
    let r = row_index(wid, nwg);
    let lid = lid3.x;
    if r >= p.rows { return; }
    let i = p.row_off + r;
    let fi = bc_f[p.f_off + i];
    let base = r * p.cols;
    var acc_q = 0.0;
    var acc_g = 0.0;
    for (var j = lid; j < p.cols; j += LANES) {
        let q = exp(min(bc_s[base + j] * p.inv_eps + fi + bc_g[p.g_off + j] - bc_lb[j], 30.0));
        let t = q * bc_gg[j];
        let old = bc_gx[base + j];
        bc_gx[base + j] = old - t;
        acc_q += t;
        acc_g += old;
    }
    wm[lid] = acc_q;
    ws[lid] = acc_g;
    workgroupBarrier();
    tree_sum2(lid);
    if lid == 0u {
        bc_gf[i] = select(0.0, ws[0], p.flag == 1u) - wm[0];
    }
}

@group(0) @binding(1) var<storage, read> br_s: array<f32>;
@group(0) @binding(2) var<storage, read> br_f: array<f32>;
@group(0) @binding(3) var<storage, read> br_g: array<f32>;
@group(0) @binding(4) var<storage, read> br_la: array<f32>;
@group(0) @binding(5) var<storage, read> br_gf: array<f32>;
@group(0) @binding(6) var<storage, read_write> br_gx: array<f32>;
@group(0) @binding(7) var<storage, read_write> br_part: array<f32>;

@compute @workgroup_size(64)
fn bwd_row_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols { return; }
    let start = wid.y * p.chunk;
    let end = min(start + p.chunk, p.rows);
    let gj = br_g[p.g_off + j];
    var s = 0.0;
    for (var r = start; r < end; r++) {
        let i = p.row_off + r;
        let e = r * p.cols + j;
        let rr = exp(min(br_s[e] * p.inv_eps + gj + br_f[p.f_off + i] - br_la[i], 30.0)) * br_gf[i];
        br_gx[e] = (br_gx[e] - rr) * p.scale;
        s += rr;
    }
    br_part[(p.chunk_off + wid.y) * p.cols + j] = s;
}
