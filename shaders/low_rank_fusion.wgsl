// Low-rank multimodal fusion (LMF; mmea-spec §4.5 step 3, §7 op 14): the combine step and its backward.
// The per-modality factor products F_m = z_m W_m come from the matmul kernel, stacked as one tensor
//   F [M, n, R*d],  F[m, i, r*d + k] = f_{m,r}(i)_k,   M = modalities (1..4), R = rank, d = output width,
// so that   o[i, k] = Σ_r λ_r Π_m F[m, i, r*d + k] + β_k.
//
// Bindings per entry point (0 is the Params uniform).
// Entry `lmf_forward`:        0 params, 1 F (read), 2 λ [R] (read), 3 β [d] (read), 4 o [n, d] (write)
//   Threads: one invocation per output element (i, k); 256 per workgroup, workgroups spread over x and y
//   (linear index wid.x + wid.y * nwg.x). Each walks r = 0..R and the M factors of that element.
//   Cost: n*d*R*M FLOPs; reads 4*(M*n*R*d) bytes of F (each once), writes 4*n*d bytes.
// Entry `lmf_backward_f`:     0 params, 1 F (read), 2 λ (read), 3 g_o [n, d] (read), 4 g_F [M, n, R*d] (write)
//   g_F[m, i, r*d + k] = λ_r g_o[i, k] Π_{m' != m} F[m', i, r*d + k]   (products of the others: no division,
//   so a zero factor is handled exactly).
//   Threads: one invocation per (i, r*d + k); it loads the M factors once and writes the M gradients.
//   Cost: n*R*d*(M*M + 1) FLOPs (M <= 4); reads 4*(M*n*R*d + n*R*d) bytes, writes 4*M*n*R*d bytes.
// Entry `lmf_backward_lambda`: 0 params, 1 F (read), 2 g_o (read), 3 partial [nblocks, R] (write)
//   partial[b, r] = Σ_{i in row block b} Σ_k g_o[i, k] Π_m F[m, i, r*d + k]; the launcher finishes
//   g_λ = Σ_b partial[b, :] with the deterministic column-sum kernel (no atomics anywhere).
//   Threads: one workgroup of 256 per (row block, r): block = wid.x + wid.y * nwg.x, r = wid.z. Invocation t
//   walks the block's elements t, t + 256, ... (coalesced along k), then a fixed-order tree reduction in
//   workgroup memory (1 KiB).
//   Cost: n*R*d*(M + 1) FLOPs; reads 4*(M*n*R*d + R*n*d) bytes, writes 4*nblocks*R bytes.

struct Params {
    n: u32,
    d: u32,
    rank: u32,
    modalities: u32,
    block_rows: u32, // rows per workgroup in lmf_backward_lambda
    nblocks: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// ---- forward ----------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> fw_f: array<f32>;
@group(0) @binding(2) var<storage, read> fw_lambda: array<f32>;
@group(0) @binding(3) var<storage, read> fw_beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> fw_o: array<f32>;

@compute @workgroup_size(256)
fn lmf_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = linear_index(wid, nwg, lid);
    if idx >= p.n * p.d { return; }
    let i = idx / p.d;
    let k = idx % p.d;
    let rd = p.rank * p.d;
    let stride = p.n * rd;
    var acc = 0.0;
    for (var r = 0u; r < p.rank; r++) {
        let e = i * rd + r * p.d + k;
        var prod = fw_f[e];
        for (var m = 1u; m < p.modalities; m++) {
            prod *= fw_f[m * stride + e];
        }
        acc += fw_lambda[r] * prod;
    }
    fw_o[idx] = acc + fw_beta[k];
}

// ---- backward: factor gradients ---------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> bf_f: array<f32>;
@group(0) @binding(2) var<storage, read> bf_lambda: array<f32>;
@group(0) @binding(3) var<storage, read> bf_go: array<f32>;
@group(0) @binding(4) var<storage, read_write> bf_gf: array<f32>;

@compute @workgroup_size(256)
fn lmf_backward_f(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let rd = p.rank * p.d;
    let stride = p.n * rd;
    let idx = linear_index(wid, nwg, lid); // = i * rd + r * d + k
    if idx >= stride { return; }
    let i = idx / rd;
    let c = idx % rd;
    let r = c / p.d;
    let k = c % p.d;
    var v: array<f32, 4>;
    for (var m = 0u; m < p.modalities; m++) {
        v[m] = bf_f[m * stride + idx];
    }
    let g = bf_lambda[r] * bf_go[i * p.d + k];
    for (var m = 0u; m < p.modalities; m++) {
        var prod = g;
        for (var m2 = 0u; m2 < p.modalities; m2++) {
            if m2 != m { prod *= v[m2]; }
        }
        bf_gf[m * stride + idx] = prod;
    }
}

// ---- backward: rank-weight gradient, per-row-block partial sums ------------------------------------

@group(0) @binding(1) var<storage, read> bl_f: array<f32>;
@group(0) @binding(2) var<storage, read> bl_go: array<f32>;
@group(0) @binding(3) var<storage, read_write> bl_partial: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn lmf_backward_lambda(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    // block and r are uniform across the workgroup, so the barriers below are reached by all invocations.
    let block = wid.x + wid.y * nwg.x;
    let r = wid.z;
    let rd = p.rank * p.d;
    let stride = p.n * rd;
    var acc = 0.0;
    if block < p.nblocks {
        let row0 = block * p.block_rows;
        let row1 = min(row0 + p.block_rows, p.n);
        let count = (row1 - row0) * p.d;
        for (var e = lid.x; e < count; e += 256u) {
            let i = row0 + e / p.d;
            let k = e % p.d;
            let fe = i * rd + r * p.d + k;
            var prod = bl_go[i * p.d + k];
            for (var m = 0u; m < p.modalities; m++) {
                prod *= bl_f[m * stride + fe];
            }
            acc += prod;
        }
    }
    red[lid.x] = acc;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if lid.x < h {
            red[lid.x] += red[lid.x + h];
        }
        workgroupBarrier();
    }
    if lid.x == 0u && block < p.nblocks {
        bl_partial[block * p.rank + r] = red[0];
    }
}
