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
//! no atomics. CPU twin: [`cpu`], which follows the shaders' summation order (including the workgroup tree
//! reductions) so both backends agree to rounding.

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

fn fits_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// Stable counting sort of `keys` (all `< n`): `(offsets [n + 1], perm)` with perm listing positions
/// grouped by key, ascending within a key.
fn group_by(keys: &[u32], n: usize) -> (Vec<u32>, Vec<u32>) {
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
        Ok(RelGraph {
            index: Tensor::from_u32(device, index, &[ilen])?,
            weights: Tensor::from_f32(device, weights, &[wlen])?,
            layout,
            n,
            num_rel,
            num_edges: t_count,
            nnz,
        })
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
        Ok(cpu::GraphView {
            layout: self.layout,
            index: self.index.cpu_u32(op)?,
            weights: self.weights.cpu_f32(op)?,
            n: self.n,
            t: self.num_edges,
            r: self.num_rel,
        })
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
    let d = check_inputs(OP, graph, x, rel, a)?;
    let (n, t) = (graph.n, graph.num_edges);
    match common_device(OP, &[&graph.index, &graph.weights, x, rel, a])? {
        Device::Cpu => {
            let (y, edge) = cpu::forward(&graph.cpu_view(OP)?, x.cpu_f32(OP)?, rel.cpu_f32(OP)?, a.cpu_f32(OP)?, d, act);
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
pub fn reflection_attention_backward(
    graph: &RelGraph,
    x: &Tensor,
    rel: &Tensor,
    a: &Tensor,
    act: Act,
    saved: &ReflectionSaved,
    g_y: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "reflection_attention_backward";
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
            let (g_x, g_rel, part) =
                cpu::backward(&view, x.cpu_f32(OP)?, rel.cpu_f32(OP)?, a.cpu_f32(OP)?, d, saved.edge.cpu_f32(OP)?, g_o.cpu_f32(OP)?);
            let g_a = crate::ops::reduce::cpu::sum_rows(&part, n, d);
            Ok((
                Tensor::from_f32(&Device::Cpu, g_x, &[n, d])?,
                Tensor::from_f32(&Device::Cpu, g_rel, &[r, d])?,
                Tensor::from_f32(&Device::Cpu, g_a, &[d])?,
            ))
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

    /// [`super::reflection_attention`] on the tape; gradients flow to `x`, `rel` and `a`. Saves the inputs
    /// and the per-edge scalars (`4T` floats), never a `T × d` tensor.
    pub fn reflection_attention(tape: &Tape, graph: &RelGraph, x: &Var, rel: &Var, a: &Var, act: Act) -> Result<Var> {
        let (y, saved) = super::reflection_attention(graph, &x.value, &rel.value, &a.value, act)?;
        let (g, xv, rv, av) = (graph.clone(), x.value.clone(), rel.value.clone(), a.value.clone());
        Ok(tape.record(y, &[x, rel, a], move |g_y| {
            let (gx, gr, ga) = super::reflection_attention_backward(&g, &xv, &rv, &av, act, &saved, g_y)?;
            Ok(vec![Some(gx), Some(gr), Some(ga)])
        }))
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
