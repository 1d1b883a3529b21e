use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::pool::{size_class, Pool};
use super::{Arg, GpuBuffer, Shader, BROWSER_BINDING_LIMIT, MAX_GROUPS_PER_DIM};
use crate::error::{Error, Result};

/// How to pick an adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Ask for a software adapter (lavapipe, SwiftShader, WARP) explicitly.
    pub force_fallback_adapter: bool,
}

/// The limits that matter to our kernels, as the device granted them.
#[derive(Clone, Debug, Serialize)]
pub struct LimitsReport {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    /// What kernels actually bind at most: the device limit capped at the browsers' 128 MiB.
    pub kernel_binding_limit: u64,
}

/// What `mmea info` prints about the adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// True for lavapipe, SwiftShader, WARP and other CPU implementations.
    pub is_software: bool,
    pub features: Vec<String>,
    pub limits: LimitsReport,
}

type PipelineKey = (&'static str, String, Vec<(String, u64)>, Vec<bool>);

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: u32,
}

/// Submit after this many recorded passes even without a readback, so queues stay short.
const MAX_PENDING_PASSES: u32 = 64;

/// An open GPU device plus the caches every kernel shares. Cheap to share as `Arc<GpuContext>`.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    report: AdapterReport,
    binding_limit: u64,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    layouts: Mutex<HashMap<Vec<bool>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pub(crate) pool: Arc<Mutex<Pool>>,
    pending: Mutex<Pending>,
    /// Errors wgpu reported outside any scope (validation, out of memory, internal), drained by `check`.
    errors: Arc<Mutex<Vec<Error>>>,
    lost: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of a cache; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GpuContext {
    /// Open the best adapter: a real GPU when there is one, otherwise whatever the platform offers
    /// (lavapipe on a CPU-only Linux box, SwiftShader in a headless browser). Honours `WGPU_BACKEND`
    /// and `WGPU_ADAPTER_NAME` natively.
    pub async fn new(opts: &GpuOptions) -> Result<Arc<Self>> {
        #[cfg(not(target_arch = "wasm32"))]
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        #[cfg(target_arch = "wasm32")]
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor { backends: wgpu::Backends::BROWSER_WEBGPU, ..wgpu::InstanceDescriptor::new_without_display_handle() });

        let adapter = match std::env::var("WGPU_ADAPTER_NAME").ok().filter(|_| !cfg!(target_arch = "wasm32")) {
            Some(want) => {
                let want = want.to_lowercase();
                let all = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                all.into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| Error::NoAdapter(format!("WGPU_ADAPTER_NAME={want} matches none of {names:?}")))?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: opts.force_fallback_adapter,
                    compatible_surface: None,
                    apply_limit_buckets: false,
                })
                .await
                .map_err(|e| Error::NoAdapter(e.to_string()))?,
        };
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("mmea"),
                required_features: wgpu::Features::empty(),
                // The adapter's limits, or large buffers hit the 128/256 MiB defaults. Kernels still keep
                // to browser limits on their own (256 invocations, 65,535 groups, 128 MiB per binding).
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;

        let l = device.limits();
        let binding_limit = l.max_storage_buffer_binding_size.min(BROWSER_BINDING_LIMIT);
        let af = adapter.features();
        let mut features = Vec::new();
        for (flag, name) in [(wgpu::Features::SHADER_F16, "shader-f16"), (wgpu::Features::SUBGROUP, "subgroups"), (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query")] {
            if af.contains(flag) {
                features.push(format!("{name} (offered, not used)"));
            }
        }
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            is_software: info.device_type == wgpu::DeviceType::Cpu,
            features,
            limits: LimitsReport {
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                kernel_binding_limit: binding_limit,
            },
        };

        let errors: Arc<Mutex<Vec<Error>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match e {
                wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory { what: "a GPU resource".into(), bytes: 0 },
                other => Error::Gpu(other.to_string()),
            };
            lock(&sink).push(err);
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                *lock(&lost_sink) = Some(format!("{reason:?}: {msg}"));
            }
        });

        log::info!("GPU adapter: {} ({:?}, {:?})", info.name, info.backend, info.device_type);
        Ok(Arc::new(GpuContext {
            device,
            queue,
            report,
            binding_limit,
            modules: Mutex::default(),
            layouts: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Arc::default(),
            pending: Mutex::new(Pending { encoder: None, passes: 0 }),
            errors,
            lost,
        }))
    }

    /// Blocking wrapper for native code.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Arc<Self>> {
        pollster::block_on(Self::new(opts))
    }

    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    /// The largest storage binding a kernel may use (device limit capped at 128 MiB).
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// Memory held by tensors and by the pool, and how many buffers were ever created.
    pub fn pool_stats(&self) -> super::PoolStats {
        lock(&self.pool).stats()
    }

    /// Drop pooled idle buffers (e.g. after training, before evaluation).
    pub fn trim_pool(&self) {
        lock(&self.pool).clear();
    }

    /// How many idle bytes the pool keeps for reuse (default [`super::pool::DEFAULT_MAX_FREE_BYTES`],
    /// 1 GiB); buffers returned beyond it are released. Releases idle buffers above a smaller cap now.
    pub fn set_pool_cap(&self, bytes: u64) {
        let mut p = lock(&self.pool);
        p.max_free_bytes = bytes;
        if p.free_bytes > bytes {
            p.clear();
        }
    }

    /// Return the first error wgpu reported since the last check, if any.
    pub fn check(&self) -> Result<()> {
        if let Some(msg) = lock(&self.lost).clone() {
            return Err(Error::DeviceLost(msg));
        }
        let mut errs = lock(&self.errors);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.remove(0))
        }
    }

    // ---- buffers ------------------------------------------------------------------------------

    fn usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    }

    fn check_size(&self, bytes: u64, what: &str) -> Result<u64> {
        let class = size_class(bytes);
        if class > self.device.limits().max_buffer_size {
            return Err(Error::OutOfMemory { what: what.to_string(), bytes });
        }
        Ok(class)
    }

    /// An uninitialised buffer of `len` 4-byte elements (contents are whatever the pool had).
    pub fn alloc(&self, len: usize, what: &str) -> Result<GpuBuffer> {
        let bytes = len as u64 * 4;
        let class = self.check_size(bytes, what)?;
        let mut pool = lock(&self.pool);
        let buffer = match pool.take(class) {
            Some(b) => b,
            None => {
                drop(pool);
                let b = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(what), size: class, usage: Self::usage(), mapped_at_creation: false });
                pool = lock(&self.pool);
                pool.created += 1;
                b
            }
        };
        pool.note_live(class);
        Ok(GpuBuffer { buffer: Some(buffer), len, class, pool: self.pool.clone() })
    }

    /// A buffer of `len` zeros (cleared on the queue, in order with the other work).
    pub fn zeros(&self, len: usize, what: &str) -> Result<GpuBuffer> {
        let b = self.alloc(len, what)?;
        if len > 0 {
            self.with_encoder(|enc| enc.clear_buffer(b.raw(), 0, Some((len as u64 * 4).div_ceil(4) * 4)));
        }
        Ok(b)
    }

    /// A new buffer holding `data` (f32 or u32). Uses a buffer mapped at creation, never a pooled one,
    /// so an upload cannot overtake earlier queued work that still reads a recycled buffer.
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T], what: &str) -> Result<GpuBuffer> {
        assert_eq!(std::mem::size_of::<T>(), 4, "GPU tensors hold 4-byte elements");
        let bytes = std::mem::size_of_val(data) as u64;
        let class = self.check_size(bytes, what)?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(what), size: class, usage: Self::usage(), mapped_at_creation: true });
        if bytes > 0 {
            let mut view = buffer.get_mapped_range_mut(..bytes).map_err(|e| Error::Gpu(format!("mapping upload buffer for {what}: {e}")))?;
            view.copy_from_slice(bytemuck::cast_slice(data));
        }
        buffer.unmap();
        let mut pool = lock(&self.pool);
        pool.created += 1;
        pool.note_live(class);
        Ok(GpuBuffer { buffer: Some(buffer), len: data.len(), class, pool: self.pool.clone() })
    }

    /// Record a copy of `len` elements, queued in order with kernels.
    pub fn copy(&self, src: &GpuBuffer, src_offset: usize, dst: &GpuBuffer, dst_offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.raw(), src_offset as u64 * 4, dst.raw(), dst_offset as u64 * 4, Some(len as u64 * 4)));
    }

    /// Read `buf` back to the host. Submits all pending work first.
    pub async fn read<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>> {
        let bytes = buf.len as u64 * 4;
        if bytes == 0 {
            self.flush();
            self.check()?;
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, Some(bytes)));
        self.flush();
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Readback(e.to_string()))?;
        let mapped = rx.await.map_err(|_| Error::Readback("the map callback was dropped".into()))?;
        self.check()?;
        mapped.map_err(|e| Error::Readback(e.to_string()))?;
        let out = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Blocking readback for native code.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>> {
        pollster::block_on(self.read(buf))
    }

    /// Wait until all submitted work has finished (native; a no-op in the browser). Used by benchmarks.
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        self.check()
    }

    // ---- command recording -----------------------------------------------------------------------

    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut p = lock(&self.pending);
        let enc = p.encoder.get_or_insert_with(|| self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mmea") }));
        let r = f(enc);
        p.passes += 1;
        let full = p.passes >= MAX_PENDING_PASSES;
        drop(p);
        if full {
            self.flush();
        }
        r
    }

    /// Submit everything recorded so far.
    pub fn flush(&self) {
        // Submit while holding the lock: otherwise another thread could record (say) a readback copy into
        // a fresh encoder and submit it before this one, reading a buffer before the kernel that fills it.
        let mut p = lock(&self.pending);
        p.passes = 0;
        if let Some(enc) = p.encoder.take() {
            self.queue.submit(Some(enc.finish()));
        }
    }

    fn module(&self, shader: &Shader) -> wgpu::ShaderModule {
        lock(&self.modules)
            .entry(shader.name)
            .or_insert_with(|| self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(shader.name), source: wgpu::ShaderSource::Wgsl(shader.source.into()) }))
            .clone()
    }

    fn layout(&self, sig: &[bool]) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        lock(&self.layouts)
            .entry(sig.to_vec())
            .or_insert_with(|| {
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
                    count: None,
                }];
                for (i, &read_only) in sig.iter().enumerate() {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
                        count: None,
                    });
                }
                let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
                let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: None, bind_group_layouts: &[Some(&bgl)], immediate_size: 0 });
                (bgl, pl)
            })
            .clone()
    }

    fn pipeline(&self, shader: &Shader, entry: &str, constants: &[(&str, f64)], sig: &[bool]) -> wgpu::ComputePipeline {
        let key: PipelineKey = (shader.name, entry.to_string(), constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect(), sig.to_vec());
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return p.clone();
        }
        let module = self.module(shader);
        let (_, layout) = self.layout(sig);
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: true },
            cache: None,
        });
        lock(&self.pipelines).insert(key, p.clone());
        p
    }

    /// Number of distinct pipelines compiled so far (the cache's size).
    pub fn pipeline_count(&self) -> usize {
        lock(&self.pipelines).len()
    }

    /// Record one kernel launch. `params` is bound as a uniform block at binding 0, `args` at bindings
    /// 1.. in order. Checks the browser limits (65,535 groups per dimension, the binding limit) up front.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        op: &'static str,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &P,
        args: &[Arg<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        if let Some(&g) = groups.iter().find(|&&g| g > MAX_GROUPS_PER_DIM) {
            return Err(Error::TooManyWorkgroups { op, groups: g as u64, limit: MAX_GROUPS_PER_DIM });
        }
        let mut sig = Vec::with_capacity(args.len());
        for a in args {
            let (b, ro) = match a {
                Arg::Read(b) => (b, true),
                Arg::Write(b) => (b, false),
            };
            if b.binding_bytes() > self.binding_limit {
                return Err(Error::BindingTooLarge { op, bytes: b.binding_bytes(), limit: self.binding_limit });
            }
            sig.push(ro);
        }
        // Uniform blocks are padded to 16 bytes (WGSL's uniform struct alignment).
        let raw = bytemuck::bytes_of(params);
        let mut bytes = raw.to_vec();
        bytes.resize(raw.len().div_ceil(16).max(1) * 16, 0);
        let uniform =
            self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("params"), size: bytes.len() as u64, usage: wgpu::BufferUsages::UNIFORM, mapped_at_creation: true });
        uniform.get_mapped_range_mut(..).map_err(|e| Error::Gpu(format!("{op}: mapping the parameter block: {e}")))?.copy_from_slice(&bytes);
        uniform.unmap();

        let pipeline = self.pipeline(shader, entry, constants, &sig);
        let (bgl, _) = self.layout(&sig);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        for (i, a) in args.iter().enumerate() {
            let b = match a {
                Arg::Read(b) | Arg::Write(b) => b,
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b.raw(), offset: 0, size: NonZeroU64::new(b.binding_bytes()) }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(op), layout: &bgl, entries: &entries });
        self.with_encoder(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(op), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        Ok(())
    }
}
