// Sparse (top-k) log-domain Sinkhorn, LightEA style. FORWARD ONLY: it serves inference decoding and has
// no backward. Each row i keeps k candidate columns cols[i, t] with scores s[i, t] (flat entry e = i*k + t);
// with X = s / eps and uniform marginals (log a = -ln n, log b = -ln m), g = 0 initially, each iteration is
//   f_i = log a - LSE_t (X_it + g_{cols[i,t]})                  (row step over the row's k entries)
//   g_j = log b - LSE_{e in col j} (X_e + f_{e / k})            (column step; g_j = 0 for an empty column)
// and the output is the log-plan of the kept entries l_e = X_e + f_{e/k} + g_{cols[e]}.
// The column step walks a host-built transposed index: the entries of column j are
// col_entries[col_ptr[j] .. col_ptr[j+1]] (a stable counting sort of e by column).
//
// Entry points, bindings (0 is the Params uniform), threads, cost (E = n*k entries):
//   sp_row  1 scores (read), 2 cols (read), 3 g (read), 4 f (write). One workgroup of 64 per row (linear
//           workgroup index over x and y); lane l folds entries t = l, l+64, .. into an online (max, sum-exp),
//           then the lanes are combined in a tree. ~5E FLOPs + E exp; 12E bytes (scores, cols, gathered g).
//   sp_col  1 scores, 2 col_ptr, 3 col_entries, 4 f (read), 5 g (write). One workgroup of 64 per column, lanes
//           over the column's entries, same fold. ~5E FLOPs + E exp; 12E bytes (entries, gathered scores and f).
//   sp_out  1 scores, 2 cols, 3 f, 4 g (read), 5 out (write). One invocation per entry. 3E FLOPs, 16E bytes.
// NEG (-3e38) stands for -inf in running maxima; all exp arguments are <= 0.

struct Params {
    n: u32,
    k: u32,
    m: u32,
    inv_eps: f32,
    log_a: f32,
    log_b: f32,
    _p0: u32,
    _p1: u32,
}

const NEG: f32 = -3.0e38;
const LANES: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> wm: array<f32, 64>;
var<workgroup> ws: array<f32, 64>;

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

// Tree fold of the lanes' (max, sum) pairs; returns LSE in every lane (uniform control flow).
fn tree_lse(lid: u32, acc: vec2<f32>) -> f32 {
    wm[lid] = acc.x;
    ws[lid] = acc.y;
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if lid < st {
            let r = combine(vec2<f32>(wm[lid], ws[lid]), vec2<f32>(wm[lid + st], ws[lid + st]));
            wm[lid] = r.x;
            ws[lid] = r.y;
        }
        workgroupBarrier();
    }
    return wm[0] + log(ws[0]);
}

@group(0) @binding(1) var<storage, read> r_scores: array<f32>;
@group(0) @binding(2) var<storage, read> r_cols: array<u32>;
@group(0) @binding(3) var<storage, read> r_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_f: array<f32>;

@compute @workgroup_size(64)
fn sp_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = wid.x + wid.y * nwg.x;
    let lid = lid3.x;
    if i >= p.n { return; }
    var acc = vec2<f32>(NEG, 0.0);
    let base = i * p.k;
    for (var t = lid; t < p.k; t += LANES) {
        acc = online(acc, r_scores[base + t] * p.inv_eps + r_g[r_cols[base + t]]);
    }
    let lse = tree_lse(lid, acc);
    if lid == 0u {
        r_f[i] = p.log_a - lse;
    }
}

@group(0) @binding(1) var<storage, read> c_scores: array<f32>;
@group(0) @binding(2) var<storage, read> c_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> c_entries: array<u32>;
@group(0) @binding(4) var<storage, read> c_f: array<f32>;
@group(0) @binding(5) var<storage, read_write> c_g: array<f32>;

@compute @workgroup_size(64)
fn sp_col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let j = wid.x + wid.y * nwg.x;
    let lid = lid3.x;
    if j >= p.m { return; }
    let a = c_ptr[j];
    let len = c_ptr[j + 1u] - a;
    var acc = vec2<f32>(NEG, 0.0);
    for (var q = lid; q < len; q += LANES) {
        let e = c_entries[a + q];
        acc = online(acc, c_scores[e] * p.inv_eps + c_f[e / p.k]);
    }
    let lse = tree_lse(lid, acc);
    if lid == 0u {
        c_g[j] = select(p.log_b - lse, 0.0, len == 0u);
    }
}

@group(0) @binding(1) var<storage, read> o_scores: array<f32>;
@group(0) @binding(2) var<storage, read> o_cols: array<u32>;
@group(0) @binding(3) var<storage, read> o_f: array<f32>;
@group(0) @binding(4) var<storage, read> o_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> o_out: array<f32>;

@compute @workgroup_size(256)
fn sp_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if e >= p.n * p.k { return; }
    o_out[e] = o_scores[e] * p.inv_eps + o_f[e / p.k] + o_g[o_cols[e]];
}
