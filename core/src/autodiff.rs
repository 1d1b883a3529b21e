//! Reverse-mode differentiation over the ops: a tape.
//!
//! Every op applied through a [`Tape`] records one node: its output, the ids of its inputs, and a backward
//! closure that owns exactly the state the backward kernels need (saved inputs, outputs or intermediates)
//! and maps the gradient of the output to gradients of the inputs, using the same tensor ops (so backward
//! runs on the GPU when the forward did). [`Tape::backward`] walks the nodes in reverse creation order,
//! which is a topological order, and **sums** gradients that reach a variable along several paths
//! (a tensor used twice). Nodes that no trainable leaf depends on are skipped.
//!
//! The backward rules live beside their forward ops (`ops::*` has `*_backward` functions); the thin
//! wrappers in [`ad`] wire them to the tape.

use std::cell::RefCell;

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    parents: Vec<usize>,
    backward: Option<BackwardFn>,
    needs_grad: bool,
}

/// A value recorded on a tape.
#[derive(Clone, Debug)]
pub struct Var {
    id: usize,
    pub value: Tensor,
    needs_grad: bool,
}

impl Var {
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    pub fn needs_grad(&self) -> bool {
        self.needs_grad
    }
}

/// The tape. Build one per training step; drop it after `backward` to free the saved state.
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
}

/// Gradients by variable id.
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient of the loss with respect to `v` (None if the loss does not depend on it).
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.grads.get(v.id).and_then(|g| g.as_ref())
    }
    /// Take ownership of a gradient.
    pub fn take(&mut self, v: &Var) -> Option<Tensor> {
        self.grads.get_mut(v.id).and_then(|g| g.take())
    }
}

impl Tape {
    pub fn new() -> Self {
        Self::default()
    }

    fn push_node(&self, node: Node) -> usize {
        let mut n = self.nodes.borrow_mut();
        n.push(node);
        n.len() - 1
    }

    /// A trainable input: gradients flow to it.
    pub fn param(&self, t: &Tensor) -> Var {
        let id = self.push_node(Node { parents: vec![], backward: None, needs_grad: true });
        Var { id, value: t.clone(), needs_grad: true }
    }

    /// A constant input: no gradient is computed for it or for anything that depends only on constants.
    pub fn constant(&self, t: &Tensor) -> Var {
        let id = self.push_node(Node { parents: vec![], backward: None, needs_grad: false });
        Var { id, value: t.clone(), needs_grad: false }
    }

    /// Record an op's output. `backward` maps dL/d(output) to dL/d(parent) for each parent, in order
    /// (None where a parent gets no gradient).
    pub fn record(&self, value: Tensor, parents: &[&Var], backward: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static) -> Var {
        let needs_grad = parents.iter().any(|p| p.needs_grad);
        let id = self.push_node(Node { parents: parents.iter().map(|p| p.id).collect(), backward: if needs_grad { Some(Box::new(backward)) } else { None }, needs_grad });
        Var { id, value, needs_grad }
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gradients of `loss` (seeded with ones of its shape; normally a `[1]` scalar).
    pub fn backward(&self, loss: &Var) -> Result<Gradients> {
        let ones = Tensor::full(&loss.value.device(), loss.value.shape(), 1.0)?;
        self.backward_with(loss, ones)
    }

    /// Gradients of `⟨seed, output⟩`: backward from an arbitrary output gradient.
    pub fn backward_with(&self, output: &Var, seed: Tensor) -> Result<Gradients> {
        if seed.shape() != output.value.shape() {
            return Err(Error::shape("backward", "seed gradient must match the output", &[seed.shape(), output.value.shape()]));
        }
        let _phase = crate::profile::backward_phase();
        let nodes = self.nodes.borrow();
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
        grads[output.id] = Some(seed);
        for id in (0..=output.id).rev() {
            let node = &nodes[id];
            let (Some(bw), true) = (&node.backward, node.needs_grad) else { continue };
            // Intermediate gradients are freed as soon as they are consumed; leaves keep theirs.
            let Some(g) = grads[id].take() else { continue };
            let pgrads = bw(&g)?;
            if pgrads.len() != node.parents.len() {
                return Err(Error::invalid("backward", format!("node {id} returned {} gradients for {} inputs", pgrads.len(), node.parents.len())));
            }
            for (&pid, pg) in node.parents.iter().zip(pgrads) {
                let Some(pg) = pg else { continue };
                if !nodes[pid].needs_grad {
                    continue;
                }
                grads[pid] = Some(match grads[pid].take() {
                    None => pg,
                    Some(acc) => ops::add_into(acc, &pg)?,
                });
            }
        }
        Ok(Gradients { grads })
    }
}

/// Tape wrappers for the ops. Each forward call saves what its backward needs in the closure.
pub mod ad {
    use super::{Tape, Var};
    use crate::error::Result;
    use crate::ops::{self, Unary};

    /// `y = f(x)`; saves x and y.
    pub fn unary(tape: &Tape, f: Unary, x: &Var) -> Result<Var> {
        let y = ops::unary(f, &x.value)?;
        let (xs, ys) = (x.value.clone(), y.clone());
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(ops::unary_backward(f, &xs, &ys, g)?)])))
    }

    pub fn add(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
        let y = ops::add(&a.value, &b.value)?;
        Ok(tape.record(y, &[a, b], |g| Ok(vec![Some(g.clone()), Some(g.clone())])))
    }

    pub fn sub(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
        let y = ops::sub(&a.value, &b.value)?;
        Ok(tape.record(y, &[a, b], |g| Ok(vec![Some(g.clone()), Some(ops::scale(g, -1.0)?)])))
    }

    /// `a ⊙ b`; saves both operands.
    pub fn mul(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
        let y = ops::mul(&a.value, &b.value)?;
        let (av, bv) = (a.value.clone(), b.value.clone());
        Ok(tape.record(y, &[a, b], move |g| Ok(vec![Some(ops::mul(g, &bv)?), Some(ops::mul(g, &av)?)])))
    }

    pub fn scale(tape: &Tape, x: &Var, s: f32) -> Result<Var> {
        let y = ops::scale(&x.value, s)?;
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(ops::scale(g, s)?)])))
    }

    /// `X W + b`; saves X and W. `g_X` is only computed when X needs a gradient (a constant input such
    /// as a feature matrix saves one N×k×d matmul per step).
    pub fn linear(tape: &Tape, x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
        let y = ops::linear(&x.value, &w.value, b.map(|b| &b.value))?;
        let (xv, wv, has_b, need_x) = (x.value.clone(), w.value.clone(), b.is_some(), x.needs_grad());
        let mut parents = vec![x, w];
        parents.extend(b);
        Ok(tape.record(y, &parents, move |g| {
            let gx = if need_x { Some(ops::matmul_ex(g, &wv, None, false, true, 1.0)?) } else { None };
            let gw = ops::matmul_ex(&xv, g, None, true, false, 1.0)?;
            let gb = if has_b { Some(ops::sum_rows(g)?) } else { None };
            let mut v = vec![gx, Some(gw)];
            if has_b {
                v.push(gb);
            }
            Ok(v)
        }))
    }

    /// `op(A) op(B)` for 2-D operands; saves A and B.
    pub fn matmul(tape: &Tape, a: &Var, b: &Var, ta: bool, tb: bool) -> Result<Var> {
        let y = ops::matmul_ex(&a.value, &b.value, None, ta, tb, 1.0)?;
        let (av, bv) = (a.value.clone(), b.value.clone());
        Ok(tape.record(y, &[a, b], move |g| {
            let (ga, gb) = ops::matmul_backward(&av, &bv, g, ta, tb)?;
            Ok(vec![Some(ga), Some(gb)])
        }))
    }

    /// The same elements under another shape; the backward reshapes the gradient back.
    pub fn reshape(tape: &Tape, x: &Var, shape: &[usize]) -> Result<Var> {
        let y = x.value.reshape(shape)?;
        let back = x.value.shape().to_vec();
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(g.reshape(&back)?)])))
    }

    /// `s[0] · x` for a one-element `s`; saves both (`g_s = Σ g ⊙ x`, `g_x = s g`).
    pub fn scale_by(tape: &Tape, s: &Var, x: &Var) -> Result<Var> {
        let y = ops::scale_by(&s.value, &x.value)?;
        let (sv, xv) = (s.value.clone(), x.value.clone());
        let (need_s, need_x) = (s.needs_grad(), x.needs_grad());
        Ok(tape.record(y, &[s, x], move |g| {
            let gs = if need_s { Some(ops::sum_all(&ops::mul(g, &xv)?)?.reshape(sv.shape())?) } else { None };
            let gx = if need_x { Some(ops::scale_by(&sv, g)?) } else { None };
            Ok(vec![gs, gx])
        }))
    }

    /// `t_0 + t_1 + …`, added left to right (an error for no terms).
    pub fn add_all(tape: &Tape, terms: &[Var]) -> Result<Var> {
        let (first, rest) = terms.split_first().ok_or_else(|| crate::error::Error::invalid("add_all", "nothing to add"))?;
        rest.iter().try_fold(first.clone(), |acc, t| add(tape, &acc, t))
    }

    /// Sum of all elements, a `[1]` scalar.
    pub fn sum(tape: &Tape, x: &Var) -> Result<Var> {
        let y = ops::sum_all(&x.value)?;
        let shape = x.value.shape().to_vec();
        let dev = x.value.device();
        Ok(tape.record(y, &[x], move |g| {
            let ones = crate::tensor::Tensor::full(&dev, &shape, 1.0)?;
            Ok(vec![Some(ops::scale_by(g, &ones)?)])
        }))
    }
}
