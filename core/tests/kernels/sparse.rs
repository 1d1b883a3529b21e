use mmea_core::autodiff::Tape;
use mmea_core::ops::sparse::{self, ad, Csr, SegmentIndex};
use mmea_core::{Device, Error};
use proptest::prelude::*;

use crate::common::*;

/// Deterministic u32 indices below `n` (n > 0).
fn rand_idx(seed: u64, len: usize, n: usize) -> Vec<u32> {
    rand_vec(seed, len, 0.0, n as f32).into_iter().map(|v| (v as u32).min(n as u32 - 1)).collect()
}

fn naive_gather(x: &[f32], d: usize, idx: &[u32]) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i as usize * d..(i as usize + 1) * d].to_vec()).collect()
}

/// `Y[i] = Σ_{e: idx[e] = i} X[e]` in f64.
fn naive_scatter(x: &[f32], d: usize, idx: &[u32], n: usize) -> Vec<f32> {
    let mut y = vec![0.0f64; n * d];
    for (e, &i) in idx.iter().enumerate() {
        for c in 0..d {
            y[i as usize * d + c] += x[e * d + c] as f64;
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

fn naive_spmm(rows: usize, entries: &[(u32, u32, f32)], x: &[f32], d: usize) -> Vec<f32> {
    let mut y = vec![0.0f64; rows * d];
    for &(r, c, v) in entries {
        for k in 0..d {
            y[r as usize * d + k] += v as f64 * x[c as usize * d + k] as f64;
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

#[test]
fn segment_index_groups_stably_and_validates() {
    let d = Device::Cpu;
    let s = SegmentIndex::from_indices(&d, &[2, 0, 2, 1, 0], 4).unwrap();
    assert_eq!(s.offsets.to_vec_u32_blocking().unwrap(), vec![0, 2, 3, 5, 5]);
    assert_eq!(s.perm.as_ref().unwrap().to_vec_u32_blocking().unwrap(), vec![1, 4, 3, 0, 2]);
    assert_eq!((s.num_segments(), s.len()), (4, 5));
    // Already grouped: no permutation.
    let s = SegmentIndex::from_indices(&d, &[0, 0, 2], 3).unwrap();
    assert!(s.perm.is_none());
    assert_eq!(s.offsets.to_vec_u32_blocking().unwrap(), vec![0, 2, 2, 3]);
    let err = SegmentIndex::from_indices(&d, &[0, 7, 1], 3).unwrap_err().to_string();
    assert!(err.contains("from_indices") && err.contains("index 7") && err.contains("position 1"), "{err}");
    // From offsets: ids follow the permutation.
    let s = SegmentIndex::from_offsets(&d, &[0, 1, 3], Some(&[2, 0, 1])).unwrap();
    assert_eq!(s.ids.to_vec_u32_blocking().unwrap(), vec![1, 1, 0]);
    for (offs, perm) in [(vec![1u32, 2], None), (vec![0, 2, 1], None), (vec![0, 2], Some(vec![0u32, 0])), (vec![0, 2], Some(vec![0, 5]))] {
        assert!(matches!(SegmentIndex::from_offsets(&d, &offs, perm.as_deref()), Err(Error::InvalidArgument { .. })), "{offs:?} {perm:?}");
    }
}

#[test]
fn gather_rows_matches_naive_and_gpu() {
    // 900 x 70 outputs = 247 workgroups of 256 with a ragged tail; d = 70 is not a multiple of anything.
    let (n, dim, e) = (300, 70, 900);
    let x = rand_vec(1, n * dim, -1.0, 1.0);
    let idx = rand_idx(2, e, n);
    let cpu = sparse::gather_rows(&t(&Device::Cpu, &x, &[n, dim]), &tu(&Device::Cpu, &idx, &[e])).unwrap();
    assert_close("gather cpu", &vals(&cpu), &naive_gather(&x, dim, &idx), 0.0, 0.0);
    check_backends("gather_rows", 0.0, 0.0, |d| {
        vec![
            sparse::gather_rows(&t(d, &x, &[n, dim]), &tu(d, &idx, &[e])).unwrap(),
            // Degenerate: no rows gathered, a single row and column.
            sparse::gather_rows(&t(d, &x, &[n, dim]), &tu(d, &[], &[0])).unwrap(),
            sparse::gather_rows(&t(d, &[4.5], &[1, 1]), &tu(d, &[0, 0, 0], &[3])).unwrap(),
        ]
    });
    let err = sparse::gather_rows(&t(&Device::Cpu, &x, &[n, dim]), &tu(&Device::Cpu, &[3, 300], &[2])).unwrap_err().to_string();
    assert!(err.contains("gather_rows") && err.contains("300"), "{err}");
}

#[test]
fn segment_sum_matches_naive_with_empty_segments() {
    // 400 segments, items only in the even ones (odd segments are empty); 700 items, d = 37.
    let (n, dim, e) = (400, 37, 700);
    let idx: Vec<u32> = rand_idx(3, e, n / 2).into_iter().map(|i| 2 * i).collect();
    let x = rand_vec(4, e * dim, -1.0, 1.0);
    let want = naive_scatter(&x, dim, &idx, n);
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    let want_sorted = naive_scatter(&x, dim, &sorted, n);
    let cpu = sparse::segment_sum(&t(&Device::Cpu, &x, &[e, dim]), &SegmentIndex::from_indices(&Device::Cpu, &idx, n).unwrap()).unwrap();
    assert_close("segment_sum cpu", &vals(&cpu), &want, 1e-5, 1e-5);
    assert!(vals(&cpu)[dim..2 * dim].iter().all(|&v| v == 0.0), "empty segment 1 must be zero");
    check_backends("segment_sum", 1e-6, 1e-6, |d| {
        let seg = SegmentIndex::from_indices(d, &idx, n).unwrap();
        let seg_sorted = SegmentIndex::from_indices(d, &sorted, n).unwrap();
        assert!(seg_sorted.perm.is_none());
        vec![
            sparse::segment_sum(&t(d, &x, &[e, dim]), &seg).unwrap(),
            sparse::segment_sum(&t(d, &x, &[e, dim]), &seg_sorted).unwrap(),
            // Degenerate: no items at all (every segment empty), and one segment of one item.
            sparse::segment_sum(&t(d, &[], &[0, 3]), &SegmentIndex::from_indices(d, &[], 5).unwrap()).unwrap(),
            sparse::segment_sum(&t(d, &[2.0], &[1, 1]), &SegmentIndex::from_indices(d, &[0], 1).unwrap()).unwrap(),
        ]
    });
    let sorted_cpu = sparse::segment_sum(&t(&Device::Cpu, &x, &[e, dim]), &SegmentIndex::from_indices(&Device::Cpu, &sorted, n).unwrap()).unwrap();
    assert_close("segment_sum sorted", &vals(&sorted_cpu), &want_sorted, 1e-5, 1e-5);
    let shape_err = sparse::segment_sum(&t(&Device::Cpu, &x[..dim], &[1, dim]), &SegmentIndex::from_indices(&Device::Cpu, &idx, n).unwrap());
    assert!(matches!(shape_err, Err(Error::Shape { op: "segment_sum", .. })));
}

#[test]
fn gather_and_segment_sum_backward_fd_and_gpu() {
    let (n, dim, e) = (5, 3, 8);
    let idx = vec![4, 0, 4, 1, 0, 4, 3, 1]; // segment 2 is empty
    let x = rand_vec(5, n * dim, -1.0, 1.0);
    let w = rand_vec(6, e * dim, -1.0, 1.0);
    let d = Device::Cpu;
    let seg = SegmentIndex::from_indices(&d, &idx, n).unwrap();
    // L = Σ W ⊙ gather(X, idx)  ⇒  g_X[i] = Σ_{e: idx[e] = i} W[e] (zero for row 2).
    let loss = |x: &[f32]| dot(&vals(&sparse::gather_rows(&t(&d, x, &[n, dim]), &tu(&d, &idx, &[e])).unwrap()), &w);
    let g = sparse::gather_rows_backward(&t(&d, &w, &[e, dim]), &seg).unwrap();
    assert_close("gather g_x", &vals(&g), &finite_diff(&x, 1e-2, loss), 1e-4, 1e-4);
    assert!(vals(&g)[2 * dim..3 * dim].iter().all(|&v| v == 0.0));
    // L = Σ V ⊙ segment_sum(Z)  ⇒  g_Z[e] = V[idx[e]].
    let z = rand_vec(7, e * dim, -1.0, 1.0);
    let v = rand_vec(8, n * dim, -1.0, 1.0);
    let loss = |z: &[f32]| dot(&vals(&sparse::segment_sum(&t(&d, z, &[e, dim]), &seg).unwrap()), &v);
    let g = sparse::segment_sum_backward(&t(&d, &v, &[n, dim]), &seg).unwrap();
    assert_close("segment_sum g_z", &vals(&g), &finite_diff(&z, 1e-2, loss), 1e-4, 1e-4);
    // GPU backward vs CPU backward on a multi-workgroup shape.
    let (n, dim, e) = (260, 45, 1000);
    let idx = rand_idx(9, e, n);
    let gy = rand_vec(10, e * dim, -1.0, 1.0);
    let gs = rand_vec(11, n * dim, -1.0, 1.0);
    check_backends("gather/segment backward", 1e-5, 1e-5, |d| {
        let seg = SegmentIndex::from_indices(d, &idx, n).unwrap();
        vec![sparse::gather_rows_backward(&t(d, &gy, &[e, dim]), &seg).unwrap(), sparse::segment_sum_backward(&t(d, &gs, &[n, dim]), &seg).unwrap()]
    });
}

#[test]
fn spmm_neighbour_mean_and_backward() {
    // LoginMEA's x⁰ average: S_i = {i} ∪ neighbours. Entity 7 is isolated (mean of itself), pairs repeat.
    let n = 9;
    let pairs = [(0u32, 1u32), (1, 0), (1, 2), (3, 3), (4, 5), (5, 6), (6, 4), (8, 0), (8, 2)];
    let dim = 4;
    let x = rand_vec(12, n * dim, -1.0, 1.0);
    let d = Device::Cpu;
    let (mean, mean_t) = Csr::neighbour_mean(&d, n, &pairs).unwrap();
    let y = vals(&sparse::spmm(&mean, &t(&d, &x, &[n, dim])).unwrap());
    let sets: [&[usize]; 9] = [&[0, 1, 8], &[0, 1, 2], &[1, 2, 8], &[3], &[4, 5, 6], &[4, 5, 6], &[4, 5, 6], &[7], &[0, 2, 8]];
    let mut want = vec![0.0f32; n * dim];
    for (i, s) in sets.iter().enumerate() {
        for c in 0..dim {
            want[i * dim + c] = s.iter().map(|&j| x[j * dim + c]).sum::<f32>() / s.len() as f32;
        }
    }
    assert_close("neighbour mean", &y, &want, 1e-6, 1e-5);
    // L = Σ W ⊙ (A X)  ⇒  g_X = Aᵀ W.
    let w = rand_vec(13, n * dim, -1.0, 1.0);
    let loss = |x: &[f32]| dot(&vals(&sparse::spmm(&mean, &t(&d, x, &[n, dim])).unwrap()), &w);
    let g = sparse::spmm_backward(&mean_t, &t(&d, &w, &[n, dim])).unwrap();
    assert_close("spmm g_x", &vals(&g), &finite_diff(&x, 1e-2, loss), 1e-4, 1e-4);

    // A rectangular weighted matrix, 3+ workgroups, empty rows and columns, duplicate entries; GPU vs CPU.
    let (m, k, dim) = (150, 210, 37);
    let nnz = 700;
    let rows = rand_idx(14, nnz, m - 10); // rows m-10.. stay empty
    let cols = rand_idx(15, nnz, k);
    let vs = rand_vec(16, nnz, -2.0, 2.0);
    let mut entries: Vec<(u32, u32, f32)> = (0..nnz).map(|i| (rows[i], cols[i], vs[i])).collect();
    entries.push(entries[0]);
    let x = rand_vec(17, k * dim, -1.0, 1.0);
    let g = rand_vec(18, m * dim, -1.0, 1.0);
    let want = naive_spmm(m, &entries, &x, dim);
    let tr: Vec<(u32, u32, f32)> = entries.iter().map(|&(r, c, v)| (c, r, v)).collect();
    let want_t = naive_spmm(k, &tr, &g, dim);
    let (a, at) = Csr::with_transpose(&Device::Cpu, m, k, &entries).unwrap();
    assert_close("spmm cpu", &vals(&sparse::spmm(&a, &t(&Device::Cpu, &x, &[k, dim])).unwrap()), &want, 1e-5, 1e-5);
    assert_close("spmm_backward cpu", &vals(&sparse::spmm_backward(&at, &t(&Device::Cpu, &g, &[m, dim])).unwrap()), &want_t, 1e-5, 1e-5);
    check_backends("spmm", 1e-5, 1e-5, |d| {
        let (a, at) = Csr::with_transpose(d, m, k, &entries).unwrap();
        let (mean, _) = Csr::neighbour_mean(d, 1, &[]).unwrap();
        vec![sparse::spmm(&a, &t(d, &x, &[k, dim])).unwrap(), sparse::spmm_backward(&at, &t(d, &g, &[m, dim])).unwrap(), sparse::spmm(&mean, &t(d, &[3.0, -1.0], &[1, 2])).unwrap()]
    });
    // Validation.
    assert!(matches!(Csr::from_triplets(&d, 2, 2, &[(0, 2, 1.0)]), Err(Error::InvalidArgument { .. })));
    assert!(matches!(Csr::from_triplets(&d, 2, 2, &[(0, 1, f32::NAN)]), Err(Error::NonFinite { .. })));
    assert!(matches!(Csr::neighbour_mean(&d, 2, &[(0, 2)]), Err(Error::InvalidArgument { .. })));
    assert!(matches!(sparse::spmm(&a, &t(&d, &x[..dim], &[1, dim])), Err(Error::Shape { op: "spmm", .. })));
}

#[test]
fn sparse_tape_wrappers_match_finite_differences() {
    // L = Σ V ⊙ segment_sum(gather(A X, idx))  ⇒  g_X = Aᵀ gather_backward(segment_sum_backward(V)).
    let (n, dim, e) = (6, 3, 10);
    let idx = rand_idx(20, e, n);
    let seg_idx = rand_idx(21, e, 4);
    let x = rand_vec(22, n * dim, -1.0, 1.0);
    let v = rand_vec(23, 4 * dim, -1.0, 1.0);
    let entries: Vec<(u32, u32, f32)> = (0..n as u32).flat_map(|i| [(i, i, 0.5), (i, (i + 1) % n as u32, 0.25), (i, (i + 3) % n as u32, -1.0)]).collect();
    let run = |d: &Device, x: &[f32]| -> (f64, Vec<f32>) {
        let (a, at) = Csr::with_transpose(d, n, n, &entries).unwrap();
        let gseg = SegmentIndex::from_indices(d, &idx, n).unwrap();
        let sseg = SegmentIndex::from_indices(d, &seg_idx, 4).unwrap();
        let tape = Tape::new();
        let xv = tape.param(&t(d, x, &[n, dim]));
        let ax = ad::spmm(&tape, &a, &at, &xv).unwrap();
        let gathered = ad::gather_rows(&tape, &ax, &gseg).unwrap();
        let summed = ad::segment_sum(&tape, &gathered, &sseg).unwrap();
        let grads = tape.backward_with(&summed, t(d, &v, &[4, dim])).unwrap();
        (dot(&vals(&summed.value), &v), vals(grads.get(&xv).unwrap()))
    };
    let (_, g) = run(&Device::Cpu, &x);
    assert_close("tape g_x", &g, &finite_diff(&x, 1e-2, |x| run(&Device::Cpu, x).0), 1e-3, 1e-3);
    if let Some(gd) = gpu() {
        assert_close("tape g_x gpu", &run(&gd, &x).1, &g, 1e-5, 1e-5);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn prop_segment_sum_gather_spmm(n in 1usize..120, e in 0usize..400, dim in 1usize..50, seed in 0u64..1000) {
        let idx = rand_idx(seed, e, n);
        let x = rand_vec(seed + 1, e * dim, -1.0, 1.0);
        let xs = rand_vec(seed + 2, n * dim, -1.0, 1.0);
        let vs = rand_vec(seed + 3, e, -1.0, 1.0);
        let cols = rand_idx(seed + 4, e, n);
        let entries: Vec<(u32, u32, f32)> = (0..e).map(|k| (idx[k], cols[k], vs[k])).collect();
        let cpu = sparse::segment_sum(&t(&Device::Cpu, &x, &[e, dim]), &SegmentIndex::from_indices(&Device::Cpu, &idx, n).unwrap()).unwrap();
        assert_close("prop segment_sum", &vals(&cpu), &naive_scatter(&x, dim, &idx, n), 1e-5, 1e-5);
        let (a, _) = Csr::with_transpose(&Device::Cpu, n, n, &entries).unwrap();
        assert_close("prop spmm", &vals(&sparse::spmm(&a, &t(&Device::Cpu, &xs, &[n, dim])).unwrap()), &naive_spmm(n, &entries, &xs, dim), 1e-5, 1e-5);
        check_backends("prop sparse", 1e-5, 1e-5, |d| {
            let seg = SegmentIndex::from_indices(d, &idx, n).unwrap();
            let (a, at) = Csr::with_transpose(d, n, n, &entries).unwrap();
            vec![
                sparse::segment_sum(&t(d, &x, &[e, dim]), &seg).unwrap(),
                sparse::gather_rows(&t(d, &xs, &[n, dim]), &seg.ids).unwrap(),
                sparse::spmm(&a, &t(d, &xs, &[n, dim])).unwrap(),
                sparse::spmm_backward(&at, &t(d, &xs, &[n, dim])).unwrap(),
            ]
        });
    }
}

#[test]
fn spmm_heads_weights_each_head_by_its_own_column() {
    // 50 rows (some without entries), 40 source rows, H = 3 heads of m = 5 columns; duplicate entries.
    let (rows, n_src, heads, m) = (50usize, 40usize, 3usize, 5usize);
    let d = heads * m;
    let mut entries = Vec::new();
    let idx = rand_idx(5, 300, n_src);
    for (k, &j) in idx.iter().enumerate() {
        let r = (k * 7 % rows) as u32;
        if r % 6 != 5 {
            entries.push((r, j, 0.0));
        }
    }
    let a = Csr::from_triplets(&Device::Cpu, rows, n_src, &entries).unwrap();
    let x = rand_vec(6, n_src * d, -1.0, 1.0);
    let w = rand_vec(7, a.nnz() * heads, -2.0, 2.0);
    // Naive, in CSR order: entries sorted by (row, col), stable.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&k| (entries[k].0, entries[k].1));
    let mut want = vec![0f32; rows * d];
    for (pos, &k) in order.iter().enumerate() {
        let (r, j) = (entries[k].0 as usize, entries[k].1 as usize);
        for c in 0..d {
            want[r * d + c] += w[pos * heads + c / m] * x[j * d + c];
        }
    }
    let got = sparse::spmm_heads(&a, &t(&Device::Cpu, &w, &[a.nnz(), heads]), &t(&Device::Cpu, &x, &[n_src, d]), m).unwrap();
    assert_close("spmm_heads cpu", &vals(&got), &want, 1e-5, 1e-5);
    assert!(vals(&got)[5 * d..6 * d].iter().all(|&v| v == 0.0), "row 5 has no entries");
    check_backends("spmm_heads", 1e-5, 1e-5, |dev| {
        let a = Csr::from_triplets(dev, rows, n_src, &entries).unwrap();
        vec![sparse::spmm_heads(&a, &t(dev, &w, &[a.nnz(), heads]), &t(dev, &x, &[n_src, d]), m).unwrap()]
    });
    // Shapes that do not fit: a head width that does not divide x, or weights for the wrong entry count.
    let wt = t(&Device::Cpu, &w, &[a.nnz(), heads]);
    assert!(matches!(sparse::spmm_heads(&a, &wt, &t(&Device::Cpu, &x, &[n_src, d]), 4), Err(Error::Shape { .. })));
    assert!(matches!(sparse::spmm_heads(&a, &t(&Device::Cpu, &w[..heads * 2], &[2, heads]), &t(&Device::Cpu, &x, &[n_src, d]), m), Err(Error::Shape { .. })));
}
