// One AdamW step with PyTorch semantics (torch.optim.AdamW, amsgrad off; mmea-spec §7 op 26), in place:
//   g      ← g · c,  c = min(1, max_norm / (sqrt(sq[0]) + 1e-6)) when CLIP (global grad-norm clipping as
//            torch.nn.utils.clip_grad_norm_; sq[0] = Σ over all gradients of g², computed beforehand)
//   θ      ← θ · decay                              decay = 1 − lr·wd
//   m      ← β1 m + (1 − β1) g
//   v      ← β2 v + (1 − β2) g²
//   θ      ← θ − step_size · m / (sqrt(v) / bc2_sqrt + eps)
//            step_size = lr / (1 − β1^t), bc2_sqrt = sqrt(1 − β2^t): computed on the host in f64.
//
// Bindings (entry `adamw`): 0 params, 1 θ (read-write, in place), 2 g (read), 3 m (read-write),
//   4 v (read-write), 5 sq (read, 1 element; any buffer when CLIP is off).
// Specialisation: CLIP (bool) turns the clipping factor on.
// Threads: one invocation per parameter element, 256 per workgroup, linear index
//   (wid.x + wid.y * nwg.x) * 256 + lid.x (2-D grid for large tensors).
// Cost per element: ~12 FLOPs + 1 sqrt; 28 bytes moved (θ, m, v read and written, g read).

struct Params {
    n: u32,
    decay: f32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    max_norm: f32,
    _p0: u32,
    _p1: u32,
}

override CLIP: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;
@group(0) @binding(5) var<storage, read> sq: array<f32>;

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if i >= p.n { return; }
    var g = grad[i];
    if CLIP {
        g = g * min(1.0, p.max_norm / (sqrt(sq[0]) + 1e-6));
    }
    let th = theta[i] * p.decay;
    let m = p.beta1 * m1[i] + p.one_minus_beta1 * g;
    let v = p.beta2 * m2[i] + p.one_minus_beta2 * (g * g);
    m1[i] = m;
    m2[i] = v;
    theta[i] = th - p.step_size * (m / (sqrt(v) / p.bc2_sqrt + p.eps));
}
