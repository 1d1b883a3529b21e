//! Tensors: a shape, a dtype (f32 or u32) and storage on the CPU or on a GPU. Storage is shared and
//! immutable once built (clones are cheap); the optimiser is the one place that updates in place.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuContext, GpuOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// Where tensors live and ops run.
#[derive(Clone)]
pub enum Device {
    /// Plain Rust, multi-threaded with rayon natively: the test oracle and the fallback.
    Cpu,
    /// WGSL kernels through wgpu (Vulkan, Metal, DX12, GL, or WebGPU in a browser).
    Gpu(Arc<GpuContext>),
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(c) => write!(f, "wgpu:{} ({})", c.report().name, c.report().backend),
        }
    }
}

impl Device {
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }
    pub fn gpu(&self) -> Option<&Arc<GpuContext>> {
        match self {
            Device::Gpu(c) => Some(c),
            Device::Cpu => None,
        }
    }
}

/// `--backend auto|wgpu|cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// A real (hardware) GPU if one exists, otherwise the CPU backend.
    #[default]
    Auto,
    /// wgpu on whatever adapter exists, even a software one (lavapipe, SwiftShader).
    Wgpu,
    /// The plain-Rust backend.
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            "cpu" => Ok(Backend::Cpu),
            other => Err(format!("unknown backend '{other}' (expected auto, wgpu or cpu)")),
        }
    }
}

impl Backend {
    /// Open the device this choice names. `Auto` falls back to the CPU when there is no adapter or only
    /// a software one, and says why in the log.
    pub async fn open(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Wgpu => Ok(Device::Gpu(GpuContext::new(&GpuOptions::default()).await?)),
            Backend::Auto => match GpuContext::new(&GpuOptions::default()).await {
                Ok(ctx) if !ctx.report().is_software => Ok(Device::Gpu(ctx)),
                Ok(ctx) => {
                    log::info!("only a software adapter ({}) is present; using the CPU backend (force it with --backend wgpu)", ctx.report().name);
                    Ok(Device::Cpu)
                }
                Err(e) => {
                    log::info!("no usable GPU ({e}); using the CPU backend");
                    Ok(Device::Cpu)
                }
            },
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_blocking(self) -> Result<Device> {
        pollster::block_on(self.open())
    }
}

#[derive(Clone)]
pub(crate) enum Storage {
    CpuF32(Arc<Vec<f32>>),
    CpuU32(Arc<Vec<u32>>),
    Gpu(Arc<GpuBuffer>, Arc<GpuContext>),
}

/// A dense, row-major tensor.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    dtype: DType,
    pub(crate) storage: Storage,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {}, {:?})", self.shape, self.dtype.name(), self.device())
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    // ---- construction ---------------------------------------------------------------------------

    pub fn from_f32(device: &Device, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != data.len() {
            return Err(Error::shape("from_f32", format!("{} values do not fill the shape", data.len()), &[shape]));
        }
        let storage = match device {
            Device::Cpu => Storage::CpuF32(Arc::new(data)),
            Device::Gpu(c) => Storage::Gpu(Arc::new(c.upload(&data, "tensor")?), c.clone()),
        };
        Ok(Tensor { shape: shape.to_vec(), dtype: DType::F32, storage })
    }

    pub fn from_u32(device: &Device, data: Vec<u32>, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != data.len() {
            return Err(Error::shape("from_u32", format!("{} values do not fill the shape", data.len()), &[shape]));
        }
        let storage = match device {
            Device::Cpu => Storage::CpuU32(Arc::new(data)),
            Device::Gpu(c) => Storage::Gpu(Arc::new(c.upload(&data, "index tensor")?), c.clone()),
        };
        Ok(Tensor { shape: shape.to_vec(), dtype: DType::U32, storage })
    }

    /// A 1-element f32 tensor of shape [1].
    pub fn scalar(device: &Device, v: f32) -> Result<Tensor> {
        Tensor::from_f32(device, vec![v], &[1])
    }

    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_f32(device, vec![0.0; numel(shape)], shape),
            Device::Gpu(c) => Ok(Tensor::from_gpu(c, c.zeros(numel(shape), "zeros")?, shape, DType::F32)),
        }
    }

    pub fn full(device: &Device, shape: &[usize], v: f32) -> Result<Tensor> {
        Tensor::from_f32(device, vec![v; numel(shape)], shape)
    }

    /// Wrap a GPU buffer a kernel wrote.
    pub(crate) fn from_gpu(ctx: &Arc<GpuContext>, buf: GpuBuffer, shape: &[usize], dtype: DType) -> Tensor {
        debug_assert_eq!(buf.len(), numel(shape));
        Tensor { shape: shape.to_vec(), dtype, storage: Storage::Gpu(Arc::new(buf), ctx.clone()) }
    }

    /// An output tensor for a kernel on `ctx` (uninitialised: the kernel must write every element).
    pub(crate) fn gpu_output(ctx: &Arc<GpuContext>, shape: &[usize], dtype: DType, op: &str) -> Result<Tensor> {
        Ok(Tensor::from_gpu(ctx, ctx.alloc(numel(shape), op)?, shape, dtype))
    }

    // ---- inspection -----------------------------------------------------------------------------

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::CpuF32(_) | Storage::CpuU32(_) => Device::Cpu,
            Storage::Gpu(_, c) => Device::Gpu(c.clone()),
        }
    }

    /// `(rows, cols)` of a 2-D tensor. A 1-D tensor is an error, so that a vector is never silently taken
    /// for a row or a column.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::shape(op, "expected a 2-D tensor", &[&self.shape])),
        }
    }

    /// Same data, new shape (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.len() {
            return Err(Error::shape("reshape", "element count changes", &[&self.shape, shape]));
        }
        Ok(Tensor { shape: shape.to_vec(), dtype: self.dtype, storage: self.storage.clone() })
    }

    pub(crate) fn expect_dtype(&self, op: &'static str, dt: DType) -> Result<()> {
        if self.dtype != dt {
            return Err(Error::DType { op, expected: dt.name(), got: self.dtype.name() });
        }
        Ok(())
    }

    // ---- access for kernels ----------------------------------------------------------------------

    /// The f32 data of a CPU tensor.
    pub(crate) fn cpu_f32(&self, op: &'static str) -> Result<&[f32]> {
        match &self.storage {
            Storage::CpuF32(v) => Ok(v),
            Storage::CpuU32(_) => Err(Error::DType { op, expected: "f32", got: "u32" }),
            Storage::Gpu(..) => Err(Error::invalid(op, "internal: expected a CPU tensor")),
        }
    }
    pub(crate) fn cpu_u32(&self, op: &'static str) -> Result<&[u32]> {
        match &self.storage {
            Storage::CpuU32(v) => Ok(v),
            Storage::CpuF32(_) => Err(Error::DType { op, expected: "u32", got: "f32" }),
            Storage::Gpu(..) => Err(Error::invalid(op, "internal: expected a CPU tensor")),
        }
    }
    /// Mutable f32 data of a CPU tensor (copies if the storage is shared).
    pub(crate) fn cpu_f32_mut(&mut self, op: &'static str) -> Result<&mut Vec<f32>> {
        match &mut self.storage {
            Storage::CpuF32(v) => Ok(Arc::make_mut(v)),
            _ => Err(Error::invalid(op, "internal: expected a CPU f32 tensor")),
        }
    }
    pub(crate) fn gpu_buf(&self, op: &'static str) -> Result<&GpuBuffer> {
        match &self.storage {
            Storage::Gpu(b, _) => Ok(b),
            _ => Err(Error::invalid(op, "internal: expected a GPU tensor")),
        }
    }

    // ---- moving data -----------------------------------------------------------------------------

    /// Copy the values to the host (f32 tensors).
    pub async fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::CpuF32(v) => Ok(v.to_vec()),
            Storage::CpuU32(_) => Err(Error::DType { op: "to_vec_f32", expected: "f32", got: "u32" }),
            Storage::Gpu(b, c) => {
                self.expect_dtype("to_vec_f32", DType::F32)?;
                c.read::<f32>(b).await
            }
        }
    }

    /// Copy the values to the host (u32 tensors).
    pub async fn to_vec_u32(&self) -> Result<Vec<u32>> {
        match &self.storage {
            Storage::CpuU32(v) => Ok(v.to_vec()),
            Storage::CpuF32(_) => Err(Error::DType { op: "to_vec_u32", expected: "u32", got: "f32" }),
            Storage::Gpu(b, c) => {
                self.expect_dtype("to_vec_u32", DType::U32)?;
                c.read::<u32>(b).await
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_f32_blocking(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.to_vec_f32())
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_u32_blocking(&self) -> Result<Vec<u32>> {
        pollster::block_on(self.to_vec_u32())
    }

    /// The same values on another device.
    pub async fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        match self.dtype {
            DType::F32 => Tensor::from_f32(device, self.to_vec_f32().await?, &self.shape),
            DType::U32 => Tensor::from_u32(device, self.to_vec_u32().await?, &self.shape),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_device_blocking(&self, device: &Device) -> Result<Tensor> {
        pollster::block_on(self.to_device(device))
    }
}

/// The device shared by all `tensors`, or an error naming `op`.
pub(crate) fn common_device(op: &'static str, tensors: &[&Tensor]) -> Result<Device> {
    let d = tensors.first().map(|t| t.device()).unwrap_or(Device::Cpu);
    for t in tensors.iter().skip(1) {
        let e = t.device();
        if !e.same(&d) {
            return Err(Error::DeviceMismatch { op, a: format!("{d:?}"), b: format!("{e:?}") });
        }
    }
    Ok(d)
}
