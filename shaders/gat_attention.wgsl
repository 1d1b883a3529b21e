// Feature-attention graph layer (GAT, the pyGAT/MCLEA form; see core/src/ops/gat.rs for the derivation).
// Per head entity h, over its out-edges e = (h -> t) (edges sorted by head, then tail):
//   z_e = p_h + q_t                 (p = X a_1, q = X a_2: per-node scalars computed before, by matmul)
//   s_e = sign * LeakyReLU_slope(z_e)         (sign -1 reproduces pyGAT's exp(-LeakyReLU(.)))
//   alpha = softmax of s over h's edges       y_h = sum_e alpha_e x_t   (no out-edges: y_h = 0)
// Backward (entry points pass_a, pass_b, pass_q), with g_y = dL/dy:
//   g_alpha_e = g_y[h] . x_t        g_s_e = alpha_e (g_alpha_e - sum_{e' in out(h)} alpha_e' g_alpha_e')
//   g_z_e = sign * (z_e > 0 ? 1 : slope) * g_s_e
//   g_p[h] = sum_{e in out(h)} g_z_e        g_q[t] = sum_{e into t} g_z_e
//   g_x[t] = sum_{e into t} alpha_e g_y[head(e)]
// All sums run over sorted segments in a fixed order (no atomics): deterministic. Nothing T x d is stored.
//
// This file is the forward; the backward entry points are in gat_attention_backward.wgsl.
//
// Bindings: 0 params, 1 index (read, packed u32 graph arrays; offsets in params), 2 x (read, n x d),
//   3 pv (read, n), 4 qv (read, n), 5 y (write, n x d), 6 alpha (write, T).
// Threads: one workgroup of 64 invocations per head (linear workgroup index
//   wid.x + wid.y * nwg.x, so n may exceed 65,535). Forward: every invocation runs the same sequential online
//   softmax over the head's edges (identical statistics, no reduction needed), writes alpha strided over the
//   edges, then owns columns l, l + 64, ... of y_h, summing over the edges in order.
// Cost per edge: about 2 d + 10 FLOPs (the logit and exp are redone per column block: d/64 + 1 exps per
//   edge and invocation); reads 4 d bytes of x_t and 8 bytes of p, q. Writes 4 d bytes per node and 4 bytes
//   per edge.

struct Params {
    n: u32,
    d: u32,
    t: u32,
    head_offsets: u32,
    edge_head: u32,
    edge_tail: u32,
    tail_offsets: u32,
    tail_edges: u32,
    slope: f32,
    sign: f32,
    _p0: u32,
    _p1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> pv: array<f32>;
@group(0) @binding(4) var<storage, read> qv: array<f32>;

fn logit(z: f32) -> f32 {
    return p.sign * select(p.slope * z, z, z > 0.0);
}

fn head_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> alpha: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>) {
    let h = head_of(wid, nwg);
    if h >= p.n { return; }
    let lid = lid3.x;
    let d = p.d;
    let e0 = index[p.head_offsets + h];
    let e1 = index[p.head_offsets + h + 1u];
    let ph = pv[h];

    // Online softmax statistics, the same sequential loop in every invocation.
    var m = 0.0;
    var z = 0.0;
    for (var e = e0; e < e1; e++) {
        let s = logit(ph + qv[index[p.edge_tail + e]]);
        if e == e0 {
            m = s;
            z = 1.0;
        } else {
            let m2 = max(m, s);
            z = z * exp(m - m2) + exp(s - m2);
            m = m2;
        }
    }
    for (var e = e0 + lid; e < e1; e += WG) {
        alpha[e] = exp(logit(ph + qv[index[p.edge_tail + e]]) - m) / z;
    }
    for (var col = lid; col < d; col += WG) {
        var acc = 0.0;
        for (var e = e0; e < e1; e++) {
            let tl = index[p.edge_tail + e];
            acc += exp(logit(ph + qv[tl]) - m) / z * x[tl * d + col];
        }
        y[h * d + col] = acc;
    }
}
