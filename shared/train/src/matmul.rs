//! The training step's matrix products on maas's dense kernels (`maas-dense`), as a candle op.
//!
//! candle hands every product to the gemm crate, which re-packs both operands on each call and,
//! given two threads, was slower than with one on the seed workload's shapes (batch 256:
//! 0.81×). The dense kernels split a product's columns between the threads, each packing and
//! reading only its share. Where the CPU has no dense kernel (Graviton) candle's own matmul runs.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use maas_dense::Weights;

/// `a [m, k] · b [k, n]` on `threads` threads.
pub(crate) fn matmul(a: &Tensor, b: &Tensor, threads: usize) -> candle_core::Result<Tensor> {
    let dense = maas_dense::Kernel::detect().is_some()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.rank() == 2
        && b.rank() == 2;
    if !dense {
        return a.matmul(b);
    }
    a.apply_op2_no_bwd(b, &DenseMatmul { threads })
}

struct DenseMatmul {
    threads: usize,
}

/// A 2-D operand's values in row-major order: borrowed when they already are, else copied in
/// 32 × 32 blocks (a transposed view reads down columns).
fn row_major<'a>(data: &'a [f32], layout: &Layout, rows: usize, cols: usize) -> Cow<'a, [f32]> {
    let start = layout.start_offset();
    if layout.is_contiguous() {
        return Cow::Borrowed(&data[start..start + rows * cols]);
    }
    let (rs, cs) = (layout.stride()[0], layout.stride()[1]);
    let mut out = vec![0.0f32; rows * cols];
    const BLOCK: usize = 32;
    for i0 in (0..rows).step_by(BLOCK) {
        for j0 in (0..cols).step_by(BLOCK) {
            for i in i0..(i0 + BLOCK).min(rows) {
                for j in j0..(j0 + BLOCK).min(cols) {
                    out[i * cols + j] = data[start + i * rs + j * cs];
                }
            }
        }
    }
    Cow::Owned(out)
}

impl CustomOp2 for DenseMatmul {
    fn name(&self) -> &'static str {
        "maas-dense-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("maas-dense-matmul multiplies f32 tensors");
        };
        let (&[m, k], &[k2, n]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("maas-dense-matmul multiplies 2-D tensors");
        };
        if k != k2 {
            candle_core::bail!("maas-dense-matmul: [{m}, {k}] · [{k2}, {n}] don't chain");
        }
        let a = row_major(a, l1, m, k);
        let start = l2.start_offset();
        // b as stored: row-major, or a transposed view of a row-major [n, k] (Wᵀ in the
        // backward pass), which the packing reads directly.
        let (b, out_major) = match l2.stride() {
            [rs, 1] if *rs == n || k == 1 => (Cow::Borrowed(&b[start..start + k * n]), false),
            [1, cs] if *cs == k || n == 1 => (Cow::Borrowed(&b[start..start + k * n]), true),
            _ => (row_major(b, l2, k, n), false),
        };
        let out = maas_dense::matmul(&a, m, k, Weights::F32(&b), out_major, n, self.threads)
            .ok_or_else(|| candle_core::Error::Msg("no dense kernel on this CPU".into()))?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn products_of_plain_and_transposed_operands_match_candle() {
        let t = |rows: usize, cols: usize, seed: usize| {
            let v: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 31 + seed * 17) % 29) as f32 / 14.0 - 1.0)
                .collect();
            Tensor::from_vec(v, (rows, cols), &Device::Cpu).expect("tensor")
        };
        let x = t(37, 70, 1);
        let w = t(70, 45, 2);
        let dz = t(37, 45, 3);
        let cases = [
            ("x · w", x.clone(), w.clone()),
            ("xᵀ · dz", x.t().expect("t"), dz.clone()),
            ("dz · wᵀ", dz.clone(), w.t().expect("t")),
            ("row · w", t(1, 70, 4), w.clone()),
            ("x · column", x.clone(), t(70, 1, 5)),
        ];
        for threads in [1, 2] {
            for (what, a, b) in &cases {
                let want = a.matmul(b).expect("candle");
                let got = matmul(a, b, threads).expect("dense");
                assert_eq!(got.dims(), want.dims(), "{what}");
                let diff = (got - &want)
                    .expect("sub")
                    .abs()
                    .expect("abs")
                    .max_all()
                    .expect("max")
                    .to_scalar::<f32>()
                    .expect("scalar");
                assert!(diff < 1e-4, "{what} on {threads} thread(s): off by {diff}");
            }
        }
    }
}
