// Row top-k for any k (1 <= k <= cols) by selection, for sparse decoding over many candidates (the
// training-free aligner keeps k = 500 per row; topk.wgsl's sorted lists stop at k = 16). Evaluation only.
//   order: as topk.wgsl, (v, i) beats (w, j) iff v > w, or v == w and i < j, so the kept set is unique and
//   does not depend on how the work is split. Scores must not be NaN; -0 and +0 are equal.
//   output: the k kept entries of each row in COLUMN order (not sorted by score): vals[r, :] and idx[r, :].
// Method, per row: key(v) is the order-preserving u32 of v's bits. A 32-step bisection on the key finds the
//   k-th largest key t (the largest t with #{key >= t} >= k). Every entry with key > t is kept, and of the
//   entries with key == t the first k - #{key > t} in column order. A workgroup prefix sum of the per-lane
//   kept counts gives each lane its write offset; lanes own contiguous column chunks.
// Each launch sees ONE row block [rows x cols] whose first row is global row row_off.
//
// Entry point, bindings (0 is the Params uniform), threads, cost:
//   row_select   1 s (read, [rows x cols]), 2 vals (write, [n x k]), 3 idx (write, [n x k] u32).
//                One workgroup of 256 per row (linear workgroup index over x and y). In the bisection lane l
//                reads columns l, l+256, ... (coalesced); in the compaction its chunk [l*c, (l+1)*c),
//                c = ceil(cols / 256). Per row: 35 passes over the row (35*cols compares, 140*cols bytes
//                read, mostly from cache), 8k bytes written; 1 KiB of workgroup memory.

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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

var<workgroup> red: array<u32, 256>;

fn key(v: f32) -> u32 {
    // -0 and +0 are equal scores: one key.
    let b = bitcast<u32>(select(v, 0.0, v == 0.0));
    if (b & 0x80000000u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

// The sum of x over the workgroup, returned to every lane.
fn wg_sum(lane: u32, x: u32) -> u32 {
    red[lane] = x;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if lane < off {
            red[lane] += red[lane + off];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// The exclusive prefix sum of x over the lanes (Hillis-Steele).
fn wg_scan(lane: u32, x: u32) -> u32 {
    red[lane] = x;
    workgroupBarrier();
    for (var off = 1u; off < 256u; off <<= 1u) {
        var add = 0u;
        if lane >= off {
            add = red[lane - off];
        }
        workgroupBarrier();
        red[lane] += add;
        workgroupBarrier();
    }
    let incl = red[lane];
    workgroupBarrier();
    return incl - x;
}

@compute @workgroup_size(256)
fn row_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows {
        return;
    }
    let lane = lid.x;
    let base = row * p.cols;
    // Bisection: t = the largest key with at least k entries >= it.
    var t = 0u;
    for (var bit = 0u; bit < 32u; bit++) {
        let cand = t | (0x80000000u >> bit);
        var c = 0u;
        for (var j = lane; j < p.cols; j += 256u) {
            if key(s[base + j]) >= cand {
                c += 1u;
            }
        }
        if wg_sum(lane, c) >= p.k {
            t = cand;
        }
    }
    // Per-lane counts over the lane's chunk.
    let c0 = min(lane * p.chunk, p.cols);
    let c1 = min(c0 + p.chunk, p.cols);
    var gt = 0u;
    var eq = 0u;
    for (var j = c0; j < c1; j++) {
        let kv = key(s[base + j]);
        if kv > t {
            gt += 1u;
        } else if kv == t {
            eq += 1u;
        }
    }
    let need_eq = p.k - wg_sum(lane, gt);
    let eq_before = wg_scan(lane, eq);
    var take_eq = 0u;
    if need_eq > eq_before {
        take_eq = min(eq, need_eq - eq_before);
    }
    var pos = wg_scan(lane, gt + take_eq);
    let out = (p.row_off + row) * p.k;
    var eq_seen = 0u;
    for (var j = c0; j < c1; j++) {
        let v = s[base + j];
        let kv = key(v);
        var keep = kv > t;
        if kv == t {
            keep = eq_seen < take_eq;
            eq_seen += 1u;
        }
        if keep {
            vals[out + pos] = v;
            idx[out + pos] = j;
            pos += 1u;
        }
    }
}
