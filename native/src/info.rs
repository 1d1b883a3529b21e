//! `mmea info`: the adapter report and a self-check of the kernels against their CPU twins.

use std::process::ExitCode;

use mmea_core::{Backend, Device, Result};

pub fn run(backend: Backend, check: bool) -> Result<ExitCode> {
    let device = backend.open_blocking()?;
    match &device {
        Device::Cpu => {
            println!("backend: cpu ({} threads)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            if backend == Backend::Auto {
                println!("  (no hardware GPU adapter was found; `mmea --backend wgpu info` runs the shaders on a software");
                println!("   adapter such as lavapipe if one is installed)");
            }
        }
        Device::Gpu(ctx) => {
            let r = ctx.report();
            println!("backend: wgpu");
            println!("adapter: {}", r.name);
            println!("  api backend: {}   device type: {}{}", r.backend, r.device_type, if r.is_software { " (software)" } else { "" });
            println!("  driver: {} {}", r.driver, r.driver_info);
            let l = &r.limits;
            println!("  max storage binding: {} MiB (kernels use at most {} MiB)", l.max_storage_buffer_binding_size >> 20, l.kernel_binding_limit >> 20);
            println!("  max buffer: {} MiB", l.max_buffer_size >> 20);
            println!("  max invocations per workgroup: {} (kernels use at most 256)", l.max_compute_invocations_per_workgroup);
            println!("  max workgroups per dimension: {}", l.max_compute_workgroups_per_dimension);
            println!("  workgroup storage: {} bytes; storage buffers per stage: {}", l.max_compute_workgroup_storage_size, l.max_storage_buffers_per_shader_stage);
            if !r.features.is_empty() {
                println!("  features: {}", r.features.join(", "));
            }
        }
    }
    if !check {
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(device, Device::Cpu) {
        println!("self-check of the CPU backend (each kernel's CPU twin against itself, i.e. a smoke test):");
    } else {
        println!("self-check: each kernel on this adapter against its CPU twin:");
    }
    let report = mmea_core::selfcheck::run(&device)?;
    for line in &report.lines {
        println!("{line}");
    }
    println!("self-check: {} passed, {} failed", report.passed, report.failed);
    Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
