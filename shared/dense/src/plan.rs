//! [`DensePlan`]: a chain of packed layers and the calls that run rows through it, splitting the
//! work between threads by rows or by a layer's panels; [`matmul`] and [`linear`] for one
//! product whose weights change every call (training).

use crate::kernel::{Kernel, Tile};
use crate::pack::{LayerWeights, PackedLayer, Weights, pack};
use crate::{
    Activation, DenseError, PANEL, PARALLEL_MIN_MACS, ROW_CHUNK_BYTES, SCRATCH_KEEP_FLOATS,
    SharedOut, team, threads,
};

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

thread_local! {
    /// Per-thread buffers for hidden layers' outputs.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}
