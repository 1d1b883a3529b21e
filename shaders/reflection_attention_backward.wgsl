// Fused relational-reflection graph attention, backward (see reflection_attention.wgsl for the forward and
// core/src/ops/reflection.rs for the derivation). With g_o = g_y * act'(y) (computed before, elementwise),
// for every edge e = (h -> t):
//   g_alpha_e = g_o[h] . nt_e = g_o[h] . x_t - 2 (x_t . rho_e)(g_o[h] . rho_e)
//   g_s_e     = alpha_e (g_alpha_e - sum_{e' in out(h)} alpha_e' g_alpha_e')
//   pass A (per head h):     part[h]  = sum_{e in out(h)} g_s_e rho_e        (g_a = column sums of part)
//   pass B (per tail t):     g_x[t]   = sum_{e into t} alpha_e (g_o[h] - 2 (g_o[h] . rho_e) rho_e)
//   pass C (per relation r): g_Rel[r] = sum_{(e, m) in r} m g_u_e, with
//     g_rho_e = -2 alpha_e ((x_t . rho_e) g_o[h] + (g_o[h] . rho_e) x_t) + g_s_e a
//     g_u_e   = (g_rho_e - c_e rho_e) / max(|u_e|, 1e-12),
//     c_e = g_rho_e . rho_e = -4 alpha_e (x_t . rho_e)(g_o[h] . rho_e) + g_s_e s_e  (0 when |u_e| < 1e-12)
// rho_e is recomputed column by column from the mixing entries; only per-edge scalars are stored.
// All sums run over sorted segments in a fixed order (no atomics): deterministic.
//
// Bindings (all three entry points): 0 params, 1 index (read, packed u32 graph arrays), 2 weights (read),
//   3 rel (read, R x d), 4 x (read, n x d), 5 a (read, d), 6 g_o (read, n x d),
//   7 bw (read_write, 7 x T per-edge scalars: alpha, |u|, x_t . rho, s [copied from the forward],
//     g_o . rho, g_alpha, g_s [written by pass A]),
//   8 out (write): part (n x d) for pass_a, g_x (n x d) for pass_b, g_rel (R x d) for pass_c.
// Threads: pass_a: one workgroup of 64 per head (linear workgroup index), invocation l owns columns
//   l, l + 64, ...; per edge a tree reduction (64 x vec4 in workgroup memory) of g_o.u and g_o.x_t;
//   invocation 0 writes the edge's scalars, every invocation keeps the same running sum of alpha g_alpha.
//   pass_b / pass_c: one invocation per output element (256 per workgroup, linear index), each walking its
//   tail's edges / relation's entries in order.
// Cost per edge (q mixing entries): pass A about (4q + 6) d FLOPs and 4 (2q + 2) d bytes; pass B
//   (2q + 4) d FLOPs, 4 (q + 1) d bytes; pass C per entry (2q + 14) d FLOPs, 4 (q + 3) d bytes.

struct Params {
    n: u32,
    d: u32,
    t: u32,
    r: u32,
    head_offsets: u32,
    edge_head: u32,
    edge_tail: u32,
    mix_offsets: u32,
    mix_rel: u32,
    tail_offsets: u32,
    tail_edges: u32,
    rel_offsets: u32,
    rel_edges: u32,
    rel_val: u32,
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 64u;
const FLAT: u32 = 256u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> rel: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> a: array<f32>;
@group(0) @binding(6) var<storage, read> g_o: array<f32>;
@group(0) @binding(7) var<storage, read_write> bw: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<vec4<f32>, 64>;
var<workgroup> bounds: vec2<u32>;

fn mix_u(e: u32, col: u32) -> f32 {
    let j0 = index[p.mix_offsets + e];
    let j1 = index[p.mix_offsets + e + 1u];
    var u = 0.0;
    for (var j = j0; j < j1; j++) {
        u += weights[j] * rel[index[p.mix_rel + j] * p.d + col];
    }
    return u;
}

fn reduce(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn pass_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let h = wid.x + wid.y * nwg.x;
    if h >= p.n { return; }
    let lid = lid3.x;
    if lid == 0u {
        bounds = vec2<u32>(index[p.head_offsets + h], index[p.head_offsets + h + 1u]);
    }
    let b = workgroupUniformLoad(&bounds);
    let t = p.t;
    let d = p.d;

    var sum = 0.0; // sum_e alpha_e g_alpha_e, identical in every invocation
    for (var e = b.x; e < b.y; e++) {
        let tl = index[p.edge_tail + e];
        var part = vec4<f32>(0.0);
        for (var col = lid; col < d; col += WG) {
            let u = mix_u(e, col);
            let go = g_o[h * d + col];
            part += vec4<f32>(go * u, go * x[tl * d + col], 0.0, 0.0);
        }
        let tot = reduce(part, lid);
        let gr = tot.x / max(bw[t + e], EPS);
        let ga = tot.y - 2.0 * bw[2u * t + e] * gr;
        sum += bw[e] * ga;
        if lid == 0u {
            bw[4u * t + e] = gr;
            bw[5u * t + e] = ga;
        }
    }
    storageBarrier();

    for (var e = b.x + lid; e < b.y; e += WG) {
        bw[6u * t + e] = bw[e] * (bw[5u * t + e] - sum);
    }
    for (var col = lid; col < d; col += WG) {
        var acc = 0.0;
        for (var e = b.x; e < b.y; e++) {
            let gs = bw[e] * (bw[5u * t + e] - sum);
            acc += gs * (mix_u(e, col) / max(bw[t + e], EPS));
        }
        out[h * d + col] = acc;
    }
}

@compute @workgroup_size(256)
fn pass_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * FLAT + lid3.x;
    let d = p.d;
    if i >= p.n * d { return; }
    let tl = i / d;
    let col = i - tl * d;
    let t = p.t;
    let k0 = index[p.tail_offsets + tl];
    let k1 = index[p.tail_offsets + tl + 1u];
    var acc = 0.0;
    for (var k = k0; k < k1; k++) {
        let e = index[p.tail_edges + k];
        let h = index[p.edge_head + e];
        let rho = mix_u(e, col) / max(bw[t + e], EPS);
        acc += bw[e] * (g_o[h * d + col] - 2.0 * bw[4u * t + e] * rho);
    }
    out[i] = acc;
}

@compute @workgroup_size(256)
fn pass_c(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * FLAT + lid3.x;
    let d = p.d;
    if i >= p.r * d { return; }
    let r = i / d;
    let col = i - r * d;
    let t = p.t;
    let k0 = index[p.rel_offsets + r];
    let k1 = index[p.rel_offsets + r + 1u];
    var acc = 0.0;
    for (var k = k0; k < k1; k++) {
        let e = index[p.rel_edges + k];
        let w = weights[p.rel_val + k];
        let alpha = bw[e];
        let nrm = bw[t + e];
        let xr = bw[2u * t + e];
        let s = bw[3u * t + e];
        let gr = bw[4u * t + e];
        let gs = bw[6u * t + e];
        let nc = max(nrm, EPS);
        let rho = mix_u(e, col) / nc;
        let go = g_o[index[p.edge_head + e] * d + col];
        let xt = x[index[p.edge_tail + e] * d + col];
        let g_rho = -2.0 * alpha * (xr * go + gr * xt) + gs * a[col];
        var c = 0.0;
        if nrm >= EPS {
            c = -4.0 * alpha * xr * gr + gs * s;
        }
        acc += w * ((g_rho - c * rho) / nc);
    }
    out[i] = acc;
}
