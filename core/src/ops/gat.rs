//! The feature-attention graph layer (GAT), fused: the attention of pyGAT's sparse layer as MCLEA, EVA
//! and MEAformer use it (spec §4.2), and the "plain GAT" of LoginMEA's ablation. Unlike the reflection
//! layer ([`crate::ops::reflection`]), the logits come from the entities' features, not from relations.
//!
//! For a graph of `n` entities with `T` directed edges `e = (h → t)` (sorted by head, then tail), inputs
//! `x` `[n, d]` and two per-node scalars `p`, `q` `[n]` (normally `p = X a₁`, `q = X a₂`, computed before
//! with a matmul, so that `a₁ᵀ h_i + a₂ᵀ h_j = aᵀ[h_i ; h_j]` costs O(n d) and not O(T d)):
//!
//! ```text
//! z_e = p_h + q_t                 s_e = sign · LeakyReLU_slope(z_e)
//! α_e = softmax of s over the out-edges of h
//! y_h = Σ_{e: head(e) = h} α_e x_t                     (no out-edges ⇒ y_h = 0)
//! ```
//!
//! `sign = −1` reproduces pyGAT's sparse layer (`exp(−LeakyReLU(·))`, which MCLEA inherited), `+1` the GAT
//! paper. Backward, with `g_y = ∂L/∂y`:
//!
//! ```text
//! g_α_e = g_y[h]·x_t              g_s_e = α_e (g_α_e − Σ_{e' ∈ out(h)} α_e' g_α_e')
//! g_z_e = sign · (z_e > 0 ? 1 : slope) · g_s_e
//! g_p[h] = Σ_{e ∈ out(h)} g_z_e   g_q[t] = Σ_{e into t} g_z_e   g_x[t] = Σ_{e into t} α_e g_y[head(e)]
//! ```
//!
//! Kernels (`shaders/gat_attention.wgsl`, `shaders/gat_attention_backward.wgsl`): the forward is one
//! workgroup per head; the backward is pass A (per head: per-edge `g_α`, `g_z`, and `g_p`), pass B (per
//! tail, through the tail view: `g_x`) and pass Q (per tail: `g_q`). Only `α` (`T` floats) is saved; no
//! `T × d` tensor exists. Every sum runs over a sorted segment in a fixed order: deterministic, no atomics.
//! The CPU twin ([`cpu`]) follows the same order and is what [`Device::Cpu`] runs.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, GpuBuffer};
use crate::ops::reflection::{fits_u32, group_by};
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const FORWARD: crate::gpu::Shader = shader!("gat_attention");
const BACKWARD: crate::gpu::Shader = shader!("gat_attention_backward");

/// Invocations per workgroup of the per-head kernels (forward, backward pass A); must match the shaders.
pub const HEAD_WG: usize = 64;
/// Invocations per workgroup of the per-element kernels (backward passes B and Q).
const FLAT_WG: u64 = 256;

/// How the attention logit is formed from `z = p_h + q_t`: `sign · LeakyReLU_slope(z)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatLogit {
    /// Slope of LeakyReLU for `z ≤ 0` (0.2 in pyGAT/MCLEA).
    pub slope: f32,
    /// `+1` (GAT paper) or `−1` (pyGAT's sparse layer, MCLEA/EVA/MEAformer).
    pub sign: f32,
}

impl GatLogit {
    /// pyGAT's sparse layer as MCLEA uses it: `exp(−LeakyReLU₀.₂(·))`.
    pub const PYGAT: GatLogit = GatLogit { slope: 0.2, sign: -1.0 };
    /// The GAT paper: `exp(LeakyReLU₀.₂(·))`.
    pub const GAT: GatLogit = GatLogit { slope: 0.2, sign: 1.0 };

    pub fn apply(self, z: f32) -> f32 {
        self.sign * if z > 0.0 { z } else { self.slope * z }
    }
    /// `∂s/∂z`.
    pub fn derivative(self, z: f32) -> f32 {
        self.sign * if z > 0.0 { 1.0 } else { self.slope }
    }
}

/// Where each array of a [`GatGraph`] starts inside its packed `index` buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatGraphLayout {
    /// `[n + 1]`: out-edges of head `h` are `head_offsets[h]..head_offsets[h+1]`.
    pub head_offsets: usize,
    /// `[T]` head of each edge.
    pub edge_head: usize,
    /// `[T]` tail of each edge.
    pub edge_tail: usize,
    /// `[n + 1]`: edges into `t` are `tail_edges[tail_offsets[t]..tail_offsets[t+1]]`.
    pub tail_offsets: usize,
    /// `[T]` edge ids grouped by tail (ascending within a tail).
    pub tail_edges: usize,
}

/// A plain directed graph for [`gat_attention`], built on the host, held on a device (one packed u32
/// buffer: the head view and the tail view).
#[derive(Clone, Debug)]
pub struct GatGraph {
    pub index: Tensor,
    pub layout: GatGraphLayout,
    n: usize,
    num_edges: usize,
}

impl GatGraph {
    /// From directed `edges` `(head, tail)` in any order; they are sorted by (head, tail), stably, and
    /// duplicates stay separate edges. Ids must be `< n`.
    pub fn new(device: &Device, n: usize, edges: &[(u32, u32)]) -> Result<GatGraph> {
        const OP: &str = "GatGraph::new";
        let _prof = crate::profile::scope(OP);
        fits_u32(OP, "entities", n)?;
        fits_u32(OP, "edges", edges.len())?;
        if let Some((e, &(h, t))) = edges.iter().enumerate().find(|(_, &(h, t))| h as usize >= n || t as usize >= n) {
            return Err(Error::invalid(OP, format!("edge {e} = ({h} -> {t}) names an entity outside 0..{n}")));
        }
        let mut sorted = edges.to_vec();
        sorted.sort();
        let edge_head: Vec<u32> = sorted.iter().map(|e| e.0).collect();
        let edge_tail: Vec<u32> = sorted.iter().map(|e| e.1).collect();
        let (head_offsets, _) = group_by(&edge_head, n);
        let (tail_offsets, tail_edges) = group_by(&edge_tail, n);
        let mut index = Vec::with_capacity(2 * (n + 1) + 3 * edges.len());
        let mut place = |v: &[u32]| {
            let at = index.len();
            index.extend_from_slice(v);
            at
        };
        let layout = GatGraphLayout {
            head_offsets: place(&head_offsets),
            edge_head: place(&edge_head),
            edge_tail: place(&edge_tail),
            tail_offsets: place(&tail_offsets),
            tail_edges: place(&tail_edges),
        };
        fits_u32(OP, "packed index length", index.len())?;
        let len = index.len();
        Ok(GatGraph { index: Tensor::from_u32(device, index, &[len])?, layout, n, num_edges: edges.len() })
    }

    /// The undirected neighbourhood pattern with self loops, spec §1.6 (A) (MCLEA/EVA's `get_adjr`
    /// pattern): edges `i → j` for `j ∈ {i} ∪ nbr(i)`, from undirected `pairs` (duplicates and self pairs
    /// collapse).
    pub fn neighbourhood(device: &Device, n: usize, pairs: &[(u32, u32)]) -> Result<GatGraph> {
        let mut edges = Vec::new();
        for (i, s) in crate::ops::sparse::neighbour_sets("GatGraph::neighbourhood", n, pairs)?.iter().enumerate() {
            edges.extend(s.iter().map(|&j| (i as u32, j)));
        }
        GatGraph::new(device, n, &edges)
    }

    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of directed edges T.
    pub fn num_edges(&self) -> usize {
        self.num_edges
    }
    pub fn device(&self) -> Device {
        self.index.device()
    }

    /// The same graph on another device.
    pub async fn to_device(&self, device: &Device) -> Result<GatGraph> {
        Ok(GatGraph { index: self.index.to_device(device).await?, ..self.clone() })
    }

    fn cpu_view_of<'a>(&self, index: &'a [u32]) -> cpu::GraphView<'a> {
        cpu::GraphView { layout: self.layout, index, n: self.n, t: self.num_edges }
    }

    fn cpu_view(&self, op: &'static str) -> Result<cpu::GraphView<'_>> {
        Ok(self.cpu_view_of(self.index.cpu_u32(op)?))
    }

    fn params(&self, d: usize, logit: GatLogit) -> Params {
        let l = &self.layout;
        Params {
            n: self.n as u32,
            d: d as u32,
            t: self.num_edges as u32,
            head_offsets: l.head_offsets as u32,
            edge_head: l.edge_head as u32,
            edge_tail: l.edge_tail as u32,
            tail_offsets: l.tail_offsets as u32,
            tail_edges: l.tail_edges as u32,
            slope: logit.slope,
            sign: logit.sign,
            _p: [0; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
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
    _p: [u32; 2],
}

/// What the backward needs from the forward: the attention weights.
#[derive(Clone, Debug)]
pub struct GatSaved {
    /// `[T]` f32 `α_e`, in the graph's edge order (sorted by head, then tail).
    pub alpha: Tensor,
}

/// Validates the inputs; returns d.
fn check_inputs(op: &'static str, graph: &GatGraph, x: &Tensor, p: &Tensor, q: &Tensor, logit: GatLogit) -> Result<usize> {
    for t in [x, p, q] {
        t.expect_dtype(op, DType::F32)?;
    }
    let (n, d) = x.dims2(op)?;
    if n != graph.n || p.len() != n || q.len() != n {
        return Err(Error::shape(
            op,
            format!("expected x [{}, d], p and q with {} values for a graph of {} entities", graph.n, graph.n, graph.n),
            &[x.shape(), p.shape(), q.shape()],
        ));
    }
    if !logit.slope.is_finite() || !logit.sign.is_finite() {
        return Err(Error::invalid(op, format!("non-finite logit settings {logit:?}")));
    }
    fits_u32(op, "n * d", n * d)?;
    fits_u32(op, "2 * T", 2 * graph.num_edges)?;
    Ok(d)
}

/// The GAT layer (formulas in the module docs): `y [n, d]` and the attention weights for the backward.
pub fn gat_attention(graph: &GatGraph, x: &Tensor, p: &Tensor, q: &Tensor, logit: GatLogit) -> Result<(Tensor, GatSaved)> {
    const OP: &str = "gat_attention";
    let _prof = crate::profile::scope(OP);
    let d = check_inputs(OP, graph, x, p, q, logit)?;
    let (n, t) = (graph.n, graph.num_edges);
    match common_device(OP, &[&graph.index, x, p, q])? {
        Device::Cpu => {
            let (y, alpha) = cpu::forward(&graph.cpu_view(OP)?, x.cpu_f32(OP)?, p.cpu_f32(OP)?, q.cpu_f32(OP)?, d, logit);
            Ok((Tensor::from_f32(&Device::Cpu, y, &[n, d])?, GatSaved { alpha: Tensor::from_f32(&Device::Cpu, alpha, &[t])? }))
        }
        Device::Gpu(ctx) => {
            let y = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let alpha = Tensor::gpu_output(&ctx, &[t], DType::F32, OP)?;
            ctx.dispatch(
                OP,
                &FORWARD,
                "forward",
                &[],
                &graph.params(d, logit),
                &[
                    Arg::Read(graph.index.gpu_buf(OP)?),
                    Arg::Read(x.gpu_buf(OP)?),
                    Arg::Read(p.gpu_buf(OP)?),
                    Arg::Read(q.gpu_buf(OP)?),
                    Arg::Write(y.gpu_buf(OP)?),
                    Arg::Write(alpha.gpu_buf(OP)?),
                ],
                grid(n as u64),
            )?;
            Ok((y, GatSaved { alpha }))
        }
    }
}

/// Gradients `(g_x [n, d], g_p, g_q)` of [`gat_attention`] given `g_y` (formulas in the module docs);
/// `g_p` and `g_q` have the shapes of `p` and `q`. The inputs must be those of the forward.
pub fn gat_attention_backward(graph: &GatGraph, x: &Tensor, p: &Tensor, q: &Tensor, logit: GatLogit, saved: &GatSaved, g_y: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "gat_attention_backward";
    let _prof = crate::profile::scope(OP);
    let d = check_inputs(OP, graph, x, p, q, logit)?;
    let (n, t) = (graph.n, graph.num_edges);
    g_y.expect_dtype(OP, DType::F32)?;
    saved.alpha.expect_dtype(OP, DType::F32)?;
    if g_y.shape() != [n, d] || saved.alpha.len() != t {
        return Err(Error::shape(OP, format!("expected g_y [{n}, {d}] and saved alpha [{t}]"), &[g_y.shape(), saved.alpha.shape()]));
    }
    match common_device(OP, &[&graph.index, x, p, q, g_y, &saved.alpha])? {
        Device::Cpu => {
            let (g_x, g_p, g_q) = cpu::backward(&graph.cpu_view(OP)?, x.cpu_f32(OP)?, p.cpu_f32(OP)?, q.cpu_f32(OP)?, d, logit, saved.alpha.cpu_f32(OP)?, g_y.cpu_f32(OP)?);
            Ok((Tensor::from_f32(&Device::Cpu, g_x, &[n, d])?, Tensor::from_f32(&Device::Cpu, g_p, p.shape())?, Tensor::from_f32(&Device::Cpu, g_q, q.shape())?))
        }
        Device::Gpu(ctx) => {
            let bw = ctx.alloc(2 * t, "gat backward edge scalars")?;
            let g_x = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let g_p = Tensor::gpu_output(&ctx, p.shape(), DType::F32, OP)?;
            let g_q = Tensor::gpu_output(&ctx, q.shape(), DType::F32, OP)?;
            let prm = graph.params(d, logit);
            let ins = [graph.index.gpu_buf(OP)?, x.gpu_buf(OP)?, p.gpu_buf(OP)?, q.gpu_buf(OP)?, g_y.gpu_buf(OP)?, saved.alpha.gpu_buf(OP)?];
            ctx.dispatch(OP, &BACKWARD, "pass_a", &[], &prm, &backward_args(ins, &bw, g_p.gpu_buf(OP)?), grid(n as u64))?;
            ctx.dispatch(OP, &BACKWARD, "pass_b", &[], &prm, &backward_args(ins, &bw, g_x.gpu_buf(OP)?), grid(((n * d) as u64).div_ceil(FLAT_WG)))?;
            ctx.dispatch(OP, &BACKWARD, "pass_q", &[], &prm, &backward_args(ins, &bw, g_q.gpu_buf(OP)?), grid((n as u64).div_ceil(FLAT_WG)))?;
            Ok((g_x, g_p, g_q))
        }
    }
}

/// The bindings shared by the three backward passes.
fn backward_args<'a>(ins: [&'a GpuBuffer; 6], bw: &'a GpuBuffer, out: &'a GpuBuffer) -> [Arg<'a>; 8] {
    let [index, x, p, q, g_y, alpha] = ins;
    [Arg::Read(index), Arg::Read(x), Arg::Read(p), Arg::Read(q), Arg::Read(g_y), Arg::Read(alpha), Arg::Write(bw), Arg::Write(out)]
}

/// Tape wrapper.
pub mod ad {
    use super::{GatGraph, GatLogit};
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// [`super::gat_attention`] on the tape; gradients flow to `x`, `p` and `q`. Also returns the
    /// attention weights `α_e` `[T]` (graph edge order) when `want_alpha`.
    pub fn gat_attention(tape: &Tape, graph: &GatGraph, x: &Var, p: &Var, q: &Var, logit: GatLogit, want_alpha: bool) -> Result<(Var, Option<Tensor>)> {
        let (y, saved) = super::gat_attention(graph, &x.value, &p.value, &q.value, logit)?;
        let alpha = if want_alpha { Some(saved.alpha.clone()) } else { None };
        let (g, xv, pv, qv) = (graph.clone(), x.value.clone(), p.value.clone(), q.value.clone());
        let y = tape.record(y, &[x, p, q], move |g_y| {
            let (gx, gp, gq) = super::gat_attention_backward(&g, &xv, &pv, &qv, logit, &saved, g_y)?;
            Ok(vec![Some(gx), Some(gp), Some(gq)])
        });
        Ok((y, alpha))
    }
}

/// The CPU twin, on slices, and what [`Device::Cpu`] runs: the shaders' arithmetic in the same order
/// (sequential online softmax per head; dot products over the columns in order; segment sums in edge
/// order).
pub mod cpu {
    use std::ops::Range;

    use super::{GatGraphLayout, GatLogit};

    /// Borrowed view of a graph's packed arrays.
    pub struct GraphView<'a> {
        pub layout: GatGraphLayout,
        pub index: &'a [u32],
        pub n: usize,
        pub t: usize,
    }

    impl GraphView<'_> {
        fn at(&self, section: usize, i: usize) -> usize {
            self.index[section + i] as usize
        }
        pub fn out_edges(&self, h: usize) -> Range<usize> {
            self.at(self.layout.head_offsets, h)..self.at(self.layout.head_offsets, h + 1)
        }
        pub fn head(&self, e: usize) -> usize {
            self.at(self.layout.edge_head, e)
        }
        pub fn tail(&self, e: usize) -> usize {
            self.at(self.layout.edge_tail, e)
        }
        /// Edges into `t`, ascending.
        pub fn in_edges(&self, t: usize) -> impl Iterator<Item = usize> + '_ {
            let l = self.layout;
            (self.at(l.tail_offsets, t)..self.at(l.tail_offsets, t + 1)).map(move |k| self.at(l.tail_edges, k))
        }
    }

    /// Forward: `(y [n, d], α [T])`.
    pub fn forward(g: &GraphView, x: &[f32], p: &[f32], q: &[f32], d: usize, logit: GatLogit) -> (Vec<f32>, Vec<f32>) {
        let heads: Vec<(Vec<f32>, Vec<f32>)> = crate::cpu::par_map(g.n, |h| {
            let edges = g.out_edges(h);
            let (mut m, mut z) = (0.0f32, 0.0f32);
            for e in edges.clone() {
                let s = logit.apply(p[h] + q[g.tail(e)]);
                if e == edges.start {
                    (m, z) = (s, 1.0);
                } else {
                    let m2 = m.max(s);
                    z = z * (m - m2).exp() + (s - m2).exp();
                    m = m2;
                }
            }
            let alpha: Vec<f32> = edges.clone().map(|e| (logit.apply(p[h] + q[g.tail(e)]) - m).exp() / z).collect();
            let mut row = vec![0.0f32; d];
            for (e, &a) in edges.zip(&alpha) {
                let xt = &x[g.tail(e) * d..][..d];
                row.iter_mut().zip(xt).for_each(|(r, &v)| *r += a * v);
            }
            (row, alpha)
        });
        let mut y = Vec::with_capacity(g.n * d);
        let mut alpha = Vec::with_capacity(g.t);
        for (row, a) in heads {
            y.extend_from_slice(&row);
            alpha.extend_from_slice(&a);
        }
        (y, alpha)
    }

    /// Backward: `(g_x [n, d], g_p [n], g_q [n])` from the forward's `α` and `g_y`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(g: &GraphView, x: &[f32], p: &[f32], q: &[f32], d: usize, logit: GatLogit, alpha: &[f32], g_y: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        // Pass A, per head: g_z per edge and g_p[h].
        let heads: Vec<(f32, Vec<f32>)> = crate::cpu::par_map(g.n, |h| {
            let edges = g.out_edges(h);
            let gy = &g_y[h * d..][..d];
            let ga: Vec<f32> = edges
                .clone()
                .map(|e| {
                    let xt = &x[g.tail(e) * d..][..d];
                    let mut acc = 0.0f32;
                    for (a, b) in gy.iter().zip(xt) {
                        acc += a * b;
                    }
                    acc
                })
                .collect();
            let mut sum = 0.0f32;
            for (e, v) in edges.clone().zip(&ga) {
                sum += alpha[e] * v;
            }
            let gz: Vec<f32> = edges.zip(&ga).map(|(e, v)| logit.derivative(p[h] + q[g.tail(e)]) * (alpha[e] * (v - sum))).collect();
            let mut gp = 0.0f32;
            for v in &gz {
                gp += v;
            }
            (gp, gz)
        });
        let mut g_p = Vec::with_capacity(g.n);
        let mut gz = Vec::with_capacity(g.t);
        for (gp, v) in heads {
            g_p.push(gp);
            gz.extend_from_slice(&v);
        }
        // Pass B, per tail: g_x[t] = Σ_{e into t} α_e g_y[head(e)].
        let mut g_x = vec![0.0f32; g.n * d];
        crate::cpu::par_rows(&mut g_x, d, |tl, row| {
            for e in g.in_edges(tl) {
                let a = alpha[e];
                let gy = &g_y[g.head(e) * d..][..d];
                row.iter_mut().zip(gy).for_each(|(r, &v)| *r += a * v);
            }
        });
        // Pass Q, per tail: g_q[t] = Σ_{e into t} g_z_e.
        let g_q = (0..g.n)
            .map(|tl| {
                let mut acc = 0.0f32;
                for e in g.in_edges(tl) {
                    acc += gz[e];
                }
                acc
            })
            .collect();
        (g_x, g_p, g_q)
    }
}
