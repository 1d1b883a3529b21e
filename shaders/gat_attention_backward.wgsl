// Feature-attention graph layer (GAT), backward (see gat_attention.wgsl for the forward and
// core/src/ops/gat.rs for the derivation). With g_y = dL/dy, for every edge e = (h -> t), z_e = p_h + q_t:
//   g_alpha_e = g_y[h] . x_t        g_s_e = alpha_e (g_alpha_e - sum_{e' in out(h)} alpha_e' g_alpha_e')
//   g_z_e = sign * (z_e > 0 ? 1 : slope) * g_s_e
//   pass_a (per head h): g_p[h] = sum_{e in out(h)} g_z_e
//   pass_b (per tail t): g_x[t] = sum_{e into t} alpha_e g_y[head(e)]
//   pass_q (per tail t): g_q[t] = sum_{e into t} g_z_e
// All sums run over sorted segments in a fixed order (no atomics): deterministic. Nothing T x d is stored.
//
// Bindings (all three entry points): 0 params, 1 index (read, packed u32 graph arrays), 2 x (read, n x d),
//   3 pv (read, n), 4 qv (read, n), 5 g_y (read, n x d), 6 alpha (read, T, saved by the forward),
//   7 bw (read_write, 2 x T per-edge scalars: g_alpha, g_z; written by pass_a, read by pass_q),
//   8 out (write): g_p (n) for pass_a, g_x (n x d) for pass_b, g_q (n) for pass_q.
// Threads: pass_a: one workgroup of 64 invocations per head (linear workgroup index); invocations take the
//   head's edges strided, each summing its dot product g_y[h] . x_t over the columns in order; after a
//   storage barrier every invocation forms the same sum of alpha g_alpha in edge order, writes g_z strided,
//   and after a second barrier invocation 0 sums g_p[h] in edge order.
//   pass_b: one invocation per element of g_x (256 per workgroup, linear index) walking its tail's edges.
//   pass_q: one invocation per node (256 per workgroup) walking its tail's edges.
// Cost per edge: pass A 2 d + 8 FLOPs, 8 d bytes read (the g_y row from cache, the x_t row); pass B 2 d
//   FLOPs, 4 d bytes (g_y rows of the heads); pass Q 1 FLOP, 8 bytes. Writes 4 d bytes per node (g_x) and
//   8 bytes per edge.

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
const FLAT: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> pv: array<f32>;
@group(0) @binding(4) var<storage, read> qv: array<f32>;
@group(0) @binding(5) var<storage, read> g_y: array<f32>;
@group(0) @binding(6) var<storage, read> alpha: array<f32>;
@group(0) @binding(7) var<storage, read_write> bw: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn pass_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let h = wid.x + wid.y * nwg.x;
    if h >= p.n { return; }
    let lid = lid3.x;
    let d = p.d;
    let t = p.t;
    let e0 = index[p.head_offsets + h];
    let e1 = index[p.head_offsets + h + 1u];
    for (var e = e0 + lid; e < e1; e += WG) {
        let tl = index[p.edge_tail + e];
        var acc = 0.0;
        for (var col = 0u; col < d; col++) {
            acc += g_y[h * d + col] * x[tl * d + col];
        }
        bw[e] = acc;
    }
    storageBarrier();
    var sum = 0.0;
    for (var e = e0; e < e1; e++) {
        sum += alpha[e] * bw[e];
    }
    let ph = pv[h];
    for (var e = e0 + lid; e < e1; e += WG) {
        let z = ph + qv[index[p.edge_tail + e]];
        let gs = alpha[e] * (bw[e] - sum);
        bw[t + e] = p.sign * select(p.slope, 1.0, z > 0.0) * gs;
    }
    storageBarrier();
    if lid == 0u {
        var gp = 0.0;
        for (var e = e0; e < e1; e++) {
            gp += bw[t + e];
        }
        out[h] = gp;
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
    let k0 = index[p.tail_offsets + tl];
    let k1 = index[p.tail_offsets + tl + 1u];
    var acc = 0.0;
    for (var k = k0; k < k1; k++) {
        let e = index[p.tail_edges + k];
        acc += alpha[e] * g_y[index[p.edge_head + e] * d + col];
    }
    out[i] = acc;
}

@compute @workgroup_size(256)
fn pass_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid3: vec3<u32>) {
    let tl = (wid.x + wid.y * nwg.x) * FLAT + lid3.x;
    if tl >= p.n { return; }
    let k0 = index[p.tail_offsets + tl];
    let k1 = index[p.tail_offsets + tl + 1u];
    var acc = 0.0;
    for (var k = k0; k < k1; k++) {
        acc += bw[p.t + index[p.tail_edges + k]];
    }
    out[tl] = acc;
}
