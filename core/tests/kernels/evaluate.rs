//! The §2 evaluation pipeline against a naive reference that follows the spec literally: squared L2
//! distances on unit vectors, CSLS on S = 1 − D, rank = number of candidates strictly better than gold.

use mmea_core::evaluate::{evaluate_blocking, EvalOptions, SinkhornDecoding};
use mmea_core::ops::eval::metrics;
use mmea_core::{Device, Tensor};

use crate::common::*;

fn unit(v: &[f32], d: usize) -> Vec<f64> {
    v.chunks(d)
        .flat_map(|r| {
            let n = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            r.iter().map(move |x| *x as f64 / n).collect::<Vec<_>>()
        })
        .collect()
}

/// (plain l2r, plain r2l, csls l2r) ranks per the spec's literal definitions.
fn reference(p: &[f32], q: &[f32], n: usize, d: usize, k: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (p, q) = (unit(p, d), unit(q, d));
    let dist: Vec<f64> = (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..d).map(|t| (p[i * d + t] - q[j * d + t]).powi(2)).sum()
        })
        .collect();
    let s: Vec<f64> = dist.iter().map(|x| 1.0 - x).collect();
    let topk_mean = |mut v: Vec<f64>| {
        v.sort_by(|a, b| b.total_cmp(a));
        v[..k].iter().sum::<f64>() / k as f64
    };
    let r_l: Vec<f64> = (0..n).map(|i| topk_mean(s[i * n..(i + 1) * n].to_vec())).collect();
    let r_r: Vec<f64> = (0..n).map(|j| topk_mean((0..n).map(|i| s[i * n + j]).collect())).collect();
    let csls_dist = |i: usize, j: usize| 1.0 - (2.0 * s[i * n + j] - r_l[i] - r_r[j]);
    let l2r = (0..n).map(|i| (0..n).filter(|&j| dist[i * n + j] < dist[i * n + i]).count() as u32).collect();
    let r2l = (0..n).map(|j| (0..n).filter(|&i| dist[i * n + j] < dist[j * n + j]).count() as u32).collect();
    let cs = (0..n).map(|i| (0..n).filter(|&j| csls_dist(i, j) < csls_dist(i, i)).count() as u32).collect();
    (l2r, r2l, cs)
}

/// The embedding `[700, 16]`, the pairs' KG1 rows (`base`) and KG2 rows (`q`), and the pairs.
struct Noisy {
    emb: Vec<f32>,
    base: Vec<f32>,
    q: Vec<f32>,
    pairs: Vec<(u32, u32)>,
}

/// 300 pairs among 700 entities of width 16 (KG2 partners at 350 + i), the partners noisy copies. Random
/// draws seeded by `seed`, `seed + 1`, `seed + 2`.
fn noisy_pairs(seed: u64) -> Noisy {
    let (n, d, n_ent) = (300usize, 16usize, 700usize);
    let base = rand_vec(seed, n * d, -1.0, 1.0);
    let noise = rand_vec(seed + 1, n * d, -1.0, 1.0);
    let mut emb = rand_vec(seed + 2, n_ent * d, -1.0, 1.0);
    for i in 0..n {
        for t in 0..d {
            emb[i * d + t] = base[i * d + t];
            emb[(350 + i) * d + t] = base[i * d + t] + 1.2 * noise[i * d + t];
        }
    }
    let pairs: Vec<(u32, u32)> = (0..n as u32).map(|i| (i, 350 + i)).collect();
    let q: Vec<f32> = (0..n).flat_map(|i| emb[(350 + i) * d..(351 + i) * d].to_vec()).collect();
    Noisy { emb, base, q, pairs }
}

#[test]
fn evaluation_matches_the_spec_literally_on_both_backends() {
    // 300 test pairs among 700 entities (KG2 partners at 350 + i), noisy copies: a mix of hits and misses.
    let (n, d, n_ent) = (300usize, 16usize, 700usize);
    let Noisy { emb, base, q, pairs } = noisy_pairs(70);
    let (l2r, r2l, cs) = reference(&base, &q, n, d, 3);
    let want = (metrics(&l2r), metrics(&r2l), metrics(&cs));
    assert!(want.0.hits1 > 0.2 && want.0.hits1 < 0.95, "the data should mix hits and misses: {:?}", want.0);

    let opts = EvalOptions { csls_k: Some(3), sinkhorn: Some(SinkhornDecoding { eps: 0.02, iters: 10, top_k: None }), block_rows: Some(128), scored: None };
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu());
    let mut sinkhorn_h1 = Vec::new();
    for dev in &devices {
        let r = evaluate_blocking(&t(dev, &emb, &[n_ent, d]), &pairs, &opts).unwrap();
        assert_eq!(r.pairs, n);
        // Cosine vs squared-L2 rounding can flip a near-tie; allow one rank in 300 to differ.
        for (name, got, want) in [("plain l2r", r.plain.l2r, want.0), ("plain r2l", r.plain.r2l, want.1), ("csls l2r", r.csls.unwrap().l2r, want.2)] {
            assert!((got.hits1 - want.hits1).abs() <= 1.0 / n as f64 + 1e-12, "{dev:?} {name}: {got:?} vs {want:?}");
            assert!((got.mrr - want.mrr).abs() <= 1.0 / n as f64, "{dev:?} {name}: {got:?} vs {want:?}");
        }
        let sk = r.sinkhorn.unwrap();
        assert_eq!(sk.l2r.count, n);
        sinkhorn_h1.push(sk.l2r.hits1);
    }
    if sinkhorn_h1.len() == 2 {
        assert!((sinkhorn_h1[0] - sinkhorn_h1[1]).abs() <= 1.0 / n as f64, "Sinkhorn CPU vs GPU: {sinkhorn_h1:?}");
    }
}

/// `EvalOptions::scored`: with the last rows and columns as distractors, the scored pairs' ranks are the
/// full matrix's ranks of those pairs (distractors compete in every direction and in CSLS), on both backends.
#[test]
fn distractors_compete_but_are_not_scored() {
    let (n, d, n_ent, k) = (300usize, 16usize, 700usize, 110usize);
    let Noisy { emb, base, q, pairs } = noisy_pairs(80);
    let (l2r, r2l, cs) = reference(&base, &q, n, d, 3);
    let want = (metrics(&l2r[..k]), metrics(&r2l[..k]), metrics(&cs[..k]));
    // Without the distractors the same k pairs rank better: the distractors matter.
    let alone = reference(&base[..k * d], &q[..k * d], k, d, 3);
    assert!(metrics(&alone.2).hits1 > want.2.hits1 + 0.05, "{:?} vs {:?}", metrics(&alone.2), want.2);
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu());
    for dev in &devices {
        let opts = EvalOptions { csls_k: Some(3), sinkhorn: Some(SinkhornDecoding { eps: 0.02, iters: 10, top_k: None }), block_rows: Some(64), scored: Some(k) };
        let r = evaluate_blocking(&t(dev, &emb, &[n_ent, d]), &pairs, &opts).unwrap();
        assert_eq!(r.pairs, k);
        assert_eq!(r.sinkhorn.unwrap().l2r.count, k);
        for (name, got, want) in [("plain l2r", r.plain.l2r, want.0), ("plain r2l", r.plain.r2l, want.1), ("csls l2r", r.csls.unwrap().l2r, want.2)] {
            assert_eq!(got.count, k, "{dev:?} {name}");
            assert!((got.hits1 - want.hits1).abs() <= 1.0 / k as f64 + 1e-12, "{dev:?} {name}: {got:?} vs {want:?}");
            assert!((got.mrr - want.mrr).abs() <= 1.0 / k as f64, "{dev:?} {name}: {got:?} vs {want:?}");
        }
        for bad in [0, n + 1] {
            let err = evaluate_blocking(&t(dev, &emb, &[n_ent, d]), &pairs, &EvalOptions { scored: Some(bad), ..opts.clone() }).unwrap_err();
            assert!(err.to_string().contains("scored"), "{err}");
        }
    }
}

#[test]
fn evaluation_rejects_bad_pairs() {
    let emb = t(&Device::Cpu, &[1.0; 8], &[4, 2]);
    let err = evaluate_blocking(&emb, &[(0, 9)], &EvalOptions::default()).unwrap_err().to_string();
    assert!(err.contains("(0, 9)") && err.contains("4"), "{err}");
    assert!(evaluate_blocking(&emb, &[], &EvalOptions::default()).is_err());
}

/// Whole-KG candidates (`model::align::top_candidates`): the top-k kernel path (k ≤ 16) and the
/// selection path (any k) both equal a brute-force ranking of the joint cosine, on both backends; the
/// embedding comes as two column blocks with rows of uneven norm.
#[test]
fn top_candidates_kernel_and_host_paths_match_brute_force() {
    use mmea_core::model::align::{normalized_blocks_blocking, top_candidates_blocking, top_candidates_with};
    let (n, d1, d2) = (140, 9, 5);
    let b1 = rand_vec(70, n * d1, -1.0, 1.0);
    let b2 = rand_vec(71, n * d2, -1.0, 1.0);
    let (src, tgt): (Vec<u32>, Vec<u32>) = ((0..60).collect(), (60..140).collect());
    // Brute force on the host: cosine of the concatenated rows, best first, ties to the lower index.
    let row = |i: usize| -> Vec<f32> {
        let mut v: Vec<f32> = b1[i * d1..(i + 1) * d1].to_vec();
        v.extend(&b2[i * d2..(i + 1) * d2]);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    };
    let want = |k: usize| -> Vec<Vec<u32>> {
        src.iter()
            .map(|&s| {
                let a = row(s as usize);
                let mut sc: Vec<(f32, u32)> = tgt.iter().enumerate().map(|(j, &t)| (a.iter().zip(row(t as usize)).map(|(x, y)| x * y).sum(), j as u32)).collect();
                sc.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                sc.into_iter().take(k).map(|x| x.1).collect()
            })
            .collect()
    };
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu());
    for dev in &devices {
        let blocks = vec![Tensor::from_f32(dev, b1.clone(), &[n, d1]).unwrap(), Tensor::from_f32(dev, b2.clone(), &[n, d2]).unwrap()];
        let p = normalized_blocks_blocking(&blocks, &src).unwrap();
        let q = normalized_blocks_blocking(&blocks, &tgt).unwrap();
        for k in [1, 7, 16, 40, 80] {
            let got = top_candidates_blocking(&p, &q, k).unwrap();
            let w = want(k);
            // Near-ties may order differently under float rounding: compare the sets of the first k and the
            // scores' order.
            for (i, wr) in w.iter().enumerate() {
                let g = &got.cols[i * k..(i + 1) * k];
                let (mut gs, mut ws) = (g.to_vec(), wr.clone());
                gs.sort_unstable();
                ws.sort_unstable();
                let sc = &got.scores[i * k..(i + 1) * k];
                assert!(sc.windows(2).all(|x| x[0] >= x[1]), "{dev:?} k={k} row {i}: scores not best first");
                assert_eq!(g[0], wr[0], "{dev:?} k={k} row {i}: top-1");
                assert_eq!(gs, ws, "{dev:?} k={k} row {i}: the kept set");
            }
            if k <= 16 {
                let sel = pollster::block_on(top_candidates_with(&p, &q, k, true)).unwrap();
                assert_eq!(sel.cols, got.cols, "{dev:?} k={k}: selection and kernel paths");
            }
        }
        assert!(top_candidates_blocking(&p, &q, 81).is_err(), "k beyond the number of targets");
    }
}

#[test]
fn sparse_sinkhorn_decoding_ranks_the_sparse_plan() {
    // The plan over each query's k best candidates only (−∞ elsewhere), computed naively in the classic
    // form (exp(S/ε), rows then columns normalised, 15 times) in f64; a gold entry outside the kept ones
    // ranks behind the kept entries of its row (l2r) or column (r2l).
    let (n, d, k, eps, iters) = (300usize, 16usize, 4usize, 0.02f64, 15usize);
    let Noisy { emb, pairs, .. } = noisy_pairs(71);
    let unit = |i: usize| -> Vec<f64> {
        let r = &emb[i * d..(i + 1) * d];
        let norm = r.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
        r.iter().map(|&x| x as f64 / norm).collect()
    };
    let (p, q): (Vec<Vec<f64>>, Vec<Vec<f64>>) = pairs.iter().map(|&(a, b)| (unit(a as usize), unit(b as usize))).unzip();
    let s: Vec<Vec<f64>> = p.iter().map(|pi| q.iter().map(|qj| pi.iter().zip(qj).map(|(a, b)| a * b).sum()).collect()).collect();
    let kept: Vec<Vec<usize>> = s
        .iter()
        .map(|row| {
            let mut o: Vec<usize> = (0..n).collect();
            o.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
            o.truncate(k);
            o
        })
        .collect();
    let mut plan: Vec<Vec<f64>> = (0..n).map(|i| kept[i].iter().map(|&j| (s[i][j] / eps).exp()).collect()).collect();
    for _ in 0..iters {
        for row in plan.iter_mut() {
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        let mut col = vec![0f64; n];
        for i in 0..n {
            for (t, &j) in kept[i].iter().enumerate() {
                col[j] += plan[i][t];
            }
        }
        for i in 0..n {
            for (t, &j) in kept[i].iter().enumerate() {
                plan[i][t] /= col[j];
            }
        }
    }
    let gold = |i: usize, j: usize| kept[i].iter().position(|&c| c == j).map(|t| plan[i][t]);
    let l2r: Vec<u32> = (0..n).map(|i| gold(i, i).map_or(k as u32, |g| plan[i].iter().filter(|&&v| v > g).count() as u32)).collect();
    let r2l: Vec<u32> = (0..n)
        .map(|j| {
            let col: Vec<f64> = (0..n).filter_map(|i| gold(i, j)).collect();
            let g = gold(j, j).unwrap_or(f64::NEG_INFINITY);
            col.iter().filter(|&&v| v > g).count() as u32
        })
        .collect();
    let (want_l, want_r) = (metrics(&l2r), metrics(&r2l));
    assert!(l2r.contains(&(k as u32)) && want_l.hits1 > 0.2, "the data should have gold pairs inside and outside the kept entries");
    let opts = EvalOptions { csls_k: None, sinkhorn: Some(SinkhornDecoding { eps: eps as f32, iters, top_k: Some(k) }), block_rows: Some(64), scored: None };
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu());
    for dev in &devices {
        let r = evaluate_blocking(&t(dev, &emb, &[700, d]), &pairs, &opts).unwrap();
        assert_eq!(r.sinkhorn_top_k, Some(k));
        let sk = r.sinkhorn.unwrap();
        for (got, want, dir) in [(sk.l2r, want_l, "l2r"), (sk.r2l, want_r, "r2l")] {
            for (g, w, what) in [(got.hits1, want.hits1, "H@1"), (got.hits10, want.hits10, "H@10"), (got.mrr, want.mrr, "MRR"), (got.mr, want.mr, "MR")] {
                assert!((g - w).abs() <= 1.0 / n as f64 + 1e-9 * w.abs(), "{dir} {what}: {g} vs {w} ({dev:?})");
            }
        }
    }
    // k ≥ the candidates: the dense decoding (and no top-k in the report).
    let dense = EvalOptions { sinkhorn: Some(SinkhornDecoding { eps: 0.02, iters: 10, top_k: Some(n) }), ..opts.clone() };
    assert_eq!(evaluate_blocking(&t(&Device::Cpu, &emb, &[700, d]), &pairs, &dense).unwrap().sinkhorn_top_k, None);
}
