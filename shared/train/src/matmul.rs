//! The training step's matrix products on maas's dense kernels (`maas-dense`), as candle ops.
//!
//! candle hands every product to the gemm crate, which re-packs both operands on each call and,
//! given two threads, was slower than with one on the seed workload's shapes (batch 256:
//! 0.81×). The dense kernels split a product between the threads, each packing and reading only
//! its share. A layer's forward pass ([`linear`]) adds the bias and applies the activation in
//! the kernel's epilogue, and the activation's backward pass ([`activation_backward`]) is one
//! loop: candle would run each as elementwise ops on its own spinning thread pool, which took
//! the second core from the products. Where the CPU has no dense kernel (Graviton) candle's own
//! ops run.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use maas_dense::{Activation, LayerWeights, Weights};

use crate::spec::HiddenActivation;

fn dense_operands(a: &Tensor, b: &Tensor) -> bool {
    maas_dense::Kernel::detect().is_some()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.rank() == 2
        && b.rank() == 2
}

fn kernel_activation(activation: Option<HiddenActivation>) -> Activation {
    match activation {
        None => Activation::None,
        Some(HiddenActivation::Relu) => Activation::Relu,
        Some(HiddenActivation::Tanh) => Activation::Tanh,
        Some(HiddenActivation::Sigmoid) => Activation::Sigmoid,
    }
}

/// `activation(x [m, in] · w [in, out] + bias [out])` on `threads` threads.
pub(crate) fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    activation: Option<HiddenActivation>,
    threads: usize,
) -> candle_core::Result<Tensor> {
    if !dense_operands(x, w) {
        let z = x.matmul(w)?.broadcast_add(bias)?;
        return match activation {
            None => Ok(z),
            Some(HiddenActivation::Relu) => z.relu(),
            Some(HiddenActivation::Tanh) => z.tanh(),
            Some(HiddenActivation::Sigmoid) => candle_nn::ops::sigmoid(&z),
        };
    }
    let op = DenseMatmul {
        threads,
        bias: Some(bias.flatten_all()?.to_vec1::<f32>()?),
        activation: kernel_activation(activation),
    };
    x.apply_op2_no_bwd(w, &op)
}

/// The gradient before an activation from the gradient after it, `grad ⊙ f'(z)`, with `f'`
/// computed from the activation's output `a` (ReLU: `a > 0`; tanh: `1 - a²`; sigmoid:
/// `a (1 - a)`).
pub(crate) fn activation_backward(
    grad: &Tensor,
    a: &Tensor,
    activation: HiddenActivation,
) -> candle_core::Result<Tensor> {
    grad.apply_op2_no_bwd(a, &ActivationBackward(activation))
}

struct ActivationBackward(HiddenActivation);

impl CustomOp2 for ActivationBackward {
    fn name(&self) -> &'static str {
        "maas-activation-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(grad), CpuStorage::F32(a)) = (s1, s2) else {
            candle_core::bail!("maas-activation-backward takes f32 tensors");
        };
        if l1.dims() != l2.dims() {
            candle_core::bail!("maas-activation-backward: the shapes differ");
        }
        let n = l1.shape().elem_count();
        let (grad, a) = (row_major(grad, l1, 1, n), row_major(a, l2, 1, n));
        let out: Vec<f32> = match self.0 {
            HiddenActivation::Relu => grad
                .iter()
                .zip(a.iter())
                .map(|(g, a)| if *a > 0.0 { *g } else { 0.0 })
                .collect(),
            HiddenActivation::Tanh => grad
                .iter()
                .zip(a.iter())
                .map(|(g, a)| g * (1.0 - a * a))
                .collect(),
            HiddenActivation::Sigmoid => grad
                .iter()
                .zip(a.iter())
                .map(|(g, a)| g * a * (1.0 - a))
                .collect(),
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The sums down each column of `x [rows, cols]`, as `[cols]`: a layer's bias gradient. One pass
/// over the rows in order (candle's reduction over the first dimension strides down each
/// column, and took as long as a product of the step's smaller layers).
pub(crate) fn column_sums(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() != DType::F32 || x.rank() != 2 {
        return x.sum(0);
    }
    x.apply_op1_no_bwd(&ColumnSums)
}

struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "maas-column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), &[rows, cols]) = (s, l.dims()) else {
            candle_core::bail!("maas-column-sums sums a 2-D f32 tensor");
        };
        let x = row_major(x, l, rows, cols);
        let mut sums = vec![0.0f32; cols];
        for row in x.chunks_exact(cols) {
            for (sum, value) in sums.iter_mut().zip(row) {
                *sum += value;
            }
        }
        Ok((CpuStorage::F32(sums), Shape::from(cols)))
    }
}

/// `a [m, k] · b [k, n]` on `threads` threads.
pub(crate) fn matmul(a: &Tensor, b: &Tensor, threads: usize) -> candle_core::Result<Tensor> {
    if !dense_operands(a, b) {
        return a.matmul(b);
    }
    let op = DenseMatmul {
        threads,
        bias: None,
        activation: Activation::None,
    };
    a.apply_op2_no_bwd(b, &op)
}

/// A product, with a bias and activation in the epilogue for a layer's forward pass.
struct DenseMatmul {
    threads: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
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
        if self.bias.as_ref().is_some_and(|bias| bias.len() != n) {
            candle_core::bail!("maas-dense-matmul: the bias doesn't have {n} values");
        }
        let layer = LayerWeights {
            weights: Weights::F32(&b),
            out_major,
            in_features: k,
            out_features: n,
            bias: self.bias.as_deref(),
            activation: self.activation,
        };
        let out = maas_dense::linear(&a, m, layer, self.threads)
            .ok_or_else(|| candle_core::Error::Msg("no dense kernel on this CPU".into()))?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn column_sums_match_candle_on_plain_and_transposed_tensors() {
        let v: Vec<f32> = (0..37 * 45)
            .map(|i| ((i * 7) % 23) as f32 / 9.0 - 1.2)
            .collect();
        let x = Tensor::from_vec(v, (37, 45), &Device::Cpu).expect("tensor");
        for x in [x.clone(), x.t().expect("t")] {
            let want = x.sum(0).expect("candle").to_vec1::<f32>().expect("values");
            let got = column_sums(&x)
                .expect("sums")
                .to_vec1::<f32>()
                .expect("values");
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{g} vs {w}");
            }
        }
    }

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
