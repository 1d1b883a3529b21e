// Strided block copy and block fill between row-major matrices: the kernels behind column concat, column
// slice, the slice backward (scatter into zeros) and prepend-a-ones-column (mmea-spec §7 op 27).
//   copy_cols: dst[r * dst_ld + dst_off + c] = src[r * src_ld + src_off + c]   for r < rows, c < cols
//   fill_cols: dst[r * dst_ld + dst_off + c] = value                           for r < rows, c < cols
// (ld = row length as stored, off = first column of the block.)
//
// Bindings (entry `copy_cols`): 0 params, 1 src (read), 2 dst (write)
//          (entry `fill_cols`): 0 params, 1 dst (write)
// Threads: one invocation per block element (total = rows * cols), 256 per workgroup, linear index
//   (wid.x + wid.y * nwg.x) * 256 + lid.x (2-D grid for large blocks); r = index / cols, c = index % cols,
//   so consecutive invocations touch consecutive columns of a row (coalesced within a row).
// Cost: no FLOPs; copy moves 8 bytes per element, fill 4.

struct Params {
    total: u32, // rows * cols
    cols: u32,
    src_ld: u32,
    src_off: u32,
    dst_ld: u32,
    dst_off: u32,
    value: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn copy_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.total { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    dst[r * p.dst_ld + p.dst_off + c] = src[r * p.src_ld + p.src_off + c];
}

@group(0) @binding(1) var<storage, read_write> fdst: array<f32>;

@compute @workgroup_size(256)
fn fill_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.total { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    fdst[r * p.dst_ld + p.dst_off + c] = p.value;
}
