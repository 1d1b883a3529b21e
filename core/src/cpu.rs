//! Helpers for the CPU paths (twins and fast kernels): parallel loops with rayon natively, plain loops in wasm.

/// Call `f(row_index, row)` for every `row_len`-sized chunk of `out`, in parallel where possible.
pub fn par_rows<F>(out: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    if row_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        // Small outputs are not worth the fork.
        if out.len() >= 1 << 14 {
            out.par_chunks_mut(row_len).enumerate().for_each(|(i, r)| f(i, r));
            return;
        }
    }
    out.chunks_mut(row_len).enumerate().for_each(|(i, r)| f(i, r));
}

/// `(0..n).map(f).collect()`, in parallel where possible.
pub fn par_map<T, F>(n: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Send + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        if n >= 256 {
            return (0..n).into_par_iter().map(f).collect();
        }
    }
    (0..n).map(f).collect()
}

/// `items.into_iter().map(f).collect()`: each item is an independent task, run in parallel where possible.
pub fn par_map_items<T, U, F>(items: Vec<T>, f: F) -> Vec<U>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Send + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        if items.len() > 1 {
            return items.into_par_iter().map(f).collect();
        }
    }
    items.into_iter().map(f).collect()
}
