//! The matrix kernels a CPU may run and the tile they compute: a few input rows times one packed
//! panel, plus the bias and the activation, stored once. The kernels themselves are in `x86`.

use crate::Activation;
#[cfg(target_arch = "x86_64")]
use crate::x86;

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
    pub(crate) fn rows(self) -> usize {
        match self {
            Kernel::Avx512 => 6,
            Kernel::Avx2 => 3,
        }
    }
}

/// One panel of one layer, as the kernels see it (only x86-64 has kernels to read it).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Tile {
    pub(crate) k: usize,
    pub(crate) panel: *const f32,
    pub(crate) bias: *const f32,
    pub(crate) ldc: usize,
    /// Columns of this panel that exist (≤ [`crate::PANEL`]).
    pub(crate) cols: usize,
    pub(crate) activation: Activation,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Tile {
    /// Writes `rows` (≤ the kernel's rows) rows × `cols` columns at `c` from the rows at `a`.
    ///
    /// # Safety
    /// `a` holds `rows × k` floats; `c` has `rows` rows of stride `ldc` with `cols` writable
    /// columns; the CPU supports `kernel`.
    pub(crate) unsafe fn run(&self, kernel: Kernel, rows: usize, a: *const f32, c: *mut f32) {
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
    pub(crate) fn finish_row(&self, row: &mut [f32]) {
        match self.activation {
            Activation::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::Tanh => row.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::None | Activation::Relu => {}
        }
    }
}
