//! The engine itself: pipeline cache, buffer reuse, typed errors instead of panics.

use mmea_core::ops::{self, Unary};
use mmea_core::{Device, Error, Tensor};

use crate::common::*;

/// A context of its own, so that counters are not disturbed by tests running on other threads.
fn private_gpu() -> Option<Device> {
    gpu()?;
    Some(Device::Gpu(mmea_core::gpu::GpuContext::new_blocking(&Default::default()).unwrap()))
}

#[test]
fn pipelines_are_cached_per_specialisation() {
    let Some(d) = private_gpu() else { return };
    let ctx = d.gpu().unwrap().clone();
    let x = t(&d, &rand_vec(60, 1000, -1.0, 1.0), &[1000]);
    ops::unary(Unary::Tanh, &x).unwrap();
    ops::unary(Unary::Sigmoid, &x).unwrap();
    let before = ctx.pipeline_count();
    for _ in 0..5 {
        ops::unary(Unary::Tanh, &x).unwrap();
        ops::unary(Unary::Sigmoid, &x).unwrap();
    }
    assert_eq!(ctx.pipeline_count(), before, "repeat launches must hit the cache");
    // A new specialisation constant is a new pipeline.
    ops::unary(Unary::Softplus, &x).unwrap();
    assert_eq!(ctx.pipeline_count(), before + 1);
}

#[test]
fn buffers_are_reused_across_steps() {
    let Some(d) = private_gpu() else { return };
    let ctx = d.gpu().unwrap().clone();
    let n = 777_777;
    let x = t(&d, &vec![0.5; n], &[n]);
    let step = || {
        let y = ops::unary(Unary::Tanh, &x).unwrap();
        let z = ops::mul(&y, &y).unwrap();
        vals(&ops::sum_all(&z).unwrap())[0]
    };
    let first = step();
    let created = ctx.pool_stats().buffers_created;
    for _ in 0..10 {
        assert_eq!(step(), first, "same inputs, same result");
    }
    // Every tensor of the repeated steps comes from the pool: no new storage buffer at all.
    let grown = ctx.pool_stats().buffers_created - created;
    assert_eq!(grown, 0, "{grown} buffers created in 10 steps that should have reused pooled ones");
    let stats = ctx.pool_stats();
    assert!(stats.free_bytes > 0 && stats.peak_live_bytes >= stats.live_bytes, "{stats:?}");
}

#[test]
fn too_large_allocation_is_an_out_of_memory_error() {
    let Some(d) = gpu() else { return };
    let max = d.gpu().unwrap().report().limits.max_buffer_size;
    let elems = (max / 4 + 1024) as usize;
    let err = d.gpu().unwrap().alloc(elems, "a huge tensor").map(drop).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("reduce"), "says what to reduce: {err}");
}

#[test]
fn oversize_binding_is_refused_with_the_op_name() {
    let Some(d) = gpu() else { return };
    // 129 MiB of f32: over the 128 MiB per-binding limit every kernel keeps to.
    let n = (129usize << 20) / 4;
    let x = Tensor::zeros(&d, &[n]).unwrap();
    let err = ops::unary(Unary::Relu, &x).unwrap_err();
    assert!(matches!(err, Error::BindingTooLarge { op: "unary", .. }), "{err}");
}

#[test]
fn mixing_devices_is_an_error() {
    let Some(g) = gpu() else { return };
    let a = t(&g, &[1.0, 2.0], &[2]);
    let b = t(&Device::Cpu, &[1.0, 2.0], &[2]);
    let err = ops::add(&a, &b).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { op: "add", .. }), "{err}");
    // Moving it over works.
    let b2 = b.to_device_blocking(&g).unwrap();
    assert_eq!(vals(&ops::add(&a, &b2).unwrap()), vec![2.0, 4.0]);
}

#[test]
fn wrong_shapes_and_dtypes_are_errors_naming_op_and_shapes() {
    let d = Device::Cpu;
    let err = ops::matmul(&t(&d, &[0.0; 6], &[2, 3]), &t(&d, &[0.0; 8], &[4, 2])).unwrap_err().to_string();
    assert!(err.contains("matmul") && err.contains("[2, 3]") && err.contains("[4, 2]"), "{err}");
    let err = ops::unary(Unary::Tanh, &tu(&d, &[1, 2], &[2])).unwrap_err().to_string();
    assert!(err.contains("f32") && err.contains("u32"), "{err}");
    let err = Tensor::from_f32(&d, vec![1.0; 5], &[2, 3]).unwrap_err().to_string();
    assert!(err.contains("[2, 3]"), "{err}");
}

#[test]
fn buffers_released_past_the_pool_cap_do_not_break_pending_work() {
    // Intermediates dropped while the kernels that use them are still recorded, not submitted, must stay
    // valid: with a pool cap of 0 every dropped buffer is released at once. (They used to be destroyed,
    // and the next submit failed with "buffer has been destroyed" once DBP15K-sized runs overflowed the
    // 1 GiB pool.)
    let Some(dev) = private_gpu() else { return };
    let Device::Gpu(ctx) = &dev else { unreachable!() };
    ctx.set_pool_cap(0);
    let xs = rand_vec(5, 4096, -1.0, 1.0);
    let x = t(&dev, &xs, &[4096]);
    let mut y = x.clone();
    for _ in 0..10 {
        y = mmea_core::ops::add(&y, &x).unwrap();
    }
    let got = y.to_vec_f32_blocking();
    ctx.set_pool_cap(mmea_core::gpu::DEFAULT_MAX_FREE_BYTES);
    let want: Vec<f32> = xs.iter().map(|v| 11.0 * v).collect();
    assert_close("sum after releases", &got.unwrap(), &want, 1e-5, 1e-5);
}
