//! Storage buffers are pooled: creating and first binding a buffer is expensive in WebGPU, and a training
//! step allocates the same sizes every time. A dropped [`GpuBuffer`] returns its `wgpu::Buffer` to the pool
//! of its size class; the next allocation of that class takes it. Reuse is safe without fences because all
//! work goes through one queue in submission order, and uploads never write into a pooled buffer (they use
//! buffers mapped at creation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Size classes: powers of two up to 4 MiB, then multiples of 4 MiB. Bounds waste to 2x for small buffers
/// and under 4 MiB for large ones.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    if b <= 4 << 20 {
        b.next_power_of_two()
    } else {
        b.div_ceil(4 << 20) * (4 << 20)
    }
}

pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Idle bytes kept at most; beyond this a returned buffer is released.
    pub(crate) max_free_bytes: u64,
    pub(crate) free_bytes: u64,
    pub(crate) live_bytes: u64,
    pub(crate) peak_live_bytes: u64,
    pub(crate) created: u64,
}

/// Memory accounting of the buffer pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes held by live tensors (in size classes).
    pub live_bytes: u64,
    /// The most `live_bytes` has been.
    pub peak_live_bytes: u64,
    /// Idle pooled bytes waiting for reuse.
    pub free_bytes: u64,
    /// Storage buffers created so far (a reused buffer is not counted again).
    pub buffers_created: u64,
}

/// Pooled buffers kept idle at most by default (beyond this, dropped buffers are released).
pub const DEFAULT_MAX_FREE_BYTES: u64 = 1 << 30;

impl Default for Pool {
    fn default() -> Self {
        Pool { free: HashMap::new(), max_free_bytes: DEFAULT_MAX_FREE_BYTES, free_bytes: 0, live_bytes: 0, peak_live_bytes: 0, created: 0 }
    }
}

impl Pool {
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&class)?.pop()?;
        self.free_bytes -= class;
        Some(b)
    }
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats { live_bytes: self.live_bytes, peak_live_bytes: self.peak_live_bytes, free_bytes: self.free_bytes, buffers_created: self.created }
    }
    pub(crate) fn note_live(&mut self, class: u64) {
        self.live_bytes += class;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }
    fn give_back(&mut self, class: u64, buf: wgpu::Buffer) {
        self.live_bytes -= class;
        if self.free_bytes + class <= self.max_free_bytes {
            self.free_bytes += class;
            self.free.entry(class).or_default().push(buf);
        }
        // Otherwise the handle is simply dropped, never `destroy()`ed: work recorded into the pending encoder
        // but not yet submitted may still use the buffer (destroying it made the next submit fail with
        // "buffer has been destroyed" once DBP15K-sized runs overflowed the pool); wgpu frees the memory
        // when the last command using it has finished.
    }
    /// Releases every idle buffer (dropped, for the same reason as above).
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.free_bytes = 0;
    }
}

/// A storage buffer on the GPU holding `len` 4-byte elements (f32 or u32). Returned to the pool on drop.
pub struct GpuBuffer {
    pub(crate) buffer: Option<wgpu::Buffer>,
    pub(crate) len: usize,
    pub(crate) class: u64,
    pub(crate) pool: Arc<Mutex<Pool>>,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.buffer.as_ref().expect("GpuBuffer used after drop")
    }
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes a binding of this buffer covers (never zero: WebGPU forbids empty bindings).
    pub fn binding_bytes(&self) -> u64 {
        (self.len as u64 * 4).max(4)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if let Ok(mut p) = self.pool.lock() {
                p.give_back(self.class, b);
            }
        }
    }
}
