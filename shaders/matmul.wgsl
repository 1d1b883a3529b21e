// Dense (batched) matrix product with optional transposes and bias:
//   C[b] = alpha * op(A[b]) op(B[b]) (+ bias),  op(A): m x k, op(B): k x n, C: m x n, all row-major.
//
// Bindings: 0 params, 1 A (read), 2 B (read), 3 bias[n] (read; bound but unused unless BIAS),
//           4 C (write).
// Specialisation: TA (A is stored k x m), TB (B is stored n x k), BIAS.
// Threads: a 16x16 workgroup computes a 64x64 tile of C; thread (x, y) owns the 4x4 outputs at rows
//   row0 + y + 16i and columns col0 + x + 16j (interleaved so that global writes coalesce). K is walked in
//   steps of 16 through two workgroup tiles (A: 64x16, B: 16x64; 8 KiB). workgroup_id.z is the batch.
//   Grid: (ceil(n/64), ceil(m/64), batch), all <= 65,535 (checked by the launcher).
// Cost: 2*m*n*k FLOPs per batch; global traffic about 4*(m*k*ceil(n/64) + k*n*ceil(m/64) + m*n) bytes.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,      // row length of A as stored
    ldb: u32,      // row length of B as stored
    stride_a: u32, // elements between batches (0 = shared)
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override TA: bool = false;
override TB: bool = false;
override BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<f32, 1024>; // [64 rows][16 k]
var<workgroup> tile_b: array<f32, 1024>; // [16 k][64 cols]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let tid = lid.y * 16u + lid.x;
    let abase = wid.z * p.stride_a;
    let bbase = wid.z * p.stride_b;
    let cbase = wid.z * p.stride_c;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var q = 0u; q < 4u; q++) {
            let idx = tid + q * 256u;
            // A tile element (r, kk)
            let r = idx / 16u;
            let kk = idx % 16u;
            let gr = row0 + r;
            let gk = k0 + kk;
            var va = 0.0;
            if gr < p.m && gk < p.k {
                if TA { va = a[abase + gk * p.lda + gr]; } else { va = a[abase + gr * p.lda + gk]; }
            }
            tile_a[idx] = va;
            // B tile element (kb, cc)
            let kb = idx / 64u;
            let cc = idx % 64u;
            let gkb = k0 + kb;
            let gc = col0 + cc;
            var vb = 0.0;
            if gkb < p.k && gc < p.n {
                if TB { vb = b[bbase + gc * p.ldb + gkb]; } else { vb = b[bbase + gkb * p.ldb + gc]; }
            }
            tile_b[idx] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) { av[i] = tile_a[(lid.y + 16u * i) * 16u + kk]; }
            for (var j = 0u; j < 4u; j++) { bv[j] = tile_b[kk * 64u + lid.x + 16u * j]; }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        if r >= p.m { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if col >= p.n { continue; }
            var v = p.alpha * acc[i * 4u + j];
            if BIAS { v += bias[col]; }
            c[cbase + r * p.n + col] = v;
        }
    }
}
