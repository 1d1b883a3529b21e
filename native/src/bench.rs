//! `mmea bench`: throughput of each kernel on every available backend, at the sizes of the real workload
//! (DBP15K: N ≈ 39k entities, T ≈ 330k directed edges, d = 300), median of several runs, with the
//! wgpu/CPU ratio measured in the same run. Upload is excluded; each GPU run ends with a full device
//! synchronisation so the time covers the kernels, not just their recording.

use std::time::Instant;

use mmea_core::ops::{self, Act, RelGraph, Unary};

use mmea_core::{Backend, Device, Result, Tensor};

struct Case {
    name: String,
    /// FLOPs and bytes of one run (estimates from the kernel header formulas).
    flops: f64,
    bytes: f64,
    run: Box<dyn Fn() -> Result<()>>,
}

use mmea_core::selfcheck::test_data as data;

/// Directed edges (head, tail) and, per edge, its relation mixture (relation id, weight).
type RandomGraph = (Vec<(u32, u32)>, Vec<Vec<(u32, f32)>>);

/// A random relation graph with about `edges` directed edges over `n` entities and `rels` relations.
fn random_graph(n: usize, edges: usize, rels: usize) -> RandomGraph {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as u32
    };
    let e: Vec<(u32, u32)> = (0..edges).map(|_| (next(n), next(n))).collect();
    let mix = (0..edges).map(|_| if next(4) == 0 { vec![(next(rels), 0.5), (next(rels), 0.5)] } else { vec![(next(rels), 1.0)] }).collect();
    (e, mix)
}

struct Sizes {
    n: usize,
    d: usize,
    edges: usize,
    rels: usize,
    /// Contrastive batch and joint width (LoginMEA: 3500 pairs, 2400-d).
    batch: usize,
    joint: usize,
    /// Test pairs in evaluation (DBP15K 30% seeds: 10,500).
    test: usize,
}

fn cases(dev: &Device, s: &Sizes) -> Result<Vec<Case>> {
    let Sizes { n, d, edges, rels, batch, joint, test } = *s;
    let t = |seed, shape: &[usize]| Tensor::from_f32(dev, data(seed, shape.iter().product()), shape);
    let mut v = Vec::new();

    let (x, w, b) = (t(1, &[n, d])?, t(2, &[d, d])?, t(3, &[d])?);
    v.push(Case {
        name: format!("matmul {n}x{d} * {d}x{d} + bias"),
        flops: 2.0 * (n * d * d) as f64,
        bytes: 4.0 * (2 * n * d + d * d) as f64,
        run: Box::new(move || ops::linear(&x, &w, Some(&b)).map(drop)),
    });
    let (x, g) = (t(4, &[n, d])?, t(5, &[n, d])?);
    v.push(Case {
        name: format!("linear backward {n}x{d}, W {d}x{d}"),
        flops: 4.0 * (n * d * d) as f64,
        bytes: 4.0 * (3 * n * d + 2 * d * d) as f64,
        run: Box::new({
            let w = t(6, &[d, d])?;
            move || ops::linear_backward(&x, &w, &g, true).map(drop)
        }),
    });
    let x = t(7, &[n, d])?;
    v.push(Case { name: format!("tanh {n}x{d}"), flops: (n * d) as f64, bytes: 8.0 * (n * d) as f64, run: Box::new(move || ops::unary(Unary::Tanh, &x).map(drop)) });
    let x = t(8, &[n, d])?;
    v.push(Case { name: format!("column sums {n}x{d}"), flops: (n * d) as f64, bytes: 4.0 * (n * d) as f64, run: Box::new(move || ops::sum_rows(&x).map(drop)) });

    let (edge_list, mixing) = random_graph(n, edges, rels);
    let graph = RelGraph::new(dev, n, rels, &edge_list, &mixing)?;
    let pairs: Vec<(u32, u32)> = edge_list.iter().copied().filter(|(h, t)| h != t).collect();
    let (avg, _) = ops::sparse::Csr::neighbour_mean(dev, n, &pairs)?;
    let nnz = avg.nnz();
    let x = t(9, &[n, d])?;
    v.push(Case {
        name: format!("neighbour mean (spmm) {n}x{d}, {nnz} nnz"),
        flops: 2.0 * (nnz * d) as f64,
        bytes: 4.0 * (nnz * d + n * d) as f64,
        run: Box::new(move || ops::spmm(&avg, &x).map(drop)),
    });
    let (x, rel, a) = (t(10, &[n, d])?, t(11, &[rels, d])?, t(12, &[d])?);
    let t_edges = graph.num_edges();
    let mix_nnz = graph.nnz();
    // Per edge: mixing (2 d per relation), 5 dot products and the reflection (about 14 d); per head tanh.
    let fwd_flops = (2 * mix_nnz * d + 14 * t_edges * d + n * d) as f64;
    let fwd_bytes = 4.0 * (mix_nnz * d + t_edges * d + n * d) as f64;
    {
        let (graph, x, rel, a) = (graph.clone(), x.clone(), rel.clone(), a.clone());
        v.push(Case {
            name: format!("reflection attention forward, {t_edges} edges, d={d}"),
            flops: fwd_flops,
            bytes: fwd_bytes,
            run: Box::new(move || ops::reflection_attention(&graph, &x, &rel, &a, Act::Tanh).map(drop)),
        });
    }
    let (_, saved) = ops::reflection_attention(&graph, &x, &rel, &a, Act::Tanh)?;
    let gy = t(13, &[n, d])?;
    v.push(Case {
        name: format!("reflection attention backward, {t_edges} edges, d={d}"),
        flops: 3.0 * fwd_flops,
        bytes: 3.0 * fwd_bytes,
        run: Box::new(move || ops::reflection_attention_backward(&graph, &x, &rel, &a, Act::Tanh, &saved, &gy).map(drop)),
    });

    let x = t(14, &[n, d])?;
    v.push(Case { name: format!("row L2-normalise {n}x{d}"), flops: 3.0 * (n * d) as f64, bytes: 8.0 * (n * d) as f64, run: Box::new(move || ops::l2_normalize(&x).map(drop)) });
    let (p, q) = (ops::l2_normalize(&t(15, &[batch, joint])?)?, ops::l2_normalize(&t(16, &[batch, joint])?)?);
    v.push(Case {
        name: format!("InfoNCE loss+grads B={batch}, d={joint}"),
        // S = P Qᵀ, then G Q and Gᵀ P: three B x B x d products.
        flops: 6.0 * (batch * batch * joint) as f64,
        bytes: 4.0 * (4 * batch * joint + 2 * batch * batch) as f64,
        run: Box::new(move || ops::info_nce(&p, &q, 0.1, None).map(drop)),
    });
    let rank = 8;
    let z: Vec<Tensor> = (0..3).map(|m| ops::prepend_ones_col(&t(17 + m, &[n, d])?)).collect::<Result<_>>()?;
    let w: Vec<Tensor> = (0..3).map(|m| t(20 + m, &[d + 1, rank * d])).collect::<Result<_>>()?;
    let (lambda, beta) = (t(23, &[rank])?, t(24, &[d])?);
    v.push(Case {
        name: format!("low-rank fusion M=3, R={rank}, {n}x{d}"),
        flops: (3 * 2 * n * (d + 1) * rank * d + 4 * n * rank * d) as f64,
        bytes: 4.0 * (3 * n * (d + 1) + 3 * (d + 1) * rank * d + 3 * n * rank * d + n * d) as f64,
        run: Box::new(move || ops::low_rank_fusion(&z, &w, &lambda, &beta, rank).map(drop)),
    });
    let (pe, qe) = (ops::l2_normalize(&t(25, &[test, d])?)?, ops::l2_normalize(&t(26, &[test, d])?)?);
    let sims = ops::eval::similarity_tiles(&pe, &qe, 2048)?;
    {
        let (pe, qe) = (pe.clone(), qe.clone());
        v.push(Case {
            name: format!("similarity {test}x{test}, d={d} (row tiles)"),
            flops: 2.0 * (test * test * d) as f64,
            bytes: 4.0 * (test * test + 2 * test * d) as f64,
            run: Box::new(move || ops::eval::similarity_tiles(&pe, &qe, 2048).map(drop)),
        });
    }
    {
        let sims = sims.clone();
        v.push(Case {
            name: format!("CSLS k=3 (row+column top-k) {test}x{test}"),
            flops: 8.0 * (test * test) as f64,
            bytes: 12.0 * (test * test) as f64,
            run: Box::new(move || ops::eval::csls(&sims, 3).map(drop)),
        });
    }
    {
        let sims = sims.clone();
        v.push(Case {
            name: format!("rank counting l2r+r2l {test}x{test}"),
            flops: 2.0 * (test * test) as f64,
            bytes: 8.0 * (test * test) as f64,
            run: Box::new(move || ops::eval::rank_counts(&sims).map(drop)),
        });
    }
    let sk_iters = 10;
    let scaled = ops::sinkhorn::TiledMatrix::new(sims.blocks.clone(), test)?;
    v.push(Case {
        name: format!("Sinkhorn {test}x{test}, {sk_iters} iterations, eps=0.02"),
        // Per iteration a row and a column pass, each an exp and a few adds per element.
        flops: (sk_iters * 2 * 4 * test * test) as f64,
        bytes: (sk_iters * 2 * 4 * test * test) as f64,
        run: Box::new(move || ops::sinkhorn::sinkhorn(&scaled, 0.02, sk_iters).map(drop)),
    });
    let params = vec![t(27, &[n, d])?, t(28, &[rels, d])?];
    let grads = vec![t(29, &[n, d])?, t(30, &[rels, d])?];
    let opt = std::cell::RefCell::new((ops::AdamW::new(5e-4), params));
    let np = (n + rels) * d;
    v.push(Case {
        name: format!("AdamW step, {np} parameters"),
        flops: 12.0 * np as f64,
        bytes: 4.0 * 5.0 * np as f64,
        run: Box::new(move || {
            let (o, p) = &mut *opt.borrow_mut();
            o.step(p, &grads)
        }),
    });
    Ok(v)
}

/// The median (the upper one of an even count); NaN for no values.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn run(backend: Backend, quick: bool, runs: usize) -> Result<()> {
    let sizes = if quick {
        Sizes { n: 4_000, d: 64, edges: 34_000, rels: 600, batch: 500, joint: 256, test: 1_000 }
    } else {
        Sizes { n: 39_000, d: 300, edges: 330_000, rels: 6_000, batch: 3_500, joint: 2_400, test: 10_500 }
    };
    let mut devices = vec![("cpu".to_string(), Device::Cpu)];
    if backend != Backend::Cpu {
        match Backend::Wgpu.open_blocking() {
            Ok(d @ Device::Gpu(_)) => devices.push((format!("{d:?}"), d)),
            Ok(_) => {}
            Err(e) => println!("wgpu: not available ({e}); CPU figures only"),
        }
    }
    println!(
        "kernel benchmark: median of {runs} runs after one warm-up; sizes: N={}, d={}, ~{} edges, {} relations{}",
        sizes.n,
        sizes.d,
        sizes.edges,
        sizes.rels,
        if quick { " (--quick)" } else { "" }
    );
    let mut table: Vec<(String, Vec<f64>, f64, f64)> = Vec::new();
    for (di, (_, dev)) in devices.iter().enumerate() {
        let sync = || -> Result<()> {
            if let Device::Gpu(c) = dev {
                c.synchronize()?;
            }
            Ok(())
        };
        for (ci, case) in cases(dev, &sizes)?.into_iter().enumerate() {
            (case.run)()?;
            sync()?;
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t0 = Instant::now();
                (case.run)()?;
                sync()?;
                times.push(t0.elapsed().as_secs_f64());
            }
            if di == 0 {
                table.push((case.name.clone(), vec![], case.flops, case.bytes));
            }
            let m = median(times);
            eprintln!("  [{}] {}: {:.2} ms", devices[di].0, case.name, m * 1e3);
            table[ci].1.push(m);
        }
    }
    let names: Vec<&str> = devices.iter().map(|(n, _)| n.as_str()).collect();
    println!("backends: {}", names.join(" | "));
    for (name, secs, flops, bytes) in &table {
        let mut line = format!("{name:<58}");
        for s in secs {
            line += &format!(" | {:>9.2} ms {:>7.2} GFLOP/s {:>7.2} GB/s", s * 1e3, flops / s / 1e9, bytes / s / 1e9);
        }
        if secs.len() == 2 {
            line += &format!(" | wgpu/cpu speed {:.2}x", secs[0] / secs[1]);
        }
        println!("{line}");
    }
    Ok(())
}
