//! The relational-reflection graph attention layer, fused (spec §4.5 step 2, §7 ops 8–13), in the
//! **Dual-AMN form** LoginMEA uses: the attention logit comes from the relation vector only (RREA's
//! `aᵀ[x_h ; ñ_e ; ρ_e]` is not used).
//!
//! For a graph of `n` entities with `T` directed edges `e = (h → t)`, each carrying a relation-mixing
//! vector (entries `(r_k, m_ek)`, normally summing to 1), inputs `x` `[n, d]`, `Rel` `[R, d]`, `a` `[d]`:
//!
//! ```text
//! u_e = Σ_k m_ek Rel[r_k]                     ρ_e = u_e / max(‖u_e‖, 1e-12)
//! ñ_e = x_t − 2 (x_t·ρ_e) ρ_e                 (Householder reflection of the tail: ‖ñ_e‖ = ‖x_t‖)
//! s_e = ρ_e·a                                 α_e = softmax of s over the out-edges of h
//! y_h = act(Σ_{e: head(e) = h} α_e ñ_e)       act = tanh (LoginMEA) or identity; no out-edges ⇒ y_h = act(0) = 0
//! ```
//!
//! Backward, with `g_o = g_y ⊙ act'(y)`, per edge `e = (h → t)` (no `T × d` tensor is ever stored; per-edge
//! scalars are, and `u_e` is recomputed from the mixing entries where a column of it is needed):
//!
//! ```text
//! g_α_e = g_o[h]·ñ_e = g_o[h]·x_t − 2 (x_t·ρ_e)(g_o[h]·ρ_e)
//! g_s_e = α_e (g_α_e − Σ_{e' ∈ out(h)} α_e' g_α_e')
//! g_x[t] = Σ_{e: tail(e) = t} α_e (g_o[h] − 2 (g_o[h]·ρ_e) ρ_e)                       (H_e is symmetric)
//! g_a    = Σ_e g_s_e ρ_e
//! g_ρ_e  = −2 α_e [(x_t·ρ_e) g_o[h] + (g_o[h]·ρ_e) x_t] + g_s_e a
//! g_u_e  = (g_ρ_e − (g_ρ_e·ρ_e) ρ_e) / ‖u_e‖,  g_ρ_e·ρ_e = −4 α_e (x_t·ρ_e)(g_o[h]·ρ_e) + g_s_e s_e
//!          (and g_ρ_e / 1e-12 when ‖u_e‖ < 1e-12, where ρ_e = u_e / 1e-12 is linear)
//! g_Rel[r] = Σ_{(e, m) : r in e's mixing} m g_u_e
//! ```
//!
//! Kernels (`shaders/reflection_attention.wgsl`, `shaders/reflection_attention_backward.wgsl`): the forward is
//! one workgroup per head; the backward is pass A (per head: per-edge scalars and `Σ_e g_s_e ρ_e` per head,
//! whose column sum is `g_a`), pass B (per tail, through the tail view: `g_x`) and pass C (per relation,
//! through the relation view: `g_Rel`). All sums run over sorted segments in a fixed order: deterministic,
//! no atomics.
//!
//! Two CPU paths, on the graph's host arrays:
//!
//! * [`cpu`], the twin and test oracle: it mirrors the shaders' structure literally (one column at a time,
//!   `u_e` recomputed per column through [`cpu::GraphView::u`], per-relation pass C, per-edge dot products
//!   summed like the workgroup reduction [`cpu::wg_sum`]), so both backends agree to rounding. Simple to
//!   check against the WGSL, slow: strided access and a pass C as unbalanced as the relation sizes.
//! * [`fast`], what [`Device::Cpu`] runs: the same f32 operations in the same order (its results equal
//!   the twin's bit for bit), scheduled for a CPU — `u_e` built once per use as a contiguous row, dot
//!   products in 64 vectorisable lanes, rows accumulated with axpy-like loops, light heads done in one
//!   pass with their `u_e` kept in scratch, and every output split into tasks of about equal cost (heavy
//!   rows, such as a frequent relation in pass C, into column blocks), with software prefetch of the
//!   gathered rows. Deterministic: every output element is summed by one task in a fixed order.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, GpuBuffer};
use crate::ops::elementwise::{unary_backward, Unary};
use crate::ops::reduce::sum_rows;
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const FORWARD: crate::gpu::Shader = shader!("reflection_attention");
const BACKWARD: crate::gpu::Shader = shader!("reflection_attention_backward");

/// Invocations per workgroup of the per-head kernels (forward, backward pass A); must match the shaders.
pub const HEAD_WG: usize = 64;
/// Invocations per workgroup of the per-element kernels (backward passes B and C).
const FLAT_WG: u64 = 256;
/// Guard on ‖u_e‖ before normalising.
pub const NORM_EPS: f32 = 1e-12;

/// The layer's output activation (a specialisation constant of the forward shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `tanh`, as in LoginMEA (clamped to ±15 before evaluation, like `Unary::Tanh`).
    Tanh,
    /// No activation.
    Identity,
}

impl Act {
    fn code(self) -> u32 {
        match self {
            Act::Tanh => 0,
            Act::Identity => 1,
        }
    }
}

/// Where each array of a [`RelGraph`] starts inside its packed buffers (`index` for u32 arrays, `weights`
/// for f32 arrays). Packing keeps every kernel within WebGPU's 8 storage buffers per entry point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelGraphLayout {
    /// `[n + 1]`: out-edges of head `h` are `head_offsets[h]..head_offsets[h+1]` (edges sorted by head, tail).
    pub head_offsets: usize,
    /// `[T]` head of each edge.
    pub edge_head: usize,
    /// `[T]` tail of each edge.
    pub edge_tail: usize,
    /// `[T + 1]`: mixing entries of edge `e` are `mix_offsets[e]..mix_offsets[e+1]`.
    pub mix_offsets: usize,
    /// `[nnz]` relation of each mixing entry (its weight is `weights[j]`, `mix_val` at offset 0).
    pub mix_rel: usize,
    /// `[n + 1]`: the tail view, edges into `t` are `tail_edges[tail_offsets[t]..tail_offsets[t+1]]`.
    pub tail_offsets: usize,
    /// `[T]` edge ids grouped by tail (ascending edge id within a tail).
    pub tail_edges: usize,
    /// `[R + 1]`: the relation view, entries of `r` are `rel_offsets[r]..rel_offsets[r+1]`.
    pub rel_offsets: usize,
    /// `[nnz]` edge of each relation-view entry (ascending edge id within a relation).
    pub rel_edges: usize,
    /// Offset in `weights` of `rel_val` (`[nnz]`, the mixing weight of each relation-view entry).
    pub rel_val: usize,
}

/// A relation-aware graph for [`reflection_attention`], built on the host, held on a device.
/// The u32 arrays listed in [`RelGraphLayout`] live packed in `index`, the f32 ones (`mix_val`, `rel_val`)
/// in `weights`.
#[derive(Clone, Debug)]
pub struct RelGraph {
    /// Packed u32 arrays (see `layout`).
    pub index: Tensor,
    /// `[2 nnz]` f32: `mix_val` then `rel_val`.
    pub weights: Tensor,
    pub layout: RelGraphLayout,
    n: usize,
    num_rel: usize,
    num_edges: usize,
    nnz: usize,
}

pub(crate) fn fits_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// Stable counting sort of `keys` (all `< n`): `(offsets [n + 1], perm)` with perm listing positions
/// grouped by key, ascending within a key.
pub(crate) fn group_by(keys: &[u32], n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for &k in keys {
        offsets[k as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets[..n].to_vec();
    let mut perm = vec![0u32; keys.len()];
    for (pos, &k) in keys.iter().enumerate() {
        perm[next[k as usize] as usize] = pos as u32;
        next[k as usize] += 1;
    }
    (offsets, perm)
}

impl RelGraph {
    /// Build the graph from directed `edges` `(head, tail)` and, for each edge (same order), its relation
    /// mixing `[(relation, weight)]` (Dual-AMN/LoginMEA: every relation on the pair with weight 1/count).
    /// Edges are sorted by (head, tail), stably, so duplicate pairs stay separate edges; entries of one
    /// edge keep their order. Self loops and edges without mixing entries are allowed (the latter reflect
    /// through ρ = 0, i.e. not at all). Entity ids must be `< n`, relation ids `< num_rel`, weights finite.
    pub fn new(device: &Device, n: usize, num_rel: usize, edges: &[(u32, u32)], mixing: &[Vec<(u32, f32)>]) -> Result<RelGraph> {
        const OP: &str = "RelGraph::new";
        let _prof = crate::profile::scope(OP);
        if edges.len() != mixing.len() {
            return Err(Error::invalid(OP, format!("{} edges but {} mixing lists (one per edge)", edges.len(), mixing.len())));
        }
        fits_u32(OP, "entities", n)?;
        fits_u32(OP, "relations", num_rel)?;
        fits_u32(OP, "edges", edges.len())?;
        for (e, &(h, t)) in edges.iter().enumerate() {
            if h as usize >= n || t as usize >= n {
                return Err(Error::invalid(OP, format!("edge {e} = ({h} -> {t}) names an entity outside 0..{n}")));
            }
            for &(r, w) in &mixing[e] {
                if r as usize >= num_rel {
                    return Err(Error::invalid(OP, format!("edge {e} = ({h} -> {t}) uses relation {r}, outside 0..{num_rel}")));
                }
                if !w.is_finite() {
                    return Err(Error::NonFinite { op: OP, detail: format!("edge {e} = ({h} -> {t}) has weight {w} for relation {r}") });
                }
            }
        }
        let t_count = edges.len();
        let mut order: Vec<usize> = (0..t_count).collect();
        order.sort_by_key(|&e| edges[e]);

        let edge_head: Vec<u32> = order.iter().map(|&e| edges[e].0).collect();
        let edge_tail: Vec<u32> = order.iter().map(|&e| edges[e].1).collect();
        let (head_offsets, _) = group_by(&edge_head, n);
        let mut mix_offsets = Vec::with_capacity(t_count + 1);
        let (mut mix_rel, mut mix_val, mut mix_edge) = (Vec::new(), Vec::new(), Vec::new());
        mix_offsets.push(0u32);
        for (sorted, &e) in order.iter().enumerate() {
            for &(r, w) in &mixing[e] {
                mix_rel.push(r);
                mix_val.push(w);
                mix_edge.push(sorted as u32);
            }
            mix_offsets.push(fits_u32(OP, "mixing entries", mix_rel.len())?);
        }
        let nnz = mix_rel.len();
        let (tail_offsets, tail_edges) = group_by(&edge_tail, n);
        let (rel_offsets, rel_perm) = group_by(&mix_rel, num_rel);
        let rel_edges: Vec<u32> = rel_perm.iter().map(|&j| mix_edge[j as usize]).collect();
        let rel_val: Vec<f32> = rel_perm.iter().map(|&j| mix_val[j as usize]).collect();

        let mut index = Vec::with_capacity(3 * (n + 1) + 4 * t_count + 2 * nnz + num_rel);
        let mut place = |v: &[u32]| {
            let at = index.len();
            index.extend_from_slice(v);
            at
        };
        let layout = RelGraphLayout {
            head_offsets: place(&head_offsets),
            edge_head: place(&edge_head),
            edge_tail: place(&edge_tail),
            mix_offsets: place(&mix_offsets),
            mix_rel: place(&mix_rel),
            tail_offsets: place(&tail_offsets),
            tail_edges: place(&tail_edges),
            rel_offsets: place(&rel_offsets),
            rel_edges: place(&rel_edges),
            rel_val: nnz,
        };
        fits_u32(OP, "packed index length", index.len())?;
        let mut weights = mix_val;
        weights.extend_from_slice(&rel_val);
        let (ilen, wlen) = (index.len(), weights.len());
        Ok(RelGraph { index: Tensor::from_u32(device, index, &[ilen])?, weights: Tensor::from_f32(device, weights, &[wlen])?, layout, n, num_rel, num_edges: t_count, nnz })
    }

    /// Number of entities.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Size of the relation vocabulary (rows of `Rel`).
    pub fn num_rel(&self) -> usize {
        self.num_rel
    }
    /// Number of directed edges T.
    pub fn num_edges(&self) -> usize {
        self.num_edges
    }
    /// Number of (edge, relation) mixing entries.
    pub fn nnz(&self) -> usize {
        self.nnz
    }
    pub fn device(&self) -> Device {
        self.index.device()
    }

    /// The same graph on another device.
    pub async fn to_device(&self, device: &Device) -> Result<RelGraph> {
        Ok(RelGraph { index: self.index.to_device(device).await?, weights: self.weights.to_device(device).await?, ..self.clone() })
    }

    fn cpu_view(&self, op: &'static str) -> Result<cpu::GraphView<'_>> {
        Ok(cpu::GraphView { layout: self.layout, index: self.index.cpu_u32(op)?, weights: self.weights.cpu_f32(op)?, n: self.n, t: self.num_edges, r: self.num_rel })
    }

    fn params(&self, d: usize) -> Params {
        let l = &self.layout;
        Params {
            n: self.n as u32,
            d: d as u32,
            t: self.num_edges as u32,
            r: self.num_rel as u32,
            head_offsets: l.head_offsets as u32,
            edge_head: l.edge_head as u32,
            edge_tail: l.edge_tail as u32,
            mix_offsets: l.mix_offsets as u32,
            mix_rel: l.mix_rel as u32,
            tail_offsets: l.tail_offsets as u32,
            tail_edges: l.tail_edges as u32,
            rel_offsets: l.rel_offsets as u32,
            rel_edges: l.rel_edges as u32,
            rel_val: l.rel_val as u32,
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
    _p: [u32; 2],
}

/// What the backward needs from the forward: per-edge scalars and the output.
#[derive(Clone, Debug)]
pub struct ReflectionSaved {
    /// `[4, T]` f32, rows: `α_e`, `‖u_e‖`, `x_t·ρ_e`, `s_e`.
    pub edge: Tensor,
    /// The layer output `y` `[n, d]` (for `act'`).
    pub y: Tensor,
}

impl ReflectionSaved {
    /// The attention weights `α_e` `[T]`, in the graph's edge order (sorted by head, then tail).
    pub fn alpha(&self) -> Result<Tensor> {
        const OP: &str = "ReflectionSaved::alpha";
        let _prof = crate::profile::scope(OP);
        let t = self.edge.len() / 4;
        match self.edge.device() {
            Device::Cpu => Tensor::from_f32(&Device::Cpu, self.edge.cpu_f32(OP)?[..t].to_vec(), &[t]),
            Device::Gpu(ctx) => {
                let out = ctx.alloc(t, OP)?;
                ctx.copy(self.edge.gpu_buf(OP)?, 0, &out, 0, t);
                Ok(Tensor::from_gpu(&ctx, out, &[t], DType::F32))
            }
        }
    }
}

/// Validates the inputs; returns d.
fn check_inputs(op: &'static str, graph: &RelGraph, x: &Tensor, rel: &Tensor, a: &Tensor) -> Result<usize> {
    for t in [x, rel, a] {
        t.expect_dtype(op, DType::F32)?;
    }
    let (n, d) = x.dims2(op)?;
    let (r, dr) = rel.dims2(op)?;
    if n != graph.n || r != graph.num_rel || dr != d || a.len() != d || a.shape().len() != 1 {
        return Err(Error::shape(
            op,
            format!("expected x [{}, d], rel [{}, d], a [d] for a graph of {} entities and {} relations", graph.n, graph.num_rel, graph.n, graph.num_rel),
            &[x.shape(), rel.shape(), a.shape()],
        ));
    }
    fits_u32(op, "n * d", n * d)?;
    fits_u32(op, "num_rel * d", r * d)?;
    fits_u32(op, "7 * T", 7 * graph.num_edges)?;
    Ok(d)
}

/// The fused reflection-attention layer (formulas in the module docs): `y [n, d]` and the state the
/// backward needs. `x` `[n, d]`, `rel` `[R, d]`, `a` `[d]`.
pub fn reflection_attention(graph: &RelGraph, x: &Tensor, rel: &Tensor, a: &Tensor, act: Act) -> Result<(Tensor, ReflectionSaved)> {
    const OP: &str = "reflection_attention";
    let _prof = crate::profile::scope(OP);
    let d = check_inputs(OP, graph, x, rel, a)?;
    let (n, t) = (graph.n, graph.num_edges);
    match common_device(OP, &[&graph.index, &graph.weights, x, rel, a])? {
        Device::Cpu => {
            let (y, edge) = fast::forward(&graph.cpu_view(OP)?, x.cpu_f32(OP)?, rel.cpu_f32(OP)?, a.cpu_f32(OP)?, d, act);
            let y = Tensor::from_f32(&Device::Cpu, y, &[n, d])?;
            let edge = Tensor::from_f32(&Device::Cpu, edge, &[4, t])?;
            Ok((y.clone(), ReflectionSaved { edge, y }))
        }
        Device::Gpu(ctx) => {
            let y = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let edge = Tensor::gpu_output(&ctx, &[4, t], DType::F32, OP)?;
            ctx.dispatch(
                OP,
                &FORWARD,
                "forward",
                &[("ACT", act.code() as f64)],
                &graph.params(d),
                &[
                    Arg::Read(graph.index.gpu_buf(OP)?),
                    Arg::Read(graph.weights.gpu_buf(OP)?),
                    Arg::Read(rel.gpu_buf(OP)?),
                    Arg::Read(x.gpu_buf(OP)?),
                    Arg::Read(a.gpu_buf(OP)?),
                    Arg::Write(y.gpu_buf(OP)?),
                    Arg::Write(edge.gpu_buf(OP)?),
                ],
                grid(n as u64),
            )?;
            Ok((y.clone(), ReflectionSaved { edge, y }))
        }
    }
}

/// Gradients `(g_x [n, d], g_rel [R, d], g_a [d])` of [`reflection_attention`] given `g_y = dL/dy`
/// (formulas in the module docs). `x`, `rel`, `a`, `act` must be those of the forward that produced `saved`.
#[allow(clippy::too_many_arguments)]
pub fn reflection_attention_backward(graph: &RelGraph, x: &Tensor, rel: &Tensor, a: &Tensor, act: Act, saved: &ReflectionSaved, g_y: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "reflection_attention_backward";
    let _prof = crate::profile::scope(OP);
    let d = check_inputs(OP, graph, x, rel, a)?;
    let (n, t, r) = (graph.n, graph.num_edges, graph.num_rel);
    g_y.expect_dtype(OP, DType::F32)?;
    saved.edge.expect_dtype(OP, DType::F32)?;
    if g_y.shape() != [n, d] || saved.y.shape() != [n, d] || saved.edge.shape() != [4, t] {
        return Err(Error::shape(OP, format!("expected g_y and saved y [{n}, {d}], saved edge scalars [4, {t}]"), &[g_y.shape(), saved.y.shape(), saved.edge.shape()]));
    }
    let dev = common_device(OP, &[&graph.index, &graph.weights, x, rel, a, g_y, &saved.edge, &saved.y])?;
    // g_o = g_y ⊙ act'(y); tanh' = 1 − y² needs only y, so y stands in for the pre-activation too.
    let g_o = match act {
        Act::Tanh => unary_backward(Unary::Tanh, &saved.y, &saved.y, g_y)?,
        Act::Identity => g_y.clone(),
    };
    match dev {
        Device::Cpu => {
            let view = graph.cpu_view(OP)?;
            let (g_x, g_rel, part) = fast::backward(&view, x.cpu_f32(OP)?, rel.cpu_f32(OP)?, a.cpu_f32(OP)?, d, saved.edge.cpu_f32(OP)?, g_o.cpu_f32(OP)?);
            let g_a = crate::ops::reduce::cpu::sum_rows(&part, n, d);
            Ok((Tensor::from_f32(&Device::Cpu, g_x, &[n, d])?, Tensor::from_f32(&Device::Cpu, g_rel, &[r, d])?, Tensor::from_f32(&Device::Cpu, g_a, &[d])?))
        }
        Device::Gpu(ctx) => {
            // Per-edge scalars, [7, T]: α, ‖u‖, x_t·ρ, s (copied from the forward), g_o·ρ, g_α, g_s (pass A).
            let bw = ctx.alloc(7 * t, "reflection backward edge scalars")?;
            ctx.copy(saved.edge.gpu_buf(OP)?, 0, &bw, 0, 4 * t);
            let part = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let g_x = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let g_rel = Tensor::gpu_output(&ctx, &[r, d], DType::F32, OP)?;
            let p = graph.params(d);
            let (index, weights) = (graph.index.gpu_buf(OP)?, graph.weights.gpu_buf(OP)?);
            let (relb, xb, ab, gob) = (rel.gpu_buf(OP)?, x.gpu_buf(OP)?, a.gpu_buf(OP)?, g_o.gpu_buf(OP)?);
            let ins = [index, weights, relb, xb, ab, gob];
            ctx.dispatch(OP, &BACKWARD, "pass_a", &[], &p, &backward_args(ins, &bw, part.gpu_buf(OP)?), grid(n as u64))?;
            ctx.dispatch(OP, &BACKWARD, "pass_b", &[], &p, &backward_args(ins, &bw, g_x.gpu_buf(OP)?), grid(((n * d) as u64).div_ceil(FLAT_WG)))?;
            ctx.dispatch(OP, &BACKWARD, "pass_c", &[], &p, &backward_args(ins, &bw, g_rel.gpu_buf(OP)?), grid(((r * d) as u64).div_ceil(FLAT_WG)))?;
            let g_a = sum_rows(&part)?;
            Ok((g_x, g_rel, g_a))
        }
    }
}

/// The bindings shared by the three backward passes: inputs, the edge scalars, the pass's output.
fn backward_args<'a>(ins: [&'a GpuBuffer; 6], bw: &'a GpuBuffer, out: &'a GpuBuffer) -> [Arg<'a>; 8] {
    let [index, weights, rel, x, a, g_o] = ins;
    [Arg::Read(index), Arg::Read(weights), Arg::Read(rel), Arg::Read(x), Arg::Read(a), Arg::Read(g_o), Arg::Write(bw), Arg::Write(out)]
}

/// Tape wrapper.
pub mod ad {
    use super::{Act, RelGraph};
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// [`super::reflection_attention`] on the tape; gradients flow to `x`, `rel` and `a`. Saves the inputs
    /// and the per-edge scalars (`4T` floats), never a `T × d` tensor.
    pub fn reflection_attention(tape: &Tape, graph: &RelGraph, x: &Var, rel: &Var, a: &Var, act: Act) -> Result<Var> {
        Ok(reflection_attention_alpha(tape, graph, x, rel, a, act, false)?.0)
    }

    /// [`reflection_attention`], also returning the attention weights `α_e` `[T]` (graph edge order) when
    /// `want_alpha` (for explanations; a copy of `T` floats).
    pub fn reflection_attention_alpha(tape: &Tape, graph: &RelGraph, x: &Var, rel: &Var, a: &Var, act: Act, want_alpha: bool) -> Result<(Var, Option<Tensor>)> {
        let (y, saved) = super::reflection_attention(graph, &x.value, &rel.value, &a.value, act)?;
        let alpha = if want_alpha { Some(saved.alpha()?) } else { None };
        let (g, xv, rv, av) = (graph.clone(), x.value.clone(), rel.value.clone(), a.value.clone());
        let y = tape.record(y, &[x, rel, a], move |g_y| {
            let (gx, gr, ga) = super::reflection_attention_backward(&g, &xv, &rv, &av, act, &saved, g_y)?;
            Ok(vec![Some(gx), Some(gr), Some(ga)])
        });
        Ok((y, alpha))
    }
}

/// The CPU twin, on slices. It follows the shaders' arithmetic: per-edge dot products are summed like the
/// workgroup reduction (strided per-invocation partial sums, then a tree over [`HEAD_WG`] partials), and
/// every other sum runs in the same segment order.
pub mod cpu {
    use std::ops::Range;

    use super::{Act, RelGraphLayout, HEAD_WG, NORM_EPS};

    /// Borrowed view of a graph's packed arrays.
    pub struct GraphView<'a> {
        pub layout: RelGraphLayout,
        pub index: &'a [u32],
        pub weights: &'a [f32],
        pub n: usize,
        pub t: usize,
        pub r: usize,
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
        /// `(edge, weight)` entries of relation `r`, ascending by edge.
        pub fn rel_entries(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
            let l = self.layout;
            (self.at(l.rel_offsets, r)..self.at(l.rel_offsets, r + 1)).map(move |k| (self.at(l.rel_edges, k), self.weights[l.rel_val + k]))
        }
        /// Column `col` of `u_e = Σ_k m_ek Rel[r_k]`, summed in entry order.
        pub fn u(&self, rel: &[f32], d: usize, e: usize, col: usize) -> f32 {
            let l = self.layout;
            let mut u = 0.0f32;
            for j in self.at(l.mix_offsets, e)..self.at(l.mix_offsets, e + 1) {
                u += self.weights[j] * rel[self.at(l.mix_rel, j) * d + col];
            }
            u
        }
    }

    /// `Σ_{col < d} f(col)` (K values at once) in the order of the shaders' workgroup reduction.
    pub fn wg_sum<const K: usize>(d: usize, f: impl Fn(usize) -> [f32; K]) -> [f32; K] {
        let mut part = [[0.0f32; K]; HEAD_WG];
        for (lid, acc) in part.iter_mut().enumerate() {
            for col in (lid..d).step_by(HEAD_WG) {
                acc.iter_mut().zip(f(col)).for_each(|(a, v)| *a += v);
            }
        }
        let mut s = HEAD_WG / 2;
        while s > 0 {
            let (low, high) = part.split_at_mut(s);
            for (a, b) in low.iter_mut().zip(&high[..s]) {
                a.iter_mut().zip(b).for_each(|(a, v)| *a += v);
            }
            s /= 2;
        }
        part[0]
    }

    pub fn activate(act: Act, v: f32) -> f32 {
        match act {
            Act::Tanh => v.clamp(-15.0, 15.0).tanh(),
            Act::Identity => v,
        }
    }

    /// Forward: `(y [n, d], edge scalars [4, T] = α, ‖u‖, x_t·ρ, s)`.
    pub fn forward(g: &GraphView, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act) -> (Vec<f32>, Vec<f32>) {
        let t = g.t;
        let heads: Vec<(Vec<f32>, Vec<[f32; 4]>)> = crate::cpu::par_map(g.n, |h| {
            let edges = g.out_edges(h);
            let (mut m, mut z) = (0.0f32, 0.0f32);
            let mut sc: Vec<[f32; 4]> = Vec::with_capacity(edges.len());
            for e in edges.clone() {
                let tl = g.tail(e);
                let [uu, xu, ua] = wg_sum(d, |col| {
                    let u = g.u(rel, d, e, col);
                    [u * u, x[tl * d + col] * u, u * a[col]]
                });
                let nrm = uu.sqrt();
                let nc = nrm.max(NORM_EPS);
                let (xr, s) = (xu / nc, ua / nc);
                if e == edges.start {
                    (m, z) = (s, 1.0);
                } else {
                    let m2 = m.max(s);
                    z = z * (m - m2).exp() + (s - m2).exp();
                    m = m2;
                }
                sc.push([0.0, nrm, xr, s]);
            }
            for v in sc.iter_mut() {
                v[0] = (v[3] - m).exp() / z;
            }
            let row = (0..d)
                .map(|col| {
                    let mut acc = 0.0f32;
                    for (e, v) in edges.clone().zip(&sc) {
                        let rho = g.u(rel, d, e, col) / v[1].max(NORM_EPS);
                        acc += v[0] * (x[g.tail(e) * d + col] - 2.0 * v[2] * rho);
                    }
                    activate(act, acc)
                })
                .collect();
            (row, sc)
        });
        let mut y = Vec::with_capacity(g.n * d);
        let mut edge = vec![0.0f32; 4 * t];
        for (h, (row, sc)) in heads.into_iter().enumerate() {
            y.extend_from_slice(&row);
            for (e, v) in g.out_edges(h).zip(sc) {
                for (k, val) in v.into_iter().enumerate() {
                    edge[k * t + e] = val;
                }
            }
        }
        (y, edge)
    }

    /// Backward from `g_o = g_y ⊙ act'(y)` and the forward's edge scalars: `(g_x [n, d], g_rel [R, d],
    /// part [n, d])` where `part[h] = Σ_{e ∈ out(h)} g_s_e ρ_e` (its column sum is `g_a`).
    pub fn backward(g: &GraphView, x: &[f32], rel: &[f32], a: &[f32], d: usize, edge: &[f32], g_o: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let t = g.t;
        let (alpha, nrm, xr, s) = (&edge[..t], &edge[t..2 * t], &edge[2 * t..3 * t], &edge[3 * t..4 * t]);
        // Pass A, per head: g_o·ρ_e and g_s_e per edge, and part[h].
        let heads: Vec<(Vec<f32>, Vec<[f32; 2]>)> = crate::cpu::par_map(g.n, |h| {
            let edges = g.out_edges(h);
            let mut sum = 0.0f32;
            let mut gr_ga = Vec::with_capacity(edges.len());
            for e in edges.clone() {
                let tl = g.tail(e);
                let [p1, p2] = wg_sum(d, |col| {
                    let u = g.u(rel, d, e, col);
                    let go = g_o[h * d + col];
                    [go * u, go * x[tl * d + col]]
                });
                let gr = p1 / nrm[e].max(NORM_EPS);
                let ga = p2 - 2.0 * xr[e] * gr;
                sum += alpha[e] * ga;
                gr_ga.push([gr, ga]);
            }
            let gs: Vec<f32> = edges.clone().zip(&gr_ga).map(|(e, v)| alpha[e] * (v[1] - sum)).collect();
            let row = (0..d)
                .map(|col| {
                    let mut acc = 0.0f32;
                    for (e, &gse) in edges.clone().zip(&gs) {
                        acc += gse * (g.u(rel, d, e, col) / nrm[e].max(NORM_EPS));
                    }
                    acc
                })
                .collect();
            (row, edges.zip(gr_ga).zip(gs).map(|((_, v), gse)| [v[0], gse]).collect())
        });
        let mut part = Vec::with_capacity(g.n * d);
        let (mut gr, mut gs) = (vec![0.0f32; t], vec![0.0f32; t]);
        for (h, (row, v)) in heads.into_iter().enumerate() {
            part.extend_from_slice(&row);
            for (e, v) in g.out_edges(h).zip(v) {
                (gr[e], gs[e]) = (v[0], v[1]);
            }
        }
        // Pass B, per tail: g_x[t] = Σ_{e into t} α_e (g_o[h] − 2 (g_o[h]·ρ_e) ρ_e).
        let mut g_x = vec![0.0f32; g.n * d];
        crate::cpu::par_rows(&mut g_x, d, |tl, row| {
            for (col, out) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for e in g.in_edges(tl) {
                    let rho = g.u(rel, d, e, col) / nrm[e].max(NORM_EPS);
                    acc += alpha[e] * (g_o[g.head(e) * d + col] - 2.0 * gr[e] * rho);
                }
                *out = acc;
            }
        });
        // Pass C, per relation: g_Rel[r] = Σ_{(e, m)} m g_u_e.
        let mut g_rel = vec![0.0f32; g.r * d];
        crate::cpu::par_rows(&mut g_rel, d, |r, row| {
            for (col, out) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (e, w) in g.rel_entries(r) {
                    let nc = nrm[e].max(NORM_EPS);
                    let rho = g.u(rel, d, e, col) / nc;
                    let go = g_o[g.head(e) * d + col];
                    let xt = x[g.tail(e) * d + col];
                    let g_rho = -2.0 * alpha[e] * (xr[e] * go + gr[e] * xt) + gs[e] * a[col];
                    let c = if nrm[e] >= NORM_EPS { -4.0 * alpha[e] * xr[e] * gr[e] + gs[e] * s[e] } else { 0.0 };
                    acc += w * ((g_rho - c * rho) / nc);
                }
                *out = acc;
            }
        });
        (g_x, g_rel, part)
    }
}

/// The fast CPU path, what [`Device::Cpu`] runs. Same signatures and outputs as [`cpu`], and the same
/// arithmetic: every output element is computed by the same sequence of f32 operations as in the twin,
/// so the two agree bit for bit. Only the memory access pattern and the scheduling differ:
///
/// * `u_e` is built as a row from contiguous `Rel` rows, and each per-edge dot product accumulates in 64
///   lanes (lane `i` holds the columns `≡ i (mod 64)`) folded by the tree of [`cpu::wg_sum`], which is
///   the shaders' workgroup reduction and a shape the compiler vectorises;
/// * every `[rows, d]` output (`y`, `part`, `g_x`, `g_Rel`) is built row-contiguously, edge by edge in
///   the segment's order (axpy-like loops over a recomputed `u_e`), by tasks of about equal cost that run
///   in parallel: light rows are grouped, a heavy row (a hub head or tail, a frequent relation) is split
///   into column blocks;
/// * per head (forward, backward pass A), a light head does everything in one task: the `u_e` of its
///   out-edges stay in a scratch buffer between the dot products, the softmax and the row, and the tail
///   rows stay in cache. The out-edges of heavy heads get their dot products in parallel over edges
///   first, then their rows in column blocks.
///
/// The next edge's gathered rows are prefetched while the current one is computed (these loops are bound by
/// the latency of random row reads). Each output element is owned by one task and summed in a fixed order,
/// so the results do not depend on the thread count or on scheduling.
pub mod fast {
    use std::ops::Range;

    use super::cpu::{activate, GraphView};
    use super::{Act, HEAD_WG, NORM_EPS};

    /// Lanes of the dot products (the shaders' workgroup size, so the reduction order matches).
    const WG: usize = HEAD_WG;
    /// About this many row tasks per output (more than enough for work stealing to balance them).
    const TASKS: usize = 512;
    /// Narrowest column block a heavy row is split into.
    const MIN_COLS: usize = 16;
    /// Heads with at most this many out-edges are done in one pass (their `u_e` in a scratch buffer).
    /// Below the smallest row [`tasks`] splits into column blocks (cost ≥ 2 · 64).
    const FUSE_MAX: usize = 64;

    /// Asks the cache for `v` ahead of its use (the row gathers of these loops are latency-bound).
    #[inline(always)]
    fn prefetch(v: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            if v.is_empty() {
                return;
            }
            // Every 64-byte line `v` touches.
            let (first, last) = (v.as_ptr() as usize & !63, (v.as_ptr() as usize + std::mem::size_of_val(v) - 1) & !63);
            let mut line = first;
            while line <= last {
                // SAFETY: a prefetch never faults and has no architectural effect.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
                line += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = v;
    }

    /// [`prefetch`] of `m[row][cols]`, `m` a `[_, d]` matrix.
    #[inline(always)]
    fn prefetch_row(m: &[f32], d: usize, row: usize, cols: &Range<usize>) {
        prefetch(&m[row * d..][cols.clone()]);
    }

    /// The graph's packed arrays as plain slices.
    struct Arrays<'a> {
        head_offsets: &'a [u32],
        edge_head: &'a [u32],
        edge_tail: &'a [u32],
        mix_offsets: &'a [u32],
        mix_rel: &'a [u32],
        mix_val: &'a [f32],
        tail_offsets: &'a [u32],
        tail_edges: &'a [u32],
        rel_offsets: &'a [u32],
        rel_edges: &'a [u32],
        rel_val: &'a [f32],
    }

    fn span(offsets: &[u32], i: usize) -> Range<usize> {
        offsets[i] as usize..offsets[i + 1] as usize
    }

    impl<'a> Arrays<'a> {
        fn new(g: &GraphView<'a>) -> Arrays<'a> {
            let (l, idx) = (g.layout, g.index);
            let (n, t, r) = (g.n, g.t, g.r);
            let nnz = idx[l.mix_offsets + t] as usize;
            Arrays {
                head_offsets: &idx[l.head_offsets..][..n + 1],
                edge_head: &idx[l.edge_head..][..t],
                edge_tail: &idx[l.edge_tail..][..t],
                mix_offsets: &idx[l.mix_offsets..][..t + 1],
                mix_rel: &idx[l.mix_rel..][..nnz],
                mix_val: &g.weights[..nnz],
                tail_offsets: &idx[l.tail_offsets..][..n + 1],
                tail_edges: &idx[l.tail_edges..][..t],
                rel_offsets: &idx[l.rel_offsets..][..r + 1],
                rel_edges: &idx[l.rel_edges..][..nnz],
                rel_val: &g.weights[l.rel_val..][..nnz],
            }
        }

        fn out_edges(&self, h: usize) -> Range<usize> {
            span(self.head_offsets, h)
        }

        fn heavy(&self, h: usize) -> bool {
            self.out_edges(h).len() > FUSE_MAX
        }

        /// [`prefetch`] of the `Rel` rows (columns `cols`) that make `u_e`.
        #[inline(always)]
        fn prefetch_u(&self, rel: &[f32], d: usize, e: usize, cols: &Range<usize>) {
            for j in span(self.mix_offsets, e) {
                prefetch_row(rel, d, self.mix_rel[j] as usize, cols);
            }
        }

        /// Columns `c0..c0 + buf.len()` of `u_e = Σ_k m_ek Rel[r_k]`, summed in entry order from 0 (as
        /// [`super::cpu::GraphView::u`]).
        fn u_into(&self, rel: &[f32], d: usize, e: usize, c0: usize, buf: &mut [f32]) {
            buf.fill(0.0);
            let w = buf.len();
            for j in span(self.mix_offsets, e) {
                let m = self.mix_val[j];
                let row = &rel[self.mix_rel[j] as usize * d + c0..][..w];
                for (b, &v) in buf.iter_mut().zip(row) {
                    *b += m * v;
                }
            }
        }
    }

    /// Adds the products `[u·u, x·u, u·a]` of columns `c0..c0 + u.len()` (`c0` a multiple of 64) to the
    /// lane partial sums of [`super::cpu::wg_sum`].
    fn lanes_forward(acc: &mut [[f32; WG]; 3], u: &[f32], x: &[f32], a: &[f32]) {
        for ((u, x), a) in u.chunks(WG).zip(x.chunks(WG)).zip(a.chunks(WG)) {
            let len = u.len();
            let [uu, xu, ua] = acc;
            let (uu, xu, ua, x, a) = (&mut uu[..len], &mut xu[..len], &mut ua[..len], &x[..len], &a[..len]);
            for i in 0..len {
                let v = u[i];
                uu[i] += v * v;
                xu[i] += x[i] * v;
                ua[i] += v * a[i];
            }
        }
    }

    /// Adds the products `[g·u, g·x]` (as [`lanes_forward`]).
    fn lanes_backward(acc: &mut [[f32; WG]; 2], g: &[f32], u: &[f32], x: &[f32]) {
        for ((g, u), x) in g.chunks(WG).zip(u.chunks(WG)).zip(x.chunks(WG)) {
            let len = g.len();
            let [gu, gx] = acc;
            let (gu, gx, u, x) = (&mut gu[..len], &mut gx[..len], &u[..len], &x[..len]);
            for i in 0..len {
                gu[i] += g[i] * u[i];
                gx[i] += g[i] * x[i];
            }
        }
    }

    /// The tree of [`super::cpu::wg_sum`] over the 64 lane partial sums.
    fn tree<const K: usize>(mut acc: [[f32; WG]; K]) -> [f32; K] {
        let mut s = WG / 2;
        while s > 0 {
            for lanes in acc.iter_mut() {
                let (low, high) = lanes.split_at_mut(s);
                for (a, b) in low.iter_mut().zip(&high[..s]) {
                    *a += b;
                }
            }
            s /= 2;
        }
        acc.map(|lanes| lanes[0])
    }

    /// `[‖u‖, x_t·ρ, s]` from `[u·u, x_t·u, u·a]`.
    fn forward_scalars([uu, xu, ua]: [f32; 3]) -> [f32; 3] {
        let nrm = uu.sqrt();
        let nc = nrm.max(NORM_EPS);
        [nrm, xu / nc, ua / nc]
    }

    /// `[g_o·ρ, g_α]` from `[g_o·u, g_o·x_t]`.
    fn backward_scalars([p1, p2]: [f32; 2], nrm: f32, xr: f32) -> [f32; 2] {
        let gr = p1 / nrm.max(NORM_EPS);
        [gr, p2 - 2.0 * xr * gr]
    }

    /// Online softmax over one head's logits, in edge order: `(max, normaliser)`.
    fn softmax(s: impl Iterator<Item = f32>) -> (f32, f32) {
        let (mut m, mut z) = (0.0f32, 0.0f32);
        for (i, s) in s.enumerate() {
            if i == 0 {
                (m, z) = (s, 1.0);
            } else {
                let m2 = m.max(s);
                z = z * (m - m2).exp() + (s - m2).exp();
                m = m2;
            }
        }
        (m, z)
    }

    /// Per-edge `[‖u_e‖, x_t·ρ_e, s_e]`, `u_e` built 64 columns at a time on the stack.
    fn forward_edge(ar: &Arrays, x: &[f32], rel: &[f32], a: &[f32], d: usize, e: usize) -> [f32; 3] {
        let xt = &x[ar.edge_tail[e] as usize * d..][..d];
        let mut acc = [[0.0f32; WG]; 3];
        let mut ub = [0.0f32; WG];
        for c0 in (0..d).step_by(WG) {
            let len = WG.min(d - c0);
            ar.u_into(rel, d, e, c0, &mut ub[..len]);
            lanes_forward(&mut acc, &ub[..len], &xt[c0..][..len], &a[c0..][..len]);
        }
        forward_scalars(tree(acc))
    }

    /// Per-edge `[g_o[h]·ρ_e, g_α_e]` (backward pass A), as [`forward_edge`].
    fn backward_edge(ar: &Arrays, x: &[f32], rel: &[f32], g_o: &[f32], d: usize, e: usize, edge: EdgeScalars) -> [f32; 2] {
        let (go, xt) = (&g_o[ar.edge_head[e] as usize * d..][..d], &x[ar.edge_tail[e] as usize * d..][..d]);
        let mut acc = [[0.0f32; WG]; 2];
        let mut ub = [0.0f32; WG];
        for c0 in (0..d).step_by(WG) {
            let len = WG.min(d - c0);
            ar.u_into(rel, d, e, c0, &mut ub[..len]);
            lanes_backward(&mut acc, &go[c0..][..len], &ub[..len], &xt[c0..][..len]);
        }
        backward_scalars(tree(acc), edge.nrm[e], edge.xr[e])
    }

    /// The forward's per-edge scalars.
    #[derive(Clone, Copy)]
    struct EdgeScalars<'a> {
        alpha: &'a [f32],
        nrm: &'a [f32],
        xr: &'a [f32],
        s: &'a [f32],
    }

    impl<'a> EdgeScalars<'a> {
        fn new(edge: &'a [f32], t: usize) -> Self {
            EdgeScalars { alpha: &edge[..t], nrm: &edge[t..2 * t], xr: &edge[2 * t..3 * t], s: &edge[3 * t..4 * t] }
        }
    }

    /// `y_h[cols] += α (x_t − 2 (x_t·ρ) ρ)` for one edge, `u` = `u_e[cols]`.
    fn y_axpy(row: &mut [f32], alpha: f32, nrm: f32, xr: f32, xt: &[f32], u: &[f32]) {
        let (nc, two_xr) = (nrm.max(NORM_EPS), 2.0 * xr);
        for ((o, &xv), &uv) in row.iter_mut().zip(xt).zip(u) {
            *o += alpha * (xv - two_xr * (uv / nc));
        }
    }

    /// `part_h[cols] += g_s ρ` for one edge.
    fn part_axpy(row: &mut [f32], gs: f32, nrm: f32, u: &[f32]) {
        let nc = nrm.max(NORM_EPS);
        for (o, &uv) in row.iter_mut().zip(u) {
            *o += gs * (uv / nc);
        }
    }

    /// Rows `rows` × columns `cols` of a `[rows, d]` output, `out` holding them row-major.
    struct Task<'o> {
        rows: Range<usize>,
        cols: Range<usize>,
        out: &'o mut [f32],
    }

    /// Splits a zeroed `[n_rows, d]` output into tasks of about equal cost (`cost(row)` + 1 per row):
    /// consecutive light rows are grouped, a row costing at least twice the target (and so at least 128)
    /// is split into column blocks.
    fn tasks(out: &mut [f32], d: usize, n_rows: usize, cost: impl Fn(usize) -> usize) -> Vec<Task<'_>> {
        debug_assert!(d > 0);
        let mut tasks = Vec::new();
        let costs: Vec<usize> = (0..n_rows).map(|r| cost(r) + 1).collect();
        let target = (costs.iter().sum::<usize>() / TASKS).max(64);
        let mut rest = out;
        let (mut start, mut acc) = (0, 0);
        for (r, &c) in costs.iter().enumerate() {
            if c >= 2 * target && d >= 2 * MIN_COLS {
                if start < r {
                    let (block, tail) = std::mem::take(&mut rest).split_at_mut((r - start) * d);
                    rest = tail;
                    tasks.push(Task { rows: start..r, cols: 0..d, out: block });
                }
                let k = (c / target).min(d / MIN_COLS);
                let width = d.div_ceil(k).next_multiple_of(8);
                let (row, tail) = std::mem::take(&mut rest).split_at_mut(d);
                rest = tail;
                for (i, block) in row.chunks_mut(width).enumerate() {
                    let c0 = i * width;
                    tasks.push(Task { rows: r..r + 1, cols: c0..c0 + block.len(), out: block });
                }
                (start, acc) = (r + 1, 0);
            } else {
                acc += c;
                if acc >= target {
                    let (block, tail) = std::mem::take(&mut rest).split_at_mut((r + 1 - start) * d);
                    rest = tail;
                    tasks.push(Task { rows: start..r + 1, cols: 0..d, out: block });
                    (start, acc) = (r + 1, 0);
                }
            }
        }
        if start < n_rows {
            tasks.push(Task { rows: start..n_rows, cols: 0..d, out: rest });
        }
        tasks
    }

    /// Runs `f(row, cols, out_row, values, scratch)` for every row of every task, tasks in parallel, with
    /// one scratch vector per task; collects the `values` each task pushes, in task order.
    fn run_tasks<V, F>(tasks: Vec<Task<'_>>, f: F) -> Vec<V>
    where
        V: Send,
        F: Fn(usize, Range<usize>, &mut [f32], &mut Vec<V>, &mut Vec<f32>) + Send + Sync,
    {
        let per_task = crate::cpu::par_map_items(tasks, |task| {
            let (mut vals, mut scratch) = (Vec::new(), Vec::new());
            for (r, row) in task.rows.zip(task.out.chunks_exact_mut(task.cols.len())) {
                f(r, task.cols.clone(), row, &mut vals, &mut scratch);
            }
            vals
        });
        per_task.into_iter().flatten().collect()
    }

    /// A zeroed `[n_rows, d]` output filled by `f(row, cols, out_row, u_scratch)` over [`tasks`].
    fn build_rows<F>(n_rows: usize, d: usize, cost: impl Fn(usize) -> usize, f: F) -> Vec<f32>
    where
        F: Fn(usize, Range<usize>, &mut [f32], &mut [f32]) + Send + Sync,
    {
        let mut out = vec![0.0f32; n_rows * d];
        run_tasks::<(), _>(tasks(&mut out, d, n_rows, cost), |r, cols, row, _, u| {
            u.resize(cols.len(), 0.0);
            f(r, cols, row, u);
        });
        out
    }

    /// Forward: `(y [n, d], edge scalars [4, T] = α, ‖u‖, x_t·ρ, s)`, equal to [`super::cpu::forward`].
    pub fn forward(g: &GraphView, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act) -> (Vec<f32>, Vec<f32>) {
        if d == 0 {
            // No columns: only the softmax over zero logits is left, and the scratch layouts need d > 0.
            return super::cpu::forward(g, x, rel, a, d, act);
        }
        let (n, t) = (g.n, g.t);
        let ar = Arrays::new(g);
        let mut edge = vec![0.0f32; 4 * t];
        // Heavy heads: dot products in parallel over their edges, then the softmax.
        let heavy: Vec<usize> = (0..n).filter(|&h| ar.heavy(h)).collect();
        let heavy_edges: Vec<usize> = heavy.iter().flat_map(|&h| ar.out_edges(h)).collect();
        let sc = crate::cpu::par_map(heavy_edges.len(), |i| forward_edge(&ar, x, rel, a, d, heavy_edges[i]));
        for (&e, v) in heavy_edges.iter().zip(&sc) {
            for (k, &val) in v.iter().enumerate() {
                edge[(k + 1) * t + e] = val;
            }
        }
        for &h in &heavy {
            let (m, z) = softmax(ar.out_edges(h).map(|e| edge[3 * t + e]));
            for e in ar.out_edges(h) {
                edge[e] = (edge[3 * t + e] - m).exp() / z;
            }
        }
        // Rows; light heads compute their edges' scalars on the way: [α, ‖u‖, x_t·ρ, s] per edge.
        let mut y = vec![0.0f32; n * d];
        let light: Vec<[f32; 4]> = {
            let es = EdgeScalars::new(&edge, t);
            run_tasks(tasks(&mut y, d, n, |h| ar.out_edges(h).len()), |h, cols, row, out: &mut Vec<[f32; 4]>, u| {
                let edges = ar.out_edges(h);
                let w = cols.len();
                if ar.heavy(h) {
                    u.resize(w, 0.0);
                    for e in edges.clone() {
                        if e + 1 < edges.end {
                            ar.prefetch_u(rel, d, e + 1, &cols);
                            prefetch_row(x, d, ar.edge_tail[e + 1] as usize, &cols);
                        }
                        ar.u_into(rel, d, e, cols.start, u);
                        let xt = &x[ar.edge_tail[e] as usize * d + cols.start..][..w];
                        y_axpy(row, es.alpha[e], es.nrm[e], es.xr[e], xt, u);
                    }
                } else {
                    // A light head's row is never split: cols = 0..d.
                    u.resize(edges.len() * d, 0.0);
                    let first = out.len();
                    for (e, ue) in edges.clone().zip(u.chunks_exact_mut(d)) {
                        if e + 1 < t {
                            ar.prefetch_u(rel, d, e + 1, &cols);
                            prefetch_row(x, d, ar.edge_tail[e + 1] as usize, &cols);
                        }
                        ar.u_into(rel, d, e, 0, ue);
                        let mut acc = [[0.0f32; WG]; 3];
                        lanes_forward(&mut acc, ue, &x[ar.edge_tail[e] as usize * d..][..d], a);
                        let [nrm, xr, s] = forward_scalars(tree(acc));
                        out.push([0.0, nrm, xr, s]);
                    }
                    let (m, z) = softmax(out[first..].iter().map(|v| v[3]));
                    for (e, (v, ue)) in edges.zip(out[first..].iter_mut().zip(u.chunks_exact(d))) {
                        v[0] = (v[3] - m).exp() / z;
                        y_axpy(row, v[0], v[1], v[2], &x[ar.edge_tail[e] as usize * d..][..d], ue);
                    }
                }
                for v in row.iter_mut() {
                    *v = activate(act, *v);
                }
            })
        };
        let light_edges = (0..n).filter(|&h| !ar.heavy(h)).flat_map(|h| ar.out_edges(h));
        for (e, v) in light_edges.zip(light) {
            for (k, val) in v.into_iter().enumerate() {
                edge[k * t + e] = val;
            }
        }
        (y, edge)
    }

    /// Backward: `(g_x [n, d], g_rel [R, d], part [n, d])`, equal to [`super::cpu::backward`].
    pub fn backward(g: &GraphView, x: &[f32], rel: &[f32], a: &[f32], d: usize, edge: &[f32], g_o: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        if d == 0 {
            return (Vec::new(), Vec::new(), Vec::new());
        }
        let (n, t) = (g.n, g.t);
        let ar = Arrays::new(g);
        let es = EdgeScalars::new(edge, t);
        let (alpha, nrm, xr, s) = (es.alpha, es.nrm, es.xr, es.s);
        // Pass A. Per edge g_o·ρ and g_s (g_s_e = α_e (g_α_e − Σ_{e' ∈ out(h)} α_e' g_α_e')), and part[h] =
        // Σ_{e ∈ out(h)} g_s_e ρ_e. Heavy heads: dot products in parallel over their edges first.
        let (mut gr, mut gs) = (vec![0.0f32; t], vec![0.0f32; t]);
        let heavy: Vec<usize> = (0..n).filter(|&h| ar.heavy(h)).collect();
        let heavy_edges: Vec<usize> = heavy.iter().flat_map(|&h| ar.out_edges(h)).collect();
        let sc = crate::cpu::par_map(heavy_edges.len(), |i| backward_edge(&ar, x, rel, g_o, d, heavy_edges[i], es));
        for (&e, v) in heavy_edges.iter().zip(&sc) {
            (gr[e], gs[e]) = (v[0], v[1]);
        }
        for &h in &heavy {
            let mut sum = 0.0f32;
            for e in ar.out_edges(h) {
                sum += alpha[e] * gs[e];
            }
            for e in ar.out_edges(h) {
                gs[e] = alpha[e] * (gs[e] - sum);
            }
        }
        let mut part = vec![0.0f32; n * d];
        let light: Vec<[f32; 2]> = run_tasks(tasks(&mut part, d, n, |h| ar.out_edges(h).len()), |h, cols, row, out: &mut Vec<[f32; 2]>, u| {
            let edges = ar.out_edges(h);
            let w = cols.len();
            if ar.heavy(h) {
                u.resize(w, 0.0);
                for e in edges.clone() {
                    if e + 1 < edges.end {
                        ar.prefetch_u(rel, d, e + 1, &cols);
                    }
                    ar.u_into(rel, d, e, cols.start, u);
                    part_axpy(row, gs[e], nrm[e], u);
                }
            } else {
                let go = &g_o[h * d..][..d];
                u.resize(edges.len() * d, 0.0);
                let first = out.len();
                let mut sum = 0.0f32;
                for (e, ue) in edges.clone().zip(u.chunks_exact_mut(d)) {
                    if e + 1 < t {
                        ar.prefetch_u(rel, d, e + 1, &cols);
                        prefetch_row(x, d, ar.edge_tail[e + 1] as usize, &cols);
                    }
                    ar.u_into(rel, d, e, 0, ue);
                    let mut acc = [[0.0f32; WG]; 2];
                    lanes_backward(&mut acc, go, ue, &x[ar.edge_tail[e] as usize * d..][..d]);
                    let [gre, gae] = backward_scalars(tree(acc), nrm[e], xr[e]);
                    sum += alpha[e] * gae;
                    out.push([gre, gae]);
                }
                for (e, (v, ue)) in edges.zip(out[first..].iter_mut().zip(u.chunks_exact(d))) {
                    v[1] = alpha[e] * (v[1] - sum);
                    part_axpy(row, v[1], nrm[e], ue);
                }
            }
        });
        let light_edges = (0..n).filter(|&h| !ar.heavy(h)).flat_map(|h| ar.out_edges(h));
        for (e, v) in light_edges.zip(light) {
            (gr[e], gs[e]) = (v[0], v[1]);
        }
        // Pass B, per tail: g_x[t] = Σ_{e into t} α_e (g_o[h] − 2 (g_o[h]·ρ_e) ρ_e).
        let g_x = build_rows(
            n,
            d,
            |tl| span(ar.tail_offsets, tl).len(),
            |tl, cols, row, u| {
                let ks = span(ar.tail_offsets, tl);
                for k in ks.clone() {
                    let e = ar.tail_edges[k] as usize;
                    if let Some(&next) = ar.tail_edges.get(k + 1) {
                        ar.prefetch_u(rel, d, next as usize, &cols);
                        prefetch_row(g_o, d, ar.edge_head[next as usize] as usize, &cols);
                    }
                    let (al, nc, two_gr) = (alpha[e], nrm[e].max(NORM_EPS), 2.0 * gr[e]);
                    ar.u_into(rel, d, e, cols.start, u);
                    let go = &g_o[ar.edge_head[e] as usize * d + cols.start..][..cols.len()];
                    for ((o, &gv), &uv) in row.iter_mut().zip(go).zip(u.iter()) {
                        *o += al * (gv - two_gr * (uv / nc));
                    }
                }
            },
        );
        // Pass C, per relation: g_Rel[r] = Σ_{(e, m)} m g_u_e, g_u_e = (g_ρ_e − (g_ρ_e·ρ_e) ρ_e) / ‖u_e‖.
        let g_rel = build_rows(
            g.r,
            d,
            |r| span(ar.rel_offsets, r).len(),
            |r, cols, row, u| {
                let av = &a[cols.clone()];
                let entries = span(ar.rel_offsets, r);
                for k in entries {
                    let (e, w) = (ar.rel_edges[k] as usize, ar.rel_val[k]);
                    if let Some(&next) = ar.rel_edges.get(k + 1) {
                        let next = next as usize;
                        ar.prefetch_u(rel, d, next, &cols);
                        prefetch_row(g_o, d, ar.edge_head[next] as usize, &cols);
                        prefetch_row(x, d, ar.edge_tail[next] as usize, &cols);
                    }
                    let nc = nrm[e].max(NORM_EPS);
                    let (m2a, xre, gre, gse) = (-2.0 * alpha[e], xr[e], gr[e], gs[e]);
                    let c = if nrm[e] >= NORM_EPS { -4.0 * alpha[e] * xr[e] * gr[e] + gs[e] * s[e] } else { 0.0 };
                    ar.u_into(rel, d, e, cols.start, u);
                    let go = &g_o[ar.edge_head[e] as usize * d + cols.start..][..cols.len()];
                    let xt = &x[ar.edge_tail[e] as usize * d + cols.start..][..cols.len()];
                    for ((((o, &gv), &xv), &aj), &uv) in row.iter_mut().zip(go).zip(xt).zip(av).zip(u.iter()) {
                        let g_rho = m2a * (xre * gv + gre * xv) + gse * aj;
                        *o += w * ((g_rho - c * (uv / nc)) / nc);
                    }
                }
            },
        );
        (g_x, g_rel, part)
    }
}
