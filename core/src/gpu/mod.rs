//! The GPU half of the engine: adapter and device acquisition ([`GpuContext`]), a pipeline cache keyed by
//! shader + entry point + specialisation constants + binding layout, a pool that reuses storage buffers
//! across training steps, batched command submission and asynchronous readback.
//!
//! Device acquisition is split from the kernels (as wgpu's own examples do): every kernel receives an
//! `&Arc<GpuContext>` and never creates one, so the same code runs in the CLI, in tests and in the browser.

mod context;
mod pool;

pub use context::{AdapterReport, GpuContext, GpuOptions, LimitsReport};
pub use pool::{GpuBuffer, PoolStats, DEFAULT_MAX_FREE_BYTES};

/// A WGSL shader compiled into the binary. `name` is the file stem in `shaders/`.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!("matmul")` embeds `shaders/matmul.wgsl`.
#[macro_export]
macro_rules! shader {
    ($name:literal) => {
        $crate::gpu::Shader { name: $name, source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/", $name, ".wgsl")) }
    };
}

/// What a kernel binds, in binding order after the uniform parameter block at binding 0.
pub enum Arg<'a> {
    /// A storage buffer the kernel only reads.
    Read(&'a GpuBuffer),
    /// A storage buffer the kernel writes (and may read).
    Write(&'a GpuBuffer),
}

/// Largest number of workgroups in one dispatch dimension (WebGPU's default and the browsers' value).
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;
/// Largest storage binding any kernel may use, whatever the adapter offers, so that every kernel also runs
/// in a browser.
pub const BROWSER_BINDING_LIMIT: u64 = 128 << 20;

/// Spread `groups` workgroups over x and y so that no dimension exceeds 65,535. Shaders recover the linear
/// workgroup index as `wid.x + wid.y * nwg.x` (with `@builtin(num_workgroups) nwg`) and must bounds-check,
/// because x * y may exceed `groups`.
pub fn grid(groups: u64) -> [u32; 3] {
    if groups <= MAX_GROUPS_PER_DIM as u64 {
        return [groups.max(1) as u32, 1, 1];
    }
    let y = groups.div_ceil(MAX_GROUPS_PER_DIM as u64);
    let x = groups.div_ceil(y);
    [x as u32, y as u32, 1]
}
