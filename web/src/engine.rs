//! The demo's engine: a checkpoint opened against the embedded demo pair, its forward pass, and every
//! view's computation, through mmea-core on whatever device it is given (WebGPU in the browser, the CPU
//! twin as the fallback, any backend in native tests). Answers are JSON values for the page.
//!
//! At load time the forward pass runs once (keeping each reflection layer's attention weights), and the
//! source × target score matrices (cosine, CSLS, Sinkhorn) are computed on the device with the same
//! kernels `mmea eval` uses, then kept on the host, so that a query about one entity only reads rows.
//! Plain top-k lists come from `model::align::top_candidates`, the kernel behind `mmea align`, so the
//! page's top-1 equals the native alignment's.

use std::collections::HashMap;

use mmea_core::data::{self, Dataset};
use mmea_core::evaluate::{evaluate_normalized_blocks, EvalReport};
use mmea_core::model::align::{normalized_blocks, top_candidates, Candidates};
use mmea_core::model::checkpoint::{self, Opened};
use mmea_core::model::{tape_vars, CheckpointData};
use mmea_core::ops::eval::{csls, similarity_tiles_blocks};
use mmea_core::ops::sinkhorn::sinkhorn;
use mmea_core::ops::{concat_cols, matmul_ex};
use mmea_core::{autodiff::Tape, Device, Error, Result, Tensor};
use serde_json::{json, Value};

/// How many candidates each ranking lists.
pub const TOP: usize = 10;
/// Neighbours drawn around an entity (the strongest by attention).
pub const MAX_NEIGHBOURS: usize = 14;

/// A checkpoint, opened and run: everything the views read.
pub struct Engine {
    pub ds: Dataset,
    pub opened: Opened,
    pub device: Device,
    /// The file name the checkpoint came from.
    pub source: String,
    /// Joint embedding column blocks, rows of all sources / all targets scaled to unit joint length.
    pub p: Vec<Tensor>,
    pub q: Vec<Tensor>,
    /// `[n1 × n2]` row-major scores on the host: cosine, CSLS, Sinkhorn log-plan.
    pub cosine: Vec<f32>,
    pub csls: Vec<f32>,
    pub sinkhorn: Vec<f32>,
    /// Plain top-`TOP` over all targets, from the `mmea align` kernel.
    pub plain: Candidates,
    /// Per entity modality weights ω `[N × M]` (when the model has them) and the global σ `[M]`.
    pub omega: Option<Vec<f32>>,
    pub sigma: Option<Vec<f32>>,
    /// Per-entity, per-modality extras `[N × M]` that explain the weights: MIMEA-style's Beta parameters
    /// (`beta.log_alpha`, `beta.log_beta`), weights before calibration (`weights.raw`), uncertainties.
    pub weight_extras: HashMap<String, Vec<f32>>,
    /// Attention weights per reflection layer, in the graph's edge order.
    pub attention: Vec<(String, Vec<f32>)>,
    /// Out-edge offsets by head into `opened.features.rel_graph.edges`.
    pub head_offsets: Vec<u32>,
    /// KG1 index → KG2 index of the gold links, and the part (train/dev/test) of each KG1 entity's pair.
    pub gold: HashMap<u32, u32>,
    pub part: HashMap<u32, &'static str>,
}

fn err(what: &'static str, detail: impl Into<String>) -> Error {
    Error::InvalidArgument { op: what, detail: detail.into() }
}

/// A short label for an entity URI: its last path segment with `_` as spaces.
pub fn label(uri: &str) -> String {
    uri.rsplit('/').next().unwrap_or(uri).replace('_', " ")
}

impl Engine {
    /// Opens checkpoint `bytes` (named `source` in messages) against the embedded demo pair on `device`
    /// and runs everything the views need.
    pub async fn load(device: Device, source: &str, bytes: &[u8]) -> Result<Engine> {
        let ds = data::demo()?;
        let ck = CheckpointData::parse(source, bytes)?;
        let spec = checkpoint::CheckpointSpec::read(source, &ck)?;
        if spec.data != "demo" {
            return Err(Error::Format {
                path: source.into(),
                detail: format!("it was trained on `{}`; the browser demo carries only the embedded demo pair, so it opens checkpoints trained with `--data demo`", spec.data),
            });
        }
        let opened = checkpoint::open(source, &ck, &ds, None, &device)?;
        let (model, params, inputs) = (&opened.model, &opened.params, &opened.inputs);

        // Forward pass, keeping the attention weights and the modality weights.
        let tape = Tape::new();
        let (_, vars) = tape_vars(&tape, params, false);
        let out = model.forward_explained(&tape, &vars, inputs)?;
        let blocks: Vec<Tensor> = out.blocks.iter().map(|b| b.value.clone()).collect();
        let omega = match &out.omega {
            Some(o) => Some(o.value.to_vec_f32().await?),
            None => None,
        };
        let sigma = match &out.sigma {
            Some(s) => Some(s.value.to_vec_f32().await?),
            None => None,
        };
        let mut weight_extras = HashMap::new();
        for (name, v) in &out.extra {
            if name.starts_with("beta.") || name.starts_with("weights.") {
                weight_extras.insert(name.clone(), v.value.to_vec_f32().await?);
            }
        }
        let mut attention = Vec::new();
        for (name, a) in &out.attention {
            attention.push((name.clone(), a.to_vec_f32().await?));
        }
        drop(out);
        drop(tape);

        let (n1, n) = (inputs.n1 as u32, inputs.n as u32);
        let src: Vec<u32> = (0..n1).collect();
        let tgt: Vec<u32> = (n1..n).collect();
        let p = normalized_blocks(&blocks, &src).await?;
        let q = normalized_blocks(&blocks, &tgt).await?;
        let plain = top_candidates(&p, &q, TOP.min(tgt.len())).await?;
        let s = similarity_tiles_blocks(&p, &q, src.len())?;
        let cosine = s.to_vec_f32().await?;
        let k = opened.spec.train.csls_k.clamp(1, tgt.len().min(src.len()));
        let csls_m = csls(&s, k)?.to_vec_f32().await?;
        let st = opened.spec.train;
        let sink = sinkhorn(&s, st.sinkhorn_eps, st.sinkhorn_iters)?.log_plan.to_vec_f32().await?;

        let head_offsets = opened.features.rel_graph.head_offsets();
        let gold: HashMap<u32, u32> = ds.links.iter().copied().collect();
        let mut part = HashMap::new();
        for (name, pairs) in [("train", &opened.split.train), ("dev", &opened.split.dev), ("test", &opened.split.test)] {
            for &(l, _) in pairs.iter() {
                part.insert(l, name);
            }
        }
        Ok(Engine {
            ds,
            device,
            source: source.to_string(),
            p,
            q,
            cosine,
            csls: csls_m,
            sinkhorn: sink,
            plain,
            omega,
            sigma,
            weight_extras,
            attention,
            head_offsets,
            gold,
            part,
            opened,
        })
    }

    pub fn n1(&self) -> usize {
        self.opened.inputs.n1
    }

    pub fn n2(&self) -> usize {
        self.opened.inputs.n - self.opened.inputs.n1
    }

    fn modality_names(&self) -> Vec<&'static str> {
        self.opened.model.modalities().iter().map(|m| m.name()).collect()
    }

    /// What was loaded: the setting, the model, the recorded metrics, the source entities for search.
    pub fn summary(&self) -> Value {
        let o = &self.opened;
        let recorded: Value = o.metadata.get("metrics").and_then(|m| serde_json::from_str(m).ok()).unwrap_or(Value::Null);
        let sources: Vec<Value> = (0..self.n1())
            .map(|i| {
                let uri = &self.ds.entities.names[i];
                json!([label(uri), self.part.get(&(i as u32)).copied().unwrap_or("")])
            })
            .collect();
        json!({
            "source": self.source,
            "dataset": self.ds.name,
            "entities": [self.n1(), self.n2()],
            "relations": self.ds.relations.len(),
            "triples": [self.ds.triples[0].len(), self.ds.triples[1].len()],
            "split": { "train": o.split.train.len(), "dev": o.split.dev.len(), "test": o.split.test.len(), "source": o.split.source },
            "modalities": self.modality_names(),
            "notes": o.inputs.notes,
            "model": serde_json::to_value(&o.spec.model).map(|v| v["model"].clone()).unwrap_or(Value::Null),
            "model_name": o.spec.model.name(),
            "command": o.spec.command,
            "epoch": o.metadata.get("epoch"),
            "parameters": o.params.numel(),
            "blocks": self.p.len(),
            "joint_dim": self.p.iter().map(|b| b.shape()[1]).sum::<usize>(),
            "eval": { "csls_k": o.spec.train.csls_k, "sinkhorn_eps": o.spec.train.sinkhorn_eps, "sinkhorn_iters": o.spec.train.sinkhorn_iters },
            "recorded_metrics": recorded,
            "sources": sources,
        })
    }

    /// The test-set evaluation of mmea-spec §2 (what `mmea eval` prints), computed here on the device from
    /// the load's forward pass: the test pairs' rows of the unit-row blocks are exactly those
    /// `checkpoint::evaluate_model` would compute (row normalisation is per row), without a second forward.
    pub async fn metrics(&self) -> Result<EvalReport> {
        let o = &self.opened;
        if o.split.test.is_empty() {
            return Err(err("metrics", "the checkpoint's split has no test pairs"));
        }
        let n1 = self.n1() as u32;
        let left: Vec<u32> = o.split.test.iter().map(|p| p.0).collect();
        let right: Vec<u32> = o.split.test.iter().map(|p| p.1 - n1).collect();
        evaluate_normalized_blocks(&gather_blocks(&self.p, &left)?, &gather_blocks(&self.q, &right)?, &o.spec.train.options(true)).await
    }

    /// The best `TOP` targets of source row `i` in a host score matrix.
    fn top_of(&self, m: &[f32], i: usize) -> Vec<(u32, f32)> {
        let n2 = self.n2();
        let row = &m[i * n2..(i + 1) * n2];
        let mut idx: Vec<u32> = (0..n2 as u32).collect();
        // Best first; ties to the lower index (as the top-k kernel breaks them).
        idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        idx.truncate(TOP);
        idx.into_iter().map(|j| (j, row[j as usize])).collect()
    }

    fn candidate_list(&self, i: usize, list: &[(u32, f32)]) -> Vec<Value> {
        let n1 = self.n1() as u32;
        let gold = self.gold.get(&(i as u32)).copied();
        list.iter()
            .map(|&(j, score)| {
                let e = n1 + j;
                json!({ "target": j, "label": label(&self.ds.entities.names[e as usize]), "uri": self.ds.entities.names[e as usize], "score": score, "gold": gold == Some(e) })
            })
            .collect()
    }

    fn check_source(&self, i: usize) -> Result<()> {
        if i >= self.n1() {
            return Err(err("entity", format!("source index {i} is out of range (KG1 has {} entities)", self.n1())));
        }
        Ok(())
    }

    /// One source entity: its rankings (plain, CSLS, Sinkhorn), modality weights and neighbourhood.
    pub fn entity(&self, i: usize) -> Result<Value> {
        self.check_source(i)?;
        let n1 = self.n1();
        let k = self.plain.k;
        let plain: Vec<(u32, f32)> = (0..k).map(|j| (self.plain.cols[i * k + j], self.plain.scores[i * k + j])).collect();
        let gold = self.gold.get(&(i as u32)).map(|&g| {
            let j = g as usize - n1;
            let rank = |m: &[f32]| {
                let row = &m[i * self.n2()..(i + 1) * self.n2()];
                1 + row.iter().enumerate().filter(|&(c, v)| *v > row[j] || (*v == row[j] && c < j)).count()
            };
            json!({ "target": j, "label": label(&self.ds.entities.names[g as usize]), "uri": self.ds.entities.names[g as usize],
                    "rank": { "plain": rank(&self.cosine), "csls": rank(&self.csls), "sinkhorn": rank(&self.sinkhorn) } })
        });
        let mods = self.opened.model.modalities();
        let weights = mods.iter().enumerate().map(|(m, name)| {
            json!({
                "modality": name.name(),
                "omega": self.omega.as_ref().map(|o| o[i * mods.len() + m]),
                "sigma": self.sigma.as_ref().map(|s| s[m]),
                "beta": self.beta_gate(i, m, mods.len()),
                "before_calibration": self.weight_extras.get("weights.raw").map(|w| w[i * mods.len() + m]),
                "uncertainty": self.weight_extras.get("weights.uncertainty").map(|w| w[i * mods.len() + m]),
            })
        });
        // MCLEA- and EVA-style weigh the structure view too: its σ comes after the modalities'.
        let structure = self
            .sigma
            .as_ref()
            .filter(|s| s.len() == mods.len() + 1)
            .map(|s| json!({ "modality": "structure", "omega": null, "sigma": s[mods.len()], "beta": null, "before_calibration": null, "uncertainty": null }));
        let weights: Vec<serde_json::Value> = weights.chain(structure).collect();
        Ok(json!({
            "index": i,
            "label": label(&self.ds.entities.names[i]),
            "uri": self.ds.entities.names[i],
            "part": self.part.get(&(i as u32)),
            "gold": gold,
            "plain": self.candidate_list(i, &plain),
            "csls": self.candidate_list(i, &self.top_of(&self.csls, i)),
            "sinkhorn": self.candidate_list(i, &self.top_of(&self.sinkhorn, i)),
            "weights": weights,
            "adaptive_weights": self.omega.is_some(),
            "neighbours": self.neighbours(i),
        }))
    }

    /// MIMEA-style's gate of entity `i`, modality `m`: Beta(α, β) with its mean and standard deviation.
    fn beta_gate(&self, i: usize, m: usize, mm: usize) -> Option<Value> {
        let a = self.weight_extras.get("beta.log_alpha")?[i * mm + m].exp() as f64;
        let b = self.weight_extras.get("beta.log_beta")?[i * mm + m].exp() as f64;
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        Some(json!({ "alpha": a, "beta": b, "mean": mean, "sd": sd }))
    }

    /// The out-edges of entity `e` (both directions of every triple are edges), strongest attention first.
    fn neighbours(&self, e: usize) -> Value {
        let g = &self.opened.features.rel_graph;
        let (a, b) = (self.head_offsets[e] as usize, self.head_offsets[e + 1] as usize);
        let r_prime = self.ds.relations.len() + 1;
        let rel_name = |id: u32| -> String {
            let id = id as usize;
            if (1..r_prime).contains(&id) {
                label(&self.ds.relations.names[id - 1])
            } else if id > r_prime && id - r_prime - 1 < self.ds.relations.len() {
                format!("{} (inverse)", label(&self.ds.relations.names[id - r_prime - 1]))
            } else {
                format!("relation {id}")
            }
        };
        let mut edges: Vec<Value> = (a..b)
            .map(|k| {
                let (_, t) = g.edges[k];
                let alpha: Vec<Value> = self.attention.iter().map(|(name, w)| json!({ "layer": name, "alpha": w[k] })).collect();
                json!({
                    "tail": t,
                    "label": label(&self.ds.entities.names[t as usize]),
                    "relations": g.mixing[k].iter().map(|&(r, w)| json!({ "name": rel_name(r), "weight": w })).collect::<Vec<_>>(),
                    "alpha": alpha,
                })
            })
            .collect();
        let key = |v: &Value| v["alpha"].as_array().and_then(|a| a.last()).and_then(|x| x["alpha"].as_f64()).unwrap_or(0.0);
        edges.sort_by(|x, y| key(y).total_cmp(&key(x)));
        let total = edges.len();
        edges.truncate(MAX_NEIGHBOURS);
        json!({ "total": total, "shown": edges, "layers": self.attention.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() })
    }

    /// Sinkhorn step by step on a block of `size` test pairs around source `i` (its own pair first when it
    /// has one, then the pairs whose targets `i` finds most similar), gold on the diagonal. Returns the
    /// plan after each of `0..=iters` iterations, scaled so that rows and columns should sum to 1.
    pub async fn sinkhorn_steps(&self, i: usize, size: usize, iters: usize, eps: f32) -> Result<Value> {
        self.check_source(i)?;
        if !(2..=32).contains(&size) || iters > 50 || !(eps.is_finite() && eps > 0.0) {
            return Err(err("sinkhorn steps", "size must be in 2..=32, iterations at most 50, eps positive"));
        }
        let n1 = self.n1();
        let n2 = self.n2();
        let row = &self.cosine[i * n2..(i + 1) * n2];
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        if let Some(&g) = self.gold.get(&(i as u32)) {
            pairs.push((i as u32, g - n1 as u32));
        }
        // The other pairs: those whose targets `i` scores highest (the confusable ones).
        let mut by_target: Vec<(u32, u32)> = self.ds.links.iter().map(|&(l, r)| (l, r - n1 as u32)).filter(|&(l, _)| l as usize != i).collect();
        by_target.sort_by(|a, b| row[b.1 as usize].total_cmp(&row[a.1 as usize]).then(a.cmp(b)));
        pairs.extend(by_target.into_iter().take(size.saturating_sub(pairs.len())));
        let rows: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let cols: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let b = pairs.len();
        let pr = gather_blocks(&self.p, &rows)?;
        let qc = gather_blocks(&self.q, &cols)?;
        let s = similarity_tiles_blocks(&pr, &qc, b)?;
        let scores = s.to_vec_f32().await?;
        let mut steps = Vec::with_capacity(iters + 1);
        for t in 0..=iters {
            let plan = sinkhorn(&s, eps, t)?.plan()?.to_vec_f32().await?;
            // Uniform marginals are 1/b each; scale by b so a doubly stochastic plan has unit sums.
            let scaled: Vec<f32> = plan.iter().map(|v| v * b as f32).collect();
            let row_sums: Vec<f32> = (0..b).map(|r| scaled[r * b..(r + 1) * b].iter().sum()).collect();
            let col_sums: Vec<f32> = (0..b).map(|c| (0..b).map(|r| scaled[r * b + c]).sum()).collect();
            steps.push(json!({ "iteration": t, "plan": scaled, "row_sums": row_sums, "col_sums": col_sums }));
        }
        Ok(json!({
            "size": b,
            "eps": eps,
            "rows": rows.iter().map(|&r| label(&self.ds.entities.names[r as usize])).collect::<Vec<_>>(),
            "cols": cols.iter().map(|&c| label(&self.ds.entities.names[n1 + c as usize])).collect::<Vec<_>>(),
            "scores": scores,
            "steps": steps,
        }))
    }

    /// A 2-D PCA of the joint embedding of every entity (both KGs), computed on the device: the Gram
    /// matrix `XᵀX/N`, the mean, and the products of a block power iteration run there; the host only
    /// orthonormalises the two iterate vectors. Returns the points and the test pairs' predicted and gold
    /// partners.
    pub async fn pca(&self, iters: usize) -> Result<Value> {
        let n1 = self.n1();
        let n = self.opened.inputs.n;
        let refs: Vec<&Tensor> = self.p.iter().collect();
        let xs = concat_cols(&refs)?;
        let refs: Vec<&Tensor> = self.q.iter().collect();
        let xt = concat_cols(&refs)?;
        let x = mmea_core::ops::concat_rows(&[&xs, &xt])?;
        let d = x.shape()[1];
        let dev = &self.device;
        let gram = matmul_ex(&x, &x, None, true, false, 1.0 / n as f32)?;
        let ones = Tensor::full(dev, &[1, n], 1.0 / n as f32)?;
        let mean = matmul_ex(&ones, &x, None, false, false, 1.0)?; // [1, d]
        let outer = matmul_ex(&mean, &mean, None, true, false, 1.0)?; // [d, d]
        let cov = mmea_core::ops::sub(&gram, &outer)?;
        // Block power iteration on two vectors, from a fixed pseudo-random start.
        let mut v: Vec<f32> = (0..d * 2).map(|k| (k as f32 * 0.618 + 0.3).sin()).collect();
        orthonormalise(&mut v, d);
        let mut eig = [0f32; 2];
        for _ in 0..iters.max(1) {
            let w = matmul_ex(&cov, &Tensor::from_f32(dev, v.clone(), &[d, 2])?, None, false, false, 1.0)?.to_vec_f32().await?;
            eig = [col_norm(&w, d, 0), col_norm(&w, d, 1)];
            v = w;
            orthonormalise(&mut v, d);
        }
        let vt = Tensor::from_f32(dev, v.clone(), &[d, 2])?;
        let y = matmul_ex(&x, &vt, None, false, false, 1.0)?.to_vec_f32().await?;
        let mu = matmul_ex(&mean, &vt, None, false, false, 1.0)?.to_vec_f32().await?;
        let points: Vec<[f32; 2]> = (0..n).map(|r| [y[2 * r] - mu[0], y[2 * r + 1] - mu[1]]).collect();
        let total_var: f32 = {
            let c = cov.to_vec_f32().await?;
            (0..d).map(|k| c[k * d + k]).sum()
        };
        let k = self.plain.k;
        let pairs: Vec<Value> = self.opened.split.test.iter().map(|&(l, r)| json!([l, n1 as u32 + self.plain.cols[l as usize * k], r])).collect();
        Ok(json!({
            "n1": n1,
            "points": points,
            "labels": self.ds.entities.names.iter().map(|u| label(u)).collect::<Vec<_>>(),
            "explained": [eig[0] / total_var.max(1e-12), eig[1] / total_var.max(1e-12)],
            "test_pairs": pairs,
        }))
    }
}

/// Rows `idx` of each block (already unit joint rows).
fn gather_blocks(blocks: &[Tensor], idx: &[u32]) -> Result<Vec<Tensor>> {
    let dev = blocks[0].device();
    let ids = Tensor::from_u32(&dev, idx.to_vec(), &[idx.len()])?;
    blocks.iter().map(|b| mmea_core::ops::gather_rows(b, &ids)).collect()
}

fn col_norm(v: &[f32], d: usize, c: usize) -> f32 {
    (0..d).map(|r| v[r * 2 + c] * v[r * 2 + c]).sum::<f32>().sqrt()
}

/// Gram–Schmidt on the two columns of a row-major `[d, 2]` matrix.
fn orthonormalise(v: &mut [f32], d: usize) {
    let n0 = col_norm(v, d, 0).max(1e-20);
    (0..d).for_each(|r| v[r * 2] /= n0);
    let dot: f32 = (0..d).map(|r| v[r * 2] * v[r * 2 + 1]).sum();
    (0..d).for_each(|r| v[r * 2 + 1] -= dot * v[r * 2]);
    let n1 = col_norm(v, d, 1).max(1e-20);
    (0..d).for_each(|r| v[r * 2 + 1] /= n1);
}

/// Metrics as the page shows them (and as the end-to-end test compares with `mmea eval --json`).
pub fn report_json(r: &EvalReport) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_last_segments() {
        assert_eq!(label("http://dbpedia.org/resource/Porto_FC"), "Porto FC");
        assert_eq!(label("plain"), "plain");
    }

    #[test]
    fn orthonormal_columns() {
        let d = 5;
        let mut v: Vec<f32> = (0..10).map(|k| (k as f32 * 0.7).sin() + 0.1).collect();
        orthonormalise(&mut v, d);
        let dot: f32 = (0..d).map(|r| v[r * 2] * v[r * 2 + 1]).sum();
        assert!(dot.abs() < 1e-5);
        assert!((col_norm(&v, d, 0) - 1.0).abs() < 1e-5 && (col_norm(&v, d, 1) - 1.0).abs() < 1e-5);
    }
}
