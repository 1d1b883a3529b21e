// Fused relational-reflection graph attention, forward (Dual-AMN form as in LoginMEA; spec §4.5, §7 op 13).
// Per head entity h, over its out-edges e = (h -> t) (edges sorted by head):
//   u_e = sum_k m_ek Rel[r_k]          rho_e = u_e / max(|u_e|, 1e-12)
//   nt_e = x_t - 2 (x_t . rho_e) rho_e  (Householder reflection)        s_e = rho_e . a
//   alpha = softmax of s over h's edges  y_h = act(sum_e alpha_e nt_e)  (no edges: act(0) = 0)
// Nothing of size T x d is stored: rho_e is recomputed column by column from the mixing entries.
//
// Bindings: 0 params, 1 index (read, packed u32 graph arrays; offsets of each array in params),
//           2 weights (read, f32: mixing weights mix_val at 0, then rel_val), 3 rel (read, R x d),
//           4 x (read, n x d), 5 a (read, d), 6 y (write, n x d),
//           7 edge (write, 4 x T: alpha, |u_e|, x_t . rho_e, s_e per edge; saved for the backward).
// Specialisation: ACT 0 = tanh (clamped to +-15), 1 = identity.
// Threads: one workgroup of 64 invocations per head (linear workgroup index wid.x + wid.y * nwg.x, so n may
//   exceed 65,535); invocation l owns columns l, l + 64, ... (any d). Phase 1 walks the head's edges: each
//   invocation forms its columns of u_e and partial sums of u.u, x_t.u, u.a, which a tree reduction in
//   workgroup memory (64 x vec4, 1 KiB) combines; every invocation keeps the same running max and sum for an
//   online softmax. Invocation 0 writes the edge scalars. Phase 2 writes alpha (invocations strided over the
//   edges). Phase 3: each invocation, for each of its columns, sums alpha_e nt_e over the edges in order
//   (deterministic; the CPU twin uses the same order).
// Cost per edge with q mixing entries: about (2q + 8) d FLOPs (u twice, three dots, reflection), reads of
//   x_t, and q rows of Rel twice: about 4 (2 + 2q) d bytes; plus 4 d bytes written per head.

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

override ACT: u32 = 0u;
const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> rel: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> a: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> edge: array<f32>;

var<workgroup> red: array<vec4<f32>, 64>;
var<workgroup> bounds: vec2<u32>;

// Column `col` of u_e, summed over the edge's mixing entries in order.
fn mix_u(e: u32, col: u32) -> f32 {
    let j0 = index[p.mix_offsets + e];
    let j1 = index[p.mix_offsets + e + 1u];
    var u = 0.0;
    for (var j = j0; j < j1; j++) {
        u += weights[j] * rel[index[p.mix_rel + j] * p.d + col];
    }
    return u;
}

// Sum of v over the workgroup (tree in workgroup memory). Must be called in uniform control flow.
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

fn activate(v: f32) -> f32 {
    if ACT == 0u {
        return tanh(clamp(v, -15.0, 15.0));
    }
    return v;
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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

    // Phase 1: per-edge scalars and the online softmax statistics.
    var m = 0.0;
    var z = 0.0;
    for (var e = b.x; e < b.y; e++) {
        let tl = index[p.edge_tail + e];
        var part = vec4<f32>(0.0);
        for (var col = lid; col < d; col += WG) {
            let u = mix_u(e, col);
            part += vec4<f32>(u * u, x[tl * d + col] * u, u * a[col], 0.0);
        }
        let tot = reduce(part, lid);
        let nrm = sqrt(tot.x);
        let nc = max(nrm, EPS);
        let xr = tot.y / nc;
        let s = tot.z / nc;
        if e == b.x {
            m = s;
            z = 1.0;
        } else {
            let m2 = max(m, s);
            z = z * exp(m - m2) + exp(s - m2);
            m = m2;
        }
        if lid == 0u {
            edge[t + e] = nrm;
            edge[2u * t + e] = xr;
            edge[3u * t + e] = s;
        }
    }
    storageBarrier();

    // Phase 2: attention weights.
    for (var e = b.x + lid; e < b.y; e += WG) {
        edge[e] = exp(edge[3u * t + e] - m) / z;
    }
    storageBarrier();

    // Phase 3: y_h = act(sum_e alpha_e nt_e), column by column.
    for (var col = lid; col < d; col += WG) {
        var acc = 0.0;
        for (var e = b.x; e < b.y; e++) {
            let tl = index[p.edge_tail + e];
            let rho = mix_u(e, col) / max(edge[t + e], EPS);
            acc += edge[e] * (x[tl * d + col] - 2.0 * edge[2u * t + e] * rho);
        }
        y[h * d + col] = activate(acc);
    }
}
