use mmea_core::ops;
use mmea_core::ops::eval::{self as ev, Metrics};
use mmea_core::ops::sinkhorn::TiledMatrix;
use mmea_core::{Device, Error};
use proptest::prelude::*;

use crate::common::*;

fn tiles(d: &Device, s: &[f32], n: usize, m: usize, rows_per_block: usize) -> TiledMatrix {
    TiledMatrix::from_host(d, s, n, m, (rows_per_block * m.max(1) * 4) as u64).unwrap()
}

/// Values on a grid of 8 levels, so that ties are frequent.
fn tied(seed: u64, len: usize) -> Vec<f32> {
    rand_vec(seed, len, 0.0, 8.0).into_iter().map(|v| v.floor() / 4.0 - 1.0).collect()
}

/// Naive top-k of a sequence: stable sort by value descending (ties keep the lower index first).
fn naive_topk(v: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].partial_cmp(&v[a]).unwrap());
    idx.into_iter().take(k).map(|i| (v[i], i as u32)).collect()
}

fn column(s: &[f32], m: usize, j: usize) -> Vec<f32> {
    s.iter().skip(j).step_by(m).copied().collect()
}

fn naive_rows(s: &[f32], n: usize, m: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    (0..n).flat_map(|i| naive_topk(&s[i * m..(i + 1) * m], k)).unzip()
}

fn naive_cols(s: &[f32], m: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    (0..m).flat_map(|j| naive_topk(&column(s, m, j), k)).unzip()
}

fn u32s(t: &mmea_core::Tensor) -> Vec<u32> {
    t.to_vec_u32_blocking().unwrap()
}

/// Top-k rows and columns on a matrix, CPU twin vs naive (exact), GPU vs CPU (exact), tiled vs untiled.
/// Rows use `k`, columns `min(k, n)`.
fn check_topk(name: &str, s: &[f32], n: usize, m: usize, k: usize, rows_per_block: usize) {
    let kc = k.min(n);
    let (rv, ri) = naive_rows(s, n, m, k);
    let (cv, ci) = naive_cols(s, m, kc);
    let cpu = ev::topk_rows(&tiles(&Device::Cpu, s, n, m, rows_per_block), k).unwrap();
    assert_eq!(vals(&cpu.values), rv, "{name}: row values");
    assert_eq!(u32s(&cpu.indices), ri, "{name}: row indices");
    let cpu = ev::topk_cols(&tiles(&Device::Cpu, s, n, m, rows_per_block), kc).unwrap();
    assert_eq!(vals(&cpu.values), cv, "{name}: column values");
    assert_eq!(u32s(&cpu.indices), ci, "{name}: column indices");
    for rpb in [rows_per_block, n.max(1)] {
        check_backends(&format!("{name} (blocks of {rpb})"), 0.0, 0.0, |d| {
            let st = tiles(d, s, n, m, rpb);
            let r = ev::topk_rows(&st, k).unwrap();
            let c = ev::topk_cols(&st, kc).unwrap();
            vec![r.values, r.indices, c.values, c.indices]
        });
    }
}

#[test]
fn topk_rows_and_cols_with_ties_tiled() {
    // 300 x 257: 257 columns over 64 lanes (ragged) and 5 column groups of 64 (ragged); blocks of 70 rows
    // (70, 70, 70, 70, 20) so that column lists merge across 5 blocks; ties everywhere.
    let (n, m) = (300, 257);
    let s = tied(200, n * m);
    for k in [1, 3, 16] {
        check_topk(&format!("top-{k}"), &s, n, m, k, 70);
    }
    // Distinct values too.
    check_topk("top-5 distinct", &rand_vec(201, n * m, -1.0, 1.0), n, m, 5, 70);
}

#[test]
fn topk_degenerate_shapes_and_errors() {
    // A single row: row top-k over 5 columns; column top-1 over one row.
    let s = [0.5, -1.0, 0.5, 2.0, 0.0];
    check_topk("1x5", &s, 1, 5, 5, 1);
    check_topk("1x5 k=1", &s, 1, 5, 1, 1);
    check_topk("1x1", &[3.0], 1, 1, 1, 1);
    // All equal: ties resolve to the lowest indices.
    check_topk("constant 20x20", &[1.0; 400], 20, 20, 4, 7);
    let d = Device::Cpu;
    let st = tiles(&d, &s, 1, 5, 1);
    assert!(matches!(ev::topk_rows(&st, 6), Err(Error::InvalidArgument { .. })), "k larger than the row length");
    assert!(matches!(ev::topk_cols(&st, 2), Err(Error::InvalidArgument { .. })), "k larger than the column length");
    assert!(matches!(ev::topk_rows(&st, 0), Err(Error::InvalidArgument { .. })));
    let wide = tiles(&d, &[0.0; 40], 1, 40, 1);
    assert!(matches!(ev::topk_rows(&wide, 17), Err(Error::InvalidArgument { .. })), "k above 16");
    assert!(matches!(ev::csls(&st, 2), Err(Error::InvalidArgument { .. })), "CSLS k larger than the column length");
}

fn naive_csls(s: &[f32], n: usize, m: usize, k: usize) -> Vec<f32> {
    let mean = |v: Vec<f32>| naive_topk(&v, k).iter().fold(0.0f32, |a, x| a + x.0) * (1.0 / k as f32);
    let rl: Vec<f32> = (0..n).map(|i| mean(s[i * m..(i + 1) * m].to_vec())).collect();
    let rr: Vec<f32> = (0..m).map(|j| mean(column(s, m, j))).collect();
    (0..n * m).map(|e| 2.0 * s[e] - rl[e / m] - rr[e % m]).collect()
}

#[test]
fn csls_matches_naive_tiled_and_untiled() {
    // CSLS_ij = 2 S_ij − r_L(i) − r_R(j), r_L / r_R the means of the k largest per row / column.
    for (n, m, k, rpb, seed) in [(300, 257, 3, 70, 210), (130, 130, 10, 40, 211), (1, 5, 1, 1, 212), (4, 1, 1, 3, 213)] {
        let s = rand_vec(seed, n * m, -1.0, 1.0);
        let want = naive_csls(&s, n, m, k);
        let cpu = ev::csls(&tiles(&Device::Cpu, &s, n, m, rpb), k).unwrap();
        assert_close(&format!("csls {n}x{m} cpu"), &vals(&cpu.to_tensor().unwrap()), &want, 1e-6, 1e-6);
        check_backends(&format!("csls {n}x{m}"), 1e-6, 1e-6, |d| {
            let tiled = ev::csls(&tiles(d, &s, n, m, rpb), k).unwrap();
            assert_eq!(tiled.block_rows(), tiles(d, &s, n, m, rpb).block_rows());
            let untiled = ev::csls(&tiles(d, &s, n, m, n), k).unwrap();
            vec![tiled.to_tensor().unwrap(), untiled.to_tensor().unwrap()]
        });
    }
}

fn naive_ranks(s: &[f32], n: usize) -> (Vec<u32>, Vec<u32>) {
    let l2r = (0..n).map(|i| (0..n).filter(|&j| s[i * n + j] > s[i * n + i]).count() as u32).collect();
    let r2l = (0..n).map(|j| (0..n).filter(|&i| s[i * n + j] > s[j * n + j]).count() as u32).collect();
    (l2r, r2l)
}

fn check_ranks(name: &str, s: &[f32], n: usize, rpb: usize) {
    let (l2r, r2l) = naive_ranks(s, n);
    let cpu = ev::rank_counts(&tiles(&Device::Cpu, s, n, n, rpb)).unwrap();
    assert_eq!(u32s(&cpu.l2r), l2r, "{name} l2r");
    assert_eq!(u32s(&cpu.r2l), r2l, "{name} r2l");
    for b in [rpb, n.max(1)] {
        check_backends(&format!("{name} (blocks of {b})"), 0.0, 0.0, |d| {
            let r = ev::rank_counts(&tiles(d, s, n, n, b)).unwrap();
            vec![r.l2r, r.r2l]
        });
    }
}

#[test]
fn rank_counts_with_ties_tiled() {
    // Ties with the gold are not counted: rank = #strictly better.
    let n = 300;
    check_ranks("ranks tied 300", &tied(220, n * n), n, 70);
    check_ranks("ranks distinct 300", &rand_vec(221, n * n, -1.0, 1.0), n, 110);
    check_ranks("ranks 1x1", &[0.3], 1, 1);
    // Hand-made: gold best in row 0, third in row 1 (two strictly better), tied-first in row 2; in the
    // columns: best in column 0, second in column 1 (0.6 > 0.3), second in column 2 (0.7 > 0.6).
    let s = [
        0.9, 0.1, 0.2, //
        0.8, 0.3, 0.7, //
        0.5, 0.6, 0.6,
    ];
    let r = ev::rank_counts(&tiles(&Device::Cpu, &s, 3, 3, 2)).unwrap();
    assert_eq!(u32s(&r.l2r), vec![0, 2, 0]);
    assert_eq!(u32s(&r.r2l), vec![0, 1, 1]);
    assert!(matches!(ev::rank_counts(&tiles(&Device::Cpu, &[0.0; 6], 2, 3, 1)), Err(Error::Shape { .. })));
}

#[test]
fn argmax_and_mutual_nearest_neighbours() {
    // Rows 0 and 1 pick each other's columns mutually; row 2 prefers column 0, whose best row is 1.
    let s = [
        0.1, 0.9, 0.0, //
        0.8, 0.2, 0.1, //
        0.7, 0.1, 0.3,
    ];
    let d = Device::Cpu;
    let st = tiles(&d, &s, 3, 3, 2);
    let pl = u32s(&ev::argmax_rows(&st).unwrap());
    let pr = u32s(&ev::argmax_cols(&st).unwrap());
    assert_eq!(pl, vec![1, 0, 0]);
    assert_eq!(pr, vec![1, 0, 2]);
    assert_eq!(ev::mutual_nn(&pl, &pr), vec![(0, 1), (1, 0)]);
    // Out-of-range column ids never match.
    assert_eq!(ev::mutual_nn(&[5], &[0]), vec![]);
    // GPU vs CPU on a tied, tiled 300 x 257 matrix (ties to the lower index).
    let (n, m) = (300, 257);
    let s = tied(230, n * m);
    let want_rows: Vec<u32> = (0..n).map(|i| naive_topk(&s[i * m..(i + 1) * m], 1)[0].1).collect();
    let want_cols: Vec<u32> = (0..m).map(|j| naive_topk(&column(&s, m, j), 1)[0].1).collect();
    assert_eq!(u32s(&ev::argmax_rows(&tiles(&d, &s, n, m, 70)).unwrap()), want_rows);
    assert_eq!(u32s(&ev::argmax_cols(&tiles(&d, &s, n, m, 70)).unwrap()), want_cols);
    check_backends("argmax", 0.0, 0.0, |d| {
        let st = tiles(d, &s, n, m, 70);
        vec![ev::argmax_rows(&st).unwrap(), ev::argmax_cols(&st).unwrap()]
    });
}

#[test]
fn metrics_by_hand() {
    // ranks 0, 1, 9, 10, 49, 50: H@1 = 1/6, H@10 = 3/6, H@50 = 5/6, MR = mean(rank + 1), MRR = mean 1/(rank + 1).
    let r = [0, 1, 9, 10, 49, 50];
    let m = ev::metrics(&r);
    assert_eq!((m.hits1, m.hits10, m.hits50), (1.0 / 6.0, 0.5, 5.0 / 6.0));
    assert!((m.mr - (1.0 + 2.0 + 10.0 + 11.0 + 50.0 + 51.0) / 6.0).abs() < 1e-12);
    assert!((m.mrr - (1.0 + 0.5 + 0.1 + 1.0 / 11.0 + 0.02 + 1.0 / 51.0) / 6.0).abs() < 1e-12);
    assert_eq!(m.count, 6);
    assert_eq!(ev::metrics(&[]), Metrics { hits1: 0.0, hits10: 0.0, hits50: 0.0, mrr: 0.0, mr: 0.0, count: 0 });
}

#[test]
fn similarity_tiles_match_one_matmul() {
    let (n, m, dim) = (300, 257, 20);
    let p = rand_vec(240, n * dim, -1.0, 1.0);
    let q = rand_vec(241, m * dim, -1.0, 1.0);
    let d = Device::Cpu;
    let whole = ops::matmul_ex(&t(&d, &p, &[n, dim]), &t(&d, &q, &[m, dim]), None, false, true, 1.0).unwrap();
    let st = ev::similarity_tiles(&t(&d, &p, &[n, dim]), &t(&d, &q, &[m, dim]), 70).unwrap();
    assert_eq!(st.block_rows(), vec![70, 70, 70, 70, 20]);
    assert_close("tiles vs whole", &vals(&st.to_tensor().unwrap()), &vals(&whole), 1e-5, 1e-5);
    check_backends("similarity tiles", 1e-5, 1e-5, |d| {
        let st = ev::similarity_tiles(&t(d, &p, &[n, dim]), &t(d, &q, &[m, dim]), 70).unwrap();
        st.blocks
    });
    assert!(matches!(ev::similarity_tiles(&t(&d, &p, &[n, dim]), &t(&d, &q, &[m, dim]), 0), Err(Error::InvalidArgument { .. })));
    assert!(matches!(ev::similarity_tiles(&t(&d, &p, &[n, dim]), &t(&d, &q[..m * 10], &[m, 10]), 7), Err(Error::Shape { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn prop_topk(n in 1usize..90, m in 1usize..90, kf in 0.0f64..1.0, rpb in 1usize..40, seed in 0u64..1000, ties in any::<bool>()) {
        let kmax = m.min(16);
        let k = 1 + ((kf * kmax as f64) as usize).min(kmax - 1);
        let s = if ties { tied(seed, n * m) } else { rand_vec(seed, n * m, -1.0, 1.0) };
        check_topk("prop top-k", &s, n, m, k, rpb);
    }

    #[test]
    fn prop_rank_counts(n in 1usize..120, rpb in 1usize..50, seed in 0u64..1000, ties in any::<bool>()) {
        let s = if ties { tied(seed, n * n) } else { rand_vec(seed, n * n, -1.0, 1.0) };
        check_ranks("prop ranks", &s, n, rpb);
    }
}

#[test]
fn similarity_over_column_blocks_equals_the_concatenation() {
    // P = [P1 | P2 | P3] (widths 5, 64, 7), Q likewise; ragged row tiles.
    let (n, m, widths) = (70usize, 45usize, [5usize, 64, 7]);
    check_backends("similarity_tiles_blocks", 1e-5, 1e-4, |d| {
        let pb: Vec<_> = widths.iter().enumerate().map(|(i, &w)| t(d, &rand_vec(10 + i as u64, n * w, -1.0, 1.0), &[n, w])).collect();
        let qb: Vec<_> = widths.iter().enumerate().map(|(i, &w)| t(d, &rand_vec(20 + i as u64, m * w, -1.0, 1.0), &[m, w])).collect();
        let pr: Vec<&mmea_core::Tensor> = pb.iter().collect();
        let qr: Vec<&mmea_core::Tensor> = qb.iter().collect();
        let whole = ev::similarity_tiles(&ops::concat_cols(&pr).unwrap(), &ops::concat_cols(&qr).unwrap(), 17).unwrap();
        let blocked = ev::similarity_tiles_blocks(&pb, &qb, 17).unwrap();
        assert_eq!(blocked.block_rows(), whole.block_rows());
        let (a, b) = (whole.to_vec_f32_blocking().unwrap(), blocked.to_vec_f32_blocking().unwrap());
        assert_close("blocks vs concatenation", &b, &a, 1e-5, 1e-4);
        vec![blocked.to_tensor().unwrap()]
    });
    let d = Device::Cpu;
    let p = [t(&d, &[0.0; 6], &[2, 3])];
    let q = [t(&d, &[0.0; 8], &[2, 4])];
    assert!(matches!(ev::similarity_tiles_blocks(&p, &q, 1), Err(Error::Shape { .. })));
    assert!(matches!(ev::similarity_tiles_blocks(&p, &[], 1), Err(Error::InvalidArgument { .. })));
}

// ---- large-k selection (sparse decodings) ------------------------------------------------------------

/// The k best of each row (ties to the lower column), returned in column order.
fn naive_select(s: &[f32], n: usize, m: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    let mut vals_out = Vec::new();
    let mut idx_out = Vec::new();
    for i in 0..n {
        let row = &s[i * m..(i + 1) * m];
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
        let mut kept: Vec<usize> = order.into_iter().take(k).collect();
        kept.sort_unstable();
        vals_out.extend(kept.iter().map(|&j| row[j]));
        idx_out.extend(kept.iter().map(|&j| j as u32));
    }
    (vals_out, idx_out)
}

#[test]
fn topk_select_rows_matches_naive_with_ties_blocks_and_backends() {
    // Ragged shapes; scores quantised to a few levels (many ties, negative and positive zero included) and
    // continuous ones; k from 1 to the full row, over row blocks that do not divide n.
    for (case, &(n, m, k, rpb, levels)) in [(7, 300, 1, 3, 0), (13, 257, 40, 5, 4), (9, 600, 600, 4, 3), (5, 1000, 333, 2, 0), (300, 31, 9, 64, 2)].iter().enumerate() {
        let mut s = rand_vec(90 + case as u64, n * m, -1.0, 1.0);
        if levels > 0 {
            s.iter_mut().for_each(|v| *v = (*v * levels as f32).round() / levels as f32);
        }
        let (want_v, want_i) = naive_select(&s, n, m, k);
        let cpu = ev::topk_select_rows(&tiles(&Device::Cpu, &s, n, m, rpb), k).unwrap();
        assert_eq!(u32s(&cpu.indices), want_i, "case {case}: indices");
        assert_eq!(vals(&cpu.values), want_v, "case {case}: values");
        check_backends(&format!("topk_select_rows case {case}"), 0.0, 0.0, |d| {
            let r = ev::topk_select_rows(&tiles(d, &s, n, m, rpb), k).unwrap();
            vec![r.values, r.indices]
        });
    }
    let st = tiles(&Device::Cpu, &[1.0, 2.0], 1, 2, 1);
    assert!(matches!(ev::topk_select_rows(&st, 0), Err(Error::InvalidArgument { .. })));
    assert!(matches!(ev::topk_select_rows(&st, 3), Err(Error::InvalidArgument { .. })));
}
