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

mod team;

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

/// The matrix kernel a CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// 6 rows × 32 columns in 12 ZMM accumulators.
    Avx512,
    /// 3 rows × 32 columns in 12 YMM accumulators.
    Avx2,
}

impl Kernel {
    /// The best kernel this CPU runs, if any.
    pub fn detect() -> Option<Self> {
        Self::available().into_iter().next()
    }

    /// Every kernel this CPU runs, best first.
    pub fn available() -> Vec<Self> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// Whether this CPU runs the kernel.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Kernel::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }

    /// Rows one kernel call covers.
    fn rows(self) -> usize {
        match self {
            Kernel::Avx512 => 6,
            Kernel::Avx2 => 3,
        }
    }
}

/// One layer: `y = activation(x · Wᵀ + b)`, weights packed into panels.
struct PackedLayer {
    in_features: usize,
    out_features: usize,
    /// `panels × in_features × PANEL` floats starting at `offset`, 64-byte aligned; columns past
    /// `out_features` are zero.
    storage: Vec<f32>,
    offset: usize,
    /// `panels × PANEL` floats, zero past `out_features`.
    bias: Vec<f32>,
    activation: Activation,
}

impl PackedLayer {
    fn panels(&self) -> usize {
        self.out_features.div_ceil(PANEL)
    }

    fn panel(&self, index: usize) -> *const f32 {
        self.storage[self.offset + index * self.in_features * PANEL..].as_ptr()
    }
}

/// Weights of one layer as the caller holds them.
pub struct LayerWeights<'a> {
    /// Row-major weights.
    pub weights: Weights<'a>,
    /// `true`: `[out_features, in_features]` (PyTorch, ONNX `Gemm` with `transB=1`);
    /// `false`: `[in_features, out_features]` (ONNX `MatMul`, `Gemm` with `transB=0`).
    pub out_major: bool,
    /// Inputs per row.
    pub in_features: usize,
    /// Outputs per row.
    pub out_features: usize,
    /// `out_features` values added to every row, if the layer has a bias.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
}

/// A layer's weights: floats, or the little-endian bytes of floats as files store them (packed
/// straight from the file, without a copy in between).
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Floats.
    F32(&'a [f32]),
    /// 4 little-endian bytes per float.
    LeBytes(&'a [u8]),
}

impl Weights<'_> {
    /// How many floats.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(v) => v.len(),
            Weights::LeBytes(b) => b.len() / 4,
        }
    }

    /// True if there are none (or the bytes aren't whole floats).
    pub fn is_empty(&self) -> bool {
        self.len() == 0 || matches!(self, Weights::LeBytes(b) if b.len() % 4 != 0)
    }

    /// Copies floats `start..start + out.len()` into `out`.
    pub fn read(&self, start: usize, out: &mut [f32]) {
        match self {
            Weights::F32(v) => out.copy_from_slice(&v[start..start + out.len()]),
            Weights::LeBytes(b) => {
                let bytes = &b[start * 4..(start + out.len()) * 4];
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
    }
}

/// A chain of dense layers ready to run.
pub struct DensePlan {
    layers: Vec<PackedLayer>,
    kernel: Kernel,
}

impl std::fmt::Debug for DensePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DensePlan")
            .field("kernel", &self.kernel)
            .field(
                "layers",
                &self
                    .layers
                    .iter()
                    .map(|l| (l.in_features, l.out_features, l.activation))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl DensePlan {
    /// Packs `layers` for this CPU's kernel; `None` when the CPU has none or the layers don't
    /// chain.
    pub fn new(layers: &[LayerWeights<'_>]) -> Option<Self> {
        Self::with_kernel(layers, Kernel::detect()?)
    }

    /// [`DensePlan::new`] with a chosen kernel (tests run every kernel the CPU has); `None` if
    /// the CPU doesn't run it.
    pub fn with_kernel(layers: &[LayerWeights<'_>], kernel: Kernel) -> Option<Self> {
        Self::pack_with(layers, kernel, 1)
    }

    /// Packs `layers` for `kernel`, large layers on `threads` threads.
    fn pack_with(layers: &[LayerWeights<'_>], kernel: Kernel, threads: usize) -> Option<Self> {
        if layers.is_empty() || !kernel.is_supported() {
            return None;
        }
        let mut packed = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let (k, n) = (layer.in_features, layer.out_features);
            if k == 0
                || n == 0
                || layer.weights.len() != k * n
                || layer.weights.is_empty()
                || layer.bias.is_some_and(|b| b.len() != n)
                || (i > 0 && layers[i - 1].out_features != k)
            {
                return None;
            }
            packed.push(pack(layer, threads));
        }
        Some(Self {
            layers: packed,
            kernel,
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.layers[0].in_features
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.layers[self.layers.len() - 1].out_features
    }

    /// The kernel the plan runs on.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Runs `rows` rows of `input` (row-major, `rows × in_features`) through every layer.
    ///
    /// Every size is checked before a kernel runs: an `input` that doesn't hold exactly
    /// `rows × in_features` values, or a `rows` whose buffers can't be sized without overflow,
    /// is an error, never an out-of-bounds write.
    pub fn forward(&self, input: &[f32], rows: usize) -> Result<Vec<f32>, DenseError> {
        self.forward_with(input, rows, threads())
    }

    /// [`DensePlan::forward`] on `threads` threads instead of the process-wide count.
    pub fn forward_with(
        &self,
        input: &[f32],
        rows: usize,
        threads: usize,
    ) -> Result<Vec<f32>, DenseError> {
        let (k, width) = (self.in_features(), self.out_features());
        if rows.checked_mul(k) != Some(input.len()) {
            return Err(DenseError::InputSize {
                rows,
                in_features: k,
                values: input.len(),
            });
        }
        // Every buffer of the call (the output and each hidden layer's) is rows × a layer's
        // width floats; the widest must be addressable.
        let widest = self
            .layers
            .iter()
            .map(|l| l.out_features)
            .max()
            .unwrap_or(0);
        if rows
            .checked_mul(widest.max(k))
            .and_then(|n| n.checked_mul(std::mem::size_of::<f32>()))
            .is_none_or(|bytes| bytes > isize::MAX as usize)
        {
            return Err(DenseError::TooManyRows { rows });
        }
        let threads = threads.max(1);
        let mut output = vec![0.0f32; rows * width];
        // With a kernel block of rows per thread, each thread runs the whole chain on its own
        // rows: one hand-off per call. Fewer rows: the threads share each layer's columns.
        let macs: usize = self
            .layers
            .iter()
            .map(|l| rows.saturating_mul(l.in_features.saturating_mul(l.out_features)))
            .fold(0, usize::saturating_add);
        let parts =
            if threads > 1 && rows >= threads * self.kernel.rows() && macs >= PARALLEL_MIN_MACS {
                threads
            } else {
                1
            };
        if parts == 1 {
            self.forward_into(input, rows, &mut output, threads);
            return Ok(output);
        }
        let per_part = rows.div_ceil(parts);
        let out_ptr = SharedOut(output.as_mut_ptr());
        team::run_parts(parts, threads, &|part| {
            let first = (per_part * part).min(rows);
            let count = per_part.min(rows - first);
            let x = &input[first * k..(first + count) * k];
            // SAFETY: parts cover disjoint row ranges of `output`, which outlives the call.
            let out =
                unsafe { std::slice::from_raw_parts_mut(out_ptr.at(first * width), count * width) };
            self.forward_into(x, count, out, 1);
        });
        Ok(output)
    }

    /// Runs `rows` rows through every layer into `output`, with `threads` sharing each layer's
    /// columns.
    fn forward_into(&self, input: &[f32], rows: usize, output: &mut [f32], threads: usize) {
        let last = self.layers.len() - 1;
        // Hidden activations live in this thread's two scratch buffers, reused call after call,
        // so a large batch doesn't map, fault in and zero fresh pages for every layer.
        SCRATCH.with_borrow_mut(|[front, back]| {
            for (i, layer) in self.layers.iter().enumerate() {
                let x: &[f32] = if i == 0 { input } else { &front[..] };
                if i == last {
                    self.run_layer(layer, x, rows, output, threads);
                } else {
                    back.resize(rows * layer.out_features, 0.0);
                    back.truncate(rows * layer.out_features);
                    self.run_layer(layer, x, rows, back, threads);
                    std::mem::swap(front, back);
                }
            }
            for buffer in [front, back] {
                if buffer.capacity() > SCRATCH_KEEP_FLOATS {
                    *buffer = Vec::new();
                }
            }
        });
    }

    fn run_layer(
        &self,
        layer: &PackedLayer,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        threads: usize,
    ) {
        let panels = layer.panels();
        let parts = if rows * layer.in_features * layer.out_features < PARALLEL_MIN_MACS {
            1
        } else {
            threads.min(panels).max(1)
        };
        let out_ptr = SharedOut(out.as_mut_ptr());
        let run_part = |part: usize| {
            let first = panels * part / parts;
            let last = panels * (part + 1) / parts;
            // SAFETY: parts cover disjoint panel ranges, i.e. disjoint output columns, of an
            // `out` that outlives the scope below.
            unsafe { self.panels_range(layer, x, rows, out_ptr, first..last) }
        };
        team::run_parts(parts, threads, &run_part);
    }

    /// Computes output columns of panels `range` for every row.
    ///
    /// # Safety
    /// `out` points to `rows × out_features` floats that no one else writes in these columns.
    unsafe fn panels_range(
        &self,
        layer: &PackedLayer,
        x: &[f32],
        rows: usize,
        out: SharedOut,
        range: std::ops::Range<usize>,
    ) {
        let k = layer.in_features;
        let n = layer.out_features;
        let mr = self.kernel.rows();
        let chunk = (ROW_CHUNK_BYTES / (k * 4)).max(mr) / mr * mr;
        let mut row0 = 0;
        while row0 < rows {
            let chunk_rows = chunk.min(rows - row0);
            for panel in range.clone() {
                let cols = PANEL.min(n - panel * PANEL);
                let tile = Tile {
                    k,
                    panel: layer.panel(panel),
                    bias: layer.bias[panel * PANEL..].as_ptr(),
                    ldc: n,
                    cols,
                    activation: layer.activation,
                };
                let mut r = row0;
                while r < row0 + chunk_rows {
                    let block = mr.min(row0 + chunk_rows - r);
                    // SAFETY: rows r..r+block of x exist (k floats each); the output tile is
                    // rows r..r+block, columns panel*PANEL..+cols, inside `out`.
                    unsafe {
                        let a = x.as_ptr().add(r * k);
                        let c = out.0.add(r * n + panel * PANEL);
                        tile.run(self.kernel, block, a, c);
                    }
                    r += block;
                }
            }
            row0 += chunk_rows;
        }
    }
}

/// One matrix product `a [m × k] · b [k × n]` on `threads` threads, `b` packed for the call
/// (training multiplies by weights that change every step); `None` where the CPU has no kernel.
/// `b_out_major`: `b` is stored as its transpose, `[n × k]` row-major.
///
/// # Panics
/// If `a` doesn't hold `m × k` values or `b` `k × n`.
pub fn matmul(
    a: &[f32],
    m: usize,
    k: usize,
    b: Weights<'_>,
    b_out_major: bool,
    n: usize,
    threads: usize,
) -> Option<Vec<f32>> {
    linear(
        a,
        m,
        LayerWeights {
            weights: b,
            out_major: b_out_major,
            in_features: k,
            out_features: n,
            bias: None,
            activation: Activation::None,
        },
        threads,
    )
}

/// One layer `activation(a [m × in] · W + bias)` on `threads` threads, its weights packed for
/// the call; `None` where the CPU has no kernel.
///
/// # Panics
/// If `a` doesn't hold `m × in_features` values or the weights `in × out`.
pub fn linear(a: &[f32], m: usize, layer: LayerWeights<'_>, threads: usize) -> Option<Vec<f32>> {
    let (k, n) = (layer.in_features, layer.out_features);
    assert_eq!(Some(a.len()), m.checked_mul(k), "left operand size");
    assert_eq!(
        Some(layer.weights.len()),
        k.checked_mul(n),
        "right operand size"
    );
    let plan = DensePlan::pack_with(&[layer], Kernel::detect()?, threads)?;
    match plan.forward_with(a, m, threads) {
        Ok(out) => Some(out),
        Err(e) => panic!("{e}"),
    }
}

/// A raw output pointer handed to the threads of one layer; each writes its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
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
    unsafe fn at(self, floats: usize) -> *mut f32 {
        // SAFETY: the caller keeps the offset inside the buffer.
        unsafe { self.0.add(floats) }
    }
}

/// Packs a layer's weights into panels and pads its bias.
fn pack(layer: &LayerWeights<'_>, threads: usize) -> PackedLayer {
    let (k, n) = (layer.in_features, layer.out_features);
    let panels = n.div_ceil(PANEL);
    let len = panels * k * PANEL;
    // 16 spare floats let the panels start on a 64-byte boundary.
    let mut storage = vec![0.0f32; len + 16];
    let offset = storage.as_ptr().align_offset(64).min(16);
    // Training packs its weights for every product: large ones are packed by every thread.
    let parts = if threads > 1 && k * n >= PARALLEL_MIN_MACS / 4 {
        threads.min(panels)
    } else {
        1
    };
    let blocks = SharedOut(storage[offset..offset + len].as_mut_ptr());
    team::run_parts(parts, threads, &|part| {
        for panel in panels * part / parts..panels * (part + 1) / parts {
            // SAFETY: parts pack disjoint panels, each `k × PANEL` floats of `storage`, which
            // outlives the call.
            let block =
                unsafe { std::slice::from_raw_parts_mut(blocks.at(panel * k * PANEL), k * PANEL) };
            pack_panel(layer, panel, block);
        }
    });
    let mut bias = vec![0.0f32; panels * PANEL];
    if let Some(b) = layer.bias {
        bias[..n].copy_from_slice(b);
    }
    PackedLayer {
        in_features: k,
        out_features: n,
        storage,
        offset,
        bias,
        activation: layer.activation,
    }
}

/// Packs panel `panel` of a layer's weights into `block` (`in_features × PANEL` floats).
fn pack_panel(layer: &LayerWeights<'_>, panel: usize, block: &mut [f32]) {
    let (k, n) = (layer.in_features, layer.out_features);
    let first = panel * PANEL;
    let cols = PANEL.min(n - first);
    if layer.out_major {
        // Each output's weights are one contiguous run of `k`: read it once, scatter it down
        // its column of the panel.
        let mut run = vec![0.0f32; k];
        for col in 0..cols {
            layer.weights.read((first + col) * k, &mut run);
            for (row, &w) in block.chunks_exact_mut(PANEL).zip(&run) {
                row[col] = w;
            }
        }
    } else {
        // Each input's weights are a row of `n`: copy this panel's slice of it.
        for (p, row) in block.chunks_exact_mut(PANEL).enumerate() {
            layer.weights.read(p * n + first, &mut row[..cols]);
        }
    }
}

/// One panel of one layer, as the kernels see it (only x86-64 has kernels to read it).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile {
    k: usize,
    panel: *const f32,
    bias: *const f32,
    ldc: usize,
    /// Columns of this panel that exist (≤ [`PANEL`]).
    cols: usize,
    activation: Activation,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Tile {
    /// Writes `rows` (≤ the kernel's rows) rows × `cols` columns at `c` from the rows at `a`.
    ///
    /// # Safety
    /// `a` holds `rows × k` floats; `c` has `rows` rows of stride `ldc` with `cols` writable
    /// columns; the CPU supports `kernel`.
    unsafe fn run(&self, kernel: Kernel, rows: usize, a: *const f32, c: *mut f32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller.
        unsafe {
            match (kernel, rows) {
                (Kernel::Avx512, 6) => x86::avx512::<6>(self, a, c),
                (Kernel::Avx512, 5) => x86::avx512::<5>(self, a, c),
                (Kernel::Avx512, 4) => x86::avx512::<4>(self, a, c),
                (Kernel::Avx512, 3) => x86::avx512::<3>(self, a, c),
                (Kernel::Avx512, 2) => x86::avx512::<2>(self, a, c),
                (Kernel::Avx512, _) => x86::avx512_one_row(self, a, c),
                (Kernel::Avx2, 3) => x86::avx2::<3>(self, a, c),
                (Kernel::Avx2, 2) => x86::avx2::<2>(self, a, c),
                (Kernel::Avx2, _) => x86::avx2::<1>(self, a, c),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kernel, rows, a, c);
            unreachable!("dense kernels exist only on x86-64");
        }
    }

    /// Applies an activation with no vector form to a stored row.
    fn finish_row(&self, row: &mut [f32]) {
        match self.activation {
            Activation::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::Tanh => row.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::None | Activation::Relu => {}
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

thread_local! {
    /// Per-thread buffers for hidden layers' outputs.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The same network in f64, weights as given.
    fn reference(layers: &[LayerWeights<'_>], input: &[f32], rows: usize) -> Vec<f32> {
        let mut x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
        for l in layers {
            let (k, n) = (l.in_features, l.out_features);
            let mut y = vec![0.0f64; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let mut sum = l.bias.map_or(0.0, |b| b[j] as f64);
                    for p in 0..k {
                        let at = if l.out_major { j * k + p } else { p * n + j };
                        let mut w = [0.0f32];
                        l.weights.read(at, &mut w);
                        let w = w[0];
                        sum += x[r * k + p] * w as f64;
                    }
                    y[r * n + j] = match l.activation {
                        Activation::None => sum,
                        // NaN stays NaN, as in PyTorch (f64::max would make it 0).
                        Activation::Relu if sum.is_nan() => sum,
                        Activation::Relu => sum.max(0.0),
                        Activation::Sigmoid => 1.0 / (1.0 + (-sum).exp()),
                        Activation::Tanh => sum.tanh(),
                    };
                }
            }
            x = y;
        }
        x.into_iter().map(|v| v as f32).collect()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        // f32 sums of thousands of terms drift from f64 by a little of the outputs' scale;
        // a wrong row, column or bias is off by the whole scale.
        let scale = want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{what}: element {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn every_kernel_matches_a_reference_across_shapes_layouts_and_activations() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            eprintln!("no dense kernel on this CPU; nothing to check");
            return;
        }
        let activations = [
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::None,
        ];
        let mut seed = 1;
        // Widths around the panel (32) and the AVX-512 kernel's half (16); row counts around
        // both kernels' blocks (6 and 3) and a row chunk of several blocks.
        for &(k, hidden, n) in &[
            (1, 1, 1),
            (3, 16, 5),
            (17, 33, 31),
            (100, 64, 1),
            (64, 70, 32),
            (2000, 40, 17),
        ] {
            for out_major in [true, false] {
                for activation in activations {
                    let (w1, b1) = (values(k * hidden, seed), values(hidden, seed + 1));
                    let (w2, b2) = (values(hidden * n, seed + 2), values(n, seed + 3));
                    let w2_bytes: Vec<u8> = w2.iter().flat_map(|v| v.to_le_bytes()).collect();
                    seed += 4;
                    let layers = [
                        LayerWeights {
                            weights: Weights::F32(&w1),
                            out_major,
                            in_features: k,
                            out_features: hidden,
                            bias: Some(&b1),
                            activation,
                        },
                        LayerWeights {
                            weights: Weights::LeBytes(&w2_bytes),
                            out_major: !out_major,
                            in_features: hidden,
                            out_features: n,
                            bias: (n % 2 == 1).then_some(&b2[..]),
                            activation: Activation::None,
                        },
                    ];
                    for &kernel in &kernels {
                        let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
                        for rows in [1, 2, 3, 4, 5, 6, 7, 13, 200] {
                            let input = values(rows * k, seed);
                            let what = format!(
                                "{kernel:?} k={k} hidden={hidden} n={n} out_major={out_major} {activation:?} rows={rows}"
                            );
                            assert_close(
                                &plan.forward(&input, rows).expect("sizes fit"),
                                &reference(&layers, &input, rows),
                                &what,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Like [`assert_close`], with NaN allowed where the reference has NaN (and only there).
    fn assert_close_or_both_nan(got: &[f32], want: &[f32], what: &str) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
        }
        let scale = want
            .iter()
            .filter(|w| w.is_finite())
            .fold(1.0f32, |m, w| m.max(w.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ok = if w.is_nan() {
                g.is_nan()
            } else {
                (g - w).abs() <= 1e-4 * scale
            };
            if !ok {
                return Err(format!("{what}: element {i}: {g} vs {w}"));
            }
        }
        Ok(())
    }

    fn activation_of(i: usize) -> Activation {
        [
            Activation::None,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
        ][i % 4]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Random chains — 1 to 5 layers, widths around the kernels' blocks (16, 32) and the
        /// one-row kernel, 0 to 300 rows, every activation, either weight layout, NaN inputs —
        /// give the f64 reference's answer on every kernel the CPU has, on 1 and 2 threads.
        #[test]
        fn random_chains_match_an_f64_reference(
            widths in proptest::collection::vec(
                proptest::prop_oneof![1usize..=4, 14usize..=18, 30usize..=34, 62usize..=66, 95usize..=97],
                2..=6,
            ),
            activations in proptest::collection::vec(0usize..4, 5),
            layouts in proptest::collection::vec(proptest::bool::ANY, 5),
            rows in proptest::prop_oneof![0usize..=8, 0usize..=300],
            nan_at in proptest::option::of(0usize..100_000),
            threads in 1usize..=2,
            seed in 0u64..1_000_000,
        ) {
            let kernels = Kernel::available();
            let depth = widths.len() - 1;
            let weights: Vec<(Vec<f32>, Vec<f32>)> = (0..depth)
                .map(|i| {
                    let s = seed * 16 + i as u64 * 2;
                    (values(widths[i] * widths[i + 1], s), values(widths[i + 1], s + 1))
                })
                .collect();
            let layers: Vec<LayerWeights<'_>> = (0..depth)
                .map(|i| LayerWeights {
                    weights: Weights::F32(&weights[i].0),
                    out_major: layouts[i],
                    in_features: widths[i],
                    out_features: widths[i + 1],
                    bias: (i % 2 == 0).then_some(&weights[i].1[..]),
                    activation: activation_of(activations[i]),
                })
                .collect();
            let mut input = values(rows * widths[0], seed + 7);
            if let Some(at) = nan_at
                && !input.is_empty()
            {
                let at = at % input.len();
                input[at] = f32::NAN;
            }
            let want = reference(&layers, &input, rows);
            for &kernel in &kernels {
                let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
                let got = plan.forward_with(&input, rows, threads).expect("sizes fit");
                let what = format!("{kernel:?} widths={widths:?} rows={rows} threads={threads}");
                assert_close_or_both_nan(&got, &want, &what).map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }

    /// Sizes that would overflow or don't match are refused before any kernel runs.
    #[test]
    fn sizes_that_overflow_or_disagree_are_errors_not_writes() {
        let Some(kernel) = Kernel::detect() else {
            return;
        };
        let (w, b) = (values(8 * 40, 3), values(40, 4));
        let layers = [LayerWeights {
            weights: Weights::F32(&w),
            out_major: true,
            in_features: 8,
            out_features: 40,
            bias: Some(&b),
            activation: Activation::Relu,
        }];
        let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
        // rows × 8 wraps to 0 = the empty input's length.
        let wraps = (usize::MAX / 8) + 1;
        assert_eq!(wraps.wrapping_mul(8), 0);
        assert!(matches!(
            plan.forward(&[], wraps),
            Err(DenseError::InputSize { .. })
        ));
        assert!(matches!(
            plan.forward(&[1.0; 7], 1),
            Err(DenseError::InputSize { .. })
        ));
        assert_eq!(plan.forward(&[], 0).expect("no rows"), Vec::<f32>::new());
    }

    #[test]
    fn two_threads_give_the_results_of_one() {
        let Some(kernel) = Kernel::detect() else {
            return;
        };
        let (k, n) = (700, 257);
        let (w, b) = (values(k * n, 7), values(n, 8));
        let layers = [LayerWeights {
            weights: Weights::F32(&w),
            out_major: true,
            in_features: k,
            out_features: n,
            bias: Some(&b),
            activation: Activation::Relu,
        }];
        let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
        // 50 rows: each thread takes 25 rows through the chain; 7 rows (over PARALLEL_MIN_MACS):
        // the threads split each layer's columns; 1 row: one thread.
        for rows in [50, 7, 1] {
            let input = values(rows * k, 9);
            let one = plan.forward_with(&input, rows, 1).expect("sizes fit");
            let two = plan.forward_with(&input, rows, 2).expect("sizes fit");
            // Row blocks differ with the split (a lone row sums in four lanes): the last bits may.
            assert_close(&two, &one, "two threads vs one");
            assert_close(&one, &reference(&layers, &input, rows), "threads");
        }
        assert!(7 * k * n >= PARALLEL_MIN_MACS && k * n < PARALLEL_MIN_MACS);
    }

    #[test]
    fn matmul_packs_large_operands_on_every_thread_with_the_same_result() {
        if Kernel::detect().is_none() {
            return;
        }
        let (m, k, n) = (20, 600, 500);
        assert!(k * n >= PARALLEL_MIN_MACS / 4, "the packing is split");
        let a = values(m * k, 11);
        let b = values(k * n, 12);
        for out_major in [false, true] {
            let layer = LayerWeights {
                weights: Weights::F32(&b),
                out_major,
                in_features: k,
                out_features: n,
                bias: None,
                activation: Activation::None,
            };
            let want = reference(&[layer], &a, m);
            for threads in [1, 2] {
                let got =
                    matmul(&a, m, k, Weights::F32(&b), out_major, n, threads).expect("kernel");
                assert_close(
                    &got,
                    &want,
                    &format!("out_major={out_major} threads={threads}"),
                );
            }
        }
    }

    #[test]
    fn layers_that_do_not_chain_or_hold_the_wrong_count_are_refused() {
        let Some(kernel) = Kernel::detect() else {
            return;
        };
        let w = values(12, 1);
        let layer = |k, n| LayerWeights {
            weights: Weights::F32(&w),
            out_major: true,
            in_features: k,
            out_features: n,
            bias: None,
            activation: Activation::None,
        };
        assert!(DensePlan::with_kernel(&[layer(3, 4), layer(4, 3)], kernel).is_some());
        assert!(DensePlan::with_kernel(&[layer(3, 4), layer(3, 4)], kernel).is_none());
        assert!(DensePlan::with_kernel(&[layer(5, 4)], kernel).is_none());
        assert!(DensePlan::with_kernel(&[], kernel).is_none());
    }
}
