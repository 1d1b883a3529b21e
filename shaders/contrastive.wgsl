// Cross-entropy rows of the contrastive losses (mmea-spec §7 ops 17 and 18): InfoNCE (LoginMEA) and MCLEA's
// ICL. The launcher computes one row block of logits S [rows, cols] with the matmul kernel (cols = B for
// InfoNCE, 2B for ICL: the cross block and the intra block side by side); this kernel turns each row into
// its loss and its gradient row, in place.
//
// For global row g = row0 + i:  gold column = gold_off + g;  masked columns = mask_off + g when bit 0 of
// has_mask is set (the intra-KG diagonal, i.e. the -1e9 I of the reference, which contributes exactly 0 here)
// and mask2_off + g when bit 1 is set (the normalised hard-sample loss masks both the gold and the row's own
// entity: its lse runs over the negatives only).
//   lse_i      = max_j S_ij + log Σ_{j unmasked} exp(S_ij − max_j S_ij)       (stable: never exp of a positive)
//   loss[i]    = weight · (lse_i − S_i,gold)
//   S_ij  <-  G_ij = weight · (exp(S_ij − lse_i) − [j = gold]),   G_i,mask = 0
// weight = 1/B for InfoNCE, α/B and (1−α)/B for the two ICL directions; the launcher sums loss[] with the
// deterministic reduction and multiplies G by the column matrices with the matmul kernel.
//
// Bindings (entry `ce_rows`): 0 params, 1 S (read_write: logits in, gradient rows out), 2 loss [rows] (write)
// Threads: one workgroup of 256 per row (row = wid.x + wid.y * nwg.x, uniform across the workgroup);
//   invocation t handles columns t, t + 256, ... (coalesced). Row max and the sum of exponentials use
//   fixed-order tree reductions in workgroup memory (1 KiB), so results are deterministic.
// Cost per row: about 5*cols FLOPs and 2*cols exponentials; reads the row 3 times and writes it once
//   (16*cols bytes).

struct Params {
    rows: u32,
    cols: u32,
    row0: u32,
    gold_off: u32,
    mask_off: u32,
    has_mask: u32,
    weight: f32,
    mask2_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows { return; } // uniform: the whole workgroup leaves together
    let base = row * p.cols;
    let g_row = p.row0 + row;
    let gold = p.gold_off + g_row;
    let mask = select(0xffffffffu, p.mask_off + g_row, (p.has_mask & 1u) != 0u);
    let mask2 = select(0xffffffffu, p.mask2_off + g_row, (p.has_mask & 2u) != 0u);
    // Read before any invocation overwrites the row (writes come after the barriers below).
    let s_gold = s[base + gold];

    var mx = -3.0e38;
    for (var j = lid.x; j < p.cols; j += 256u) {
        if j != mask && j != mask2 { mx = max(mx, s[base + j]); }
    }
    red[lid.x] = mx;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if lid.x < h { red[lid.x] = max(red[lid.x], red[lid.x + h]); }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier(); // everyone has read red[0] before it is reused

    var sum = 0.0;
    for (var j = lid.x; j < p.cols; j += 256u) {
        if j != mask && j != mask2 { sum += exp(s[base + j] - row_max); }
    }
    red[lid.x] = sum;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if lid.x < h { red[lid.x] += red[lid.x + h]; }
        workgroupBarrier();
    }
    let lse = row_max + log(red[0]);

    for (var j = lid.x; j < p.cols; j += 256u) {
        var g = 0.0;
        if j != mask && j != mask2 { g = exp(min(s[base + j] - lse, 0.0)); }
        if j == gold { g -= 1.0; }
        s[base + j] = p.weight * g;
    }
    if lid.x == 0u {
        loss[row] = p.weight * (lse - s_gold);
    }
}
