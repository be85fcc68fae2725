//! Dense-layer chains (MLPs) on weights packed once at load, for x86-64 with AVX-512 or AVX2.
//!
//! Both engines multiply a layer's weights as they were stored: every prediction re-packs them
//! into the layout the matrix kernel reads (or walks them strided), then adds the bias and applies
//! the activation in separate passes over the output. For the networks maas serves most, a chain
//! of fully connected layers, that repacking is most of the cost below a few hundred rows. Here
//! each layer's weights are packed once, when the version loads, into column panels of
//! [`PANEL`] floats stored row after row of the input dimension; a register-blocked kernel
//! multiplies a few input rows by one panel and adds the bias and the activation before it stores
//! the result, so each output is written once.
//!
//! With more than one thread and enough rows, each thread runs the whole chain on its share of
//! the rows (one hand-off per call); with fewer rows, a layer's panels are split between the
//! calling thread and the workers of a team owned by this crate, each thread reading only its
//! share of the weights. Work under 2²⁰ multiply-adds stays on the calling thread. The team's
//! workers stay awake briefly between calls, so back-to-back calls don't pay for waking a parked
//! thread (see the `team` module).
//!
//! The kernels need AVX-512F, or AVX2 with FMA, picked at run time. On other CPUs (e.g. Graviton)
//! [`DensePlan::new`] returns `None` and the caller serves the model another way.
//!
//! This is the workspace's one crate with `unsafe` code: the intrinsics, and the output pointer
//! that the threads of one layer share, each writing its own columns.

use std::sync::atomic::{AtomicUsize, Ordering};

mod kernel;
mod pack;
mod plan;
mod team;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use kernel::Kernel;
pub use pack::{LayerWeights, Weights};
pub use plan::{DensePlan, linear, matmul};

/// Why a call was refused before any kernel ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenseError {
    /// The input doesn't hold `rows × in_features` values (or that product overflows).
    #[error("the input holds {values} values, not {rows} rows × {in_features} features")]
    InputSize {
        /// Rows asked for.
        rows: usize,
        /// Values per row the plan takes.
        in_features: usize,
        /// Values given.
        values: usize,
    },
    /// So many rows that a layer's output could not be addressed.
    #[error("{rows} rows are too many for one call; send smaller batches")]
    TooManyRows {
        /// Rows asked for.
        rows: usize,
    },
}

/// The activation a layer applies to its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None (an output layer).
    None,
    /// max(0, x), in the kernels' epilogue; NaN stays NaN, as in PyTorch.
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
}

/// Output columns per packed panel: two AVX-512 registers, four AVX2 registers.
const PANEL: usize = 32;

/// Bytes of input rows kept hot while a chunk of rows sweeps every panel of a layer.
const ROW_CHUNK_BYTES: usize = 384 * 1024;

/// Scratch buffers larger than this (16 MiB) are given back after the call instead of kept.
const SCRATCH_KEEP_FLOATS: usize = 4 << 20;

/// Below this many multiply-adds a layer runs on one thread: waking a parked worker takes
/// tens of microseconds on a busy or virtual machine, as long as a single row of the seed
/// model takes on one core.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Runs `work` on each of `items`, the first on the calling thread and the others on the dense
/// kernels' team of workers (on `threads` threads in all; at most one item per thread is the
/// intended use). For work that runs between the kernels' calls, e.g. an optimizer's update of
/// large parameters: the workers are the ones already awake from the last product, where a
/// second pool would have to wake its own.
///
/// # Panics
/// If `work` panics on any item.
pub fn for_each_on_team<T: Send>(items: Vec<T>, threads: usize, work: impl Fn(T) + Sync) {
    let cells: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|item| std::sync::Mutex::new(Some(item)))
        .collect();
    team::run_parts(cells.len(), threads, &|part| {
        let item = cells[part]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(item) = item {
            work(item);
        }
    });
}

/// Threads the dense kernels use per prediction (1 unless set).
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets the threads per prediction (process-wide). The team of worker threads is sized by the
/// first prediction that uses more than one.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Threads per prediction.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// A raw output pointer handed to the threads of one layer; each writes its own columns.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);
// SAFETY: see `panels_range`: threads write disjoint columns and the buffer outlives them.
unsafe impl Send for SharedOut {}
// SAFETY: as for `Send`: shared only to hand each thread its own columns.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `floats` past the start (a method, so closures capture the whole `Sync`
    /// wrapper rather than its raw field).
    ///
    /// # Safety
    /// As for `pointer::add`: the result stays inside the buffer.
    pub(crate) unsafe fn at(self, floats: usize) -> *mut f32 {
        // SAFETY: the caller keeps the offset inside the buffer.
        unsafe { self.0.add(floats) }
    }
}
