//! The AVX-512 and AVX2 kernels: a tile of rows times one packed panel, with the bias and the
//! activation applied before the single store.

use std::arch::x86_64::*;

use crate::kernel::Tile;
use crate::{Activation, PANEL};

/// `R` rows × 32 columns: 2·R ZMM accumulators, one broadcast per row and input. A last
/// panel of 16 columns or fewer computes only the first 16.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512<const R: usize>(t: &Tile, a: *const f32, c: *mut f32) {
    // SAFETY: forwarded.
    unsafe {
        if t.cols > 16 {
            avx512_cols::<R, true>(t, a, c)
        } else {
            avx512_cols::<R, false>(t, a, c)
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn avx512_cols<const R: usize, const WIDE: bool>(t: &Tile, a: *const f32, c: *mut f32) {
    // SAFETY: the caller guarantees the buffers' extents and the CPU feature.
    unsafe {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let mut b = t.panel;
        for p in 0..t.k {
            let b0 = _mm512_load_ps(b);
            let b1 = if WIDE {
                _mm512_load_ps(b.add(16))
            } else {
                _mm512_setzero_ps()
            };
            for r in 0..R {
                let x = _mm512_set1_ps(*a.add(r * t.k + p));
                lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                if WIDE {
                    hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
                }
            }
            b = b.add(PANEL);
        }
        store512::<R>(t, &lo, &hi, c);
    }
}

/// One row × 32 columns, four inputs at a time into eight accumulators: a single row has
/// too few independent sums to hide the latency of a multiply-add.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512_one_row(t: &Tile, a: *const f32, c: *mut f32) {
    // SAFETY: as `avx512`.
    unsafe {
        let mut lo = [_mm512_setzero_ps(); 4];
        let mut hi = [_mm512_setzero_ps(); 4];
        let mut b = t.panel;
        let mut p = 0;
        while p + 4 <= t.k {
            for u in 0..4 {
                let x = _mm512_set1_ps(*a.add(p + u));
                lo[u] = _mm512_fmadd_ps(x, _mm512_load_ps(b), lo[u]);
                hi[u] = _mm512_fmadd_ps(x, _mm512_load_ps(b.add(16)), hi[u]);
                b = b.add(PANEL);
            }
            p += 4;
        }
        while p < t.k {
            let x = _mm512_set1_ps(*a.add(p));
            lo[0] = _mm512_fmadd_ps(x, _mm512_load_ps(b), lo[0]);
            hi[0] = _mm512_fmadd_ps(x, _mm512_load_ps(b.add(16)), hi[0]);
            b = b.add(PANEL);
            p += 1;
        }
        let lo = [_mm512_add_ps(
            _mm512_add_ps(lo[0], lo[1]),
            _mm512_add_ps(lo[2], lo[3]),
        )];
        let hi = [_mm512_add_ps(
            _mm512_add_ps(hi[0], hi[1]),
            _mm512_add_ps(hi[2], hi[3]),
        )];
        store512::<1>(t, &lo, &hi, c);
    }
}

/// Bias, activation and a (masked, at the last panel) store of `R` rows.
#[target_feature(enable = "avx512f")]
unsafe fn store512<const R: usize>(t: &Tile, lo: &[__m512; R], hi: &[__m512; R], c: *mut f32) {
    // SAFETY: as `avx512`; masked stores touch only the `cols` columns that exist.
    unsafe {
        let bias_lo = _mm512_loadu_ps(t.bias);
        let bias_hi = _mm512_loadu_ps(t.bias.add(16));
        let zero = _mm512_setzero_ps();
        let mask_lo: __mmask16 = if t.cols >= 16 {
            0xffff
        } else {
            ((1u32 << t.cols) - 1) as u16
        };
        let mask_hi: __mmask16 = if t.cols >= 32 {
            0xffff
        } else if t.cols > 16 {
            ((1u32 << (t.cols - 16)) - 1) as u16
        } else {
            0
        };
        for r in 0..R {
            let mut v0 = _mm512_add_ps(lo[r], bias_lo);
            let mut v1 = _mm512_add_ps(hi[r], bias_hi);
            if t.activation == Activation::Relu {
                // max_ps returns its second operand when either is NaN: zero first keeps
                // NaN, as PyTorch and tract do.
                v0 = _mm512_max_ps(zero, v0);
                v1 = _mm512_max_ps(zero, v1);
            }
            let row = c.add(r * t.ldc);
            _mm512_mask_storeu_ps(row, mask_lo, v0);
            _mm512_mask_storeu_ps(row.add(16), mask_hi, v1);
            if !matches!(t.activation, Activation::None | Activation::Relu) {
                t.finish_row(std::slice::from_raw_parts_mut(row, t.cols));
            }
        }
    }
}

/// `R` rows × 32 columns in 4·R YMM accumulators.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2<const R: usize>(t: &Tile, a: *const f32, c: *mut f32) {
    // SAFETY: as `avx512`.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        let mut b = t.panel;
        for p in 0..t.k {
            let bs = [
                _mm256_load_ps(b),
                _mm256_load_ps(b.add(8)),
                _mm256_load_ps(b.add(16)),
                _mm256_load_ps(b.add(24)),
            ];
            for (r, row_acc) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_ps(*a.add(r * t.k + p));
                for (slot, b) in row_acc.iter_mut().zip(&bs) {
                    *slot = _mm256_fmadd_ps(x, *b, *slot);
                }
            }
            b = b.add(PANEL);
        }
        let zero = _mm256_setzero_ps();
        let mut staged = [0.0f32; PANEL];
        for (r, row_acc) in acc.iter().enumerate() {
            for (q, sum) in row_acc.iter().enumerate() {
                let mut v = _mm256_add_ps(*sum, _mm256_loadu_ps(t.bias.add(8 * q)));
                if t.activation == Activation::Relu {
                    // NaN stays NaN (see `avx512_cols`).
                    v = _mm256_max_ps(zero, v);
                }
                _mm256_storeu_ps(staged.as_mut_ptr().add(8 * q), v);
            }
            let row = std::slice::from_raw_parts_mut(c.add(r * t.ldc), t.cols);
            row.copy_from_slice(&staged[..t.cols]);
            t.finish_row(row);
        }
    }
}
