// Elementwise kernels: activations, their backward, axpby and the Hadamard product.
//
// Bindings (entry `unary`):          0 params, 1 x (read), 2 y (write)
//          (entry `unary_backward`): 0 params, 1 x (read), 2 y = f(x) (read), 3 g = dL/dy (read), 4 gx (write)
//          (entry `binary`):         0 params, 1 a (read), 2 b (read), 3 out (write)
// Specialisation: OP picks the function (constant-folded by the compiler, one pipeline per OP).
//   unary OP: 0 tanh, 1 relu, 2 leaky relu (slope = alpha), 3 sigmoid, 4 softplus, 5 affine alpha*x + beta,
//             6 exp (argument clamped to <= 80), 7 elu (x > 0 ? x : e^x - 1), 8 log (argument clamped to >= 1e-30)
//   binary OP: 0 axpby alpha*a + beta*b, 1 a*b, 2 a[0]*b (scale by a 1-element tensor, e.g. a loss seed)
// Threads: one invocation per element; 256 per workgroup; workgroups spread over x and y (linear index
//   wid.x + wid.y * nwg.x) so n may exceed 65,535 * 256.
// Cost per element: unary 1 transcendental (tanh/sigmoid/softplus/exp/elu/log) or 1-2 FLOPs, 8 bytes moved;
//   backward 2-4 FLOPs, 16 bytes; binary 2-3 FLOPs, 12 bytes. Memory-bound everywhere.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

override OP: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// tanh(x) for |x| > 15 rounds to +-1 in f32; clamping avoids inf/inf in implementations that use exp.
fn safe_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// log(1 + e^x) without overflow: max(x, 0) + log(1 + e^-|x|).
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

fn forward(x: f32) -> f32 {
    switch OP {
        case 0u: { return safe_tanh(x); }
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(p.alpha * x, x, x > 0.0); }
        case 3u: { return sigmoid(x); }
        case 4u: { return softplus(x); }
        case 6u: { return exp(min(x, 80.0)); }
        case 7u: { return select(exp(min(x, 0.0)) - 1.0, x, x > 0.0); }
        case 8u: { return log(max(x, 1e-30)); }
        default: { return p.alpha * x + p.beta; }
    }
}

// dy/dx, from x or from the saved output y, whichever is cheaper and stable.
fn derivative(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return 1.0 - y * y; }
        case 1u: { return select(0.0, 1.0, x > 0.0); }
        case 2u: { return select(p.alpha, 1.0, x > 0.0); }
        case 3u: { return y * (1.0 - y); }
        case 4u: { return sigmoid(x); }
        case 6u: { return y; }
        case 7u: { return select(y + 1.0, 1.0, x > 0.0); }
        case 8u: { return select(0.0, 1.0 / x, x > 1e-30); }
        default: { return p.alpha; }
    }
}

@group(0) @binding(1) var<storage, read> x_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> y_out: array<f32>;

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if i >= p.n { return; }
    y_out[i] = forward(x_in[i]);
}

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> by: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> bgx: array<f32>;

@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if i >= p.n { return; }
    bgx[i] = bg[i] * derivative(bx[i], by[i]);
}

@group(0) @binding(1) var<storage, read> ea: array<f32>;
@group(0) @binding(2) var<storage, read> eb: array<f32>;
@group(0) @binding(3) var<storage, read_write> eout: array<f32>;

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_index(wid, nwg, lid);
    if i >= p.n { return; }
    switch OP {
        case 0u: { eout[i] = p.alpha * ea[i] + p.beta * eb[i]; }
        case 1u: { eout[i] = ea[i] * eb[i]; }
        default: { eout[i] = ea[0] * eb[i]; }
    }
}
