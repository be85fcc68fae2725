//! The trainable MLP: dense layers as candle variables, the forward pass in large matrix products,
//! the task losses, and the two artifacts a trained version ships — safetensors with PyTorch's
//! names and layout (`layer{i}.weight` as `[out, in]`, `layer{i}.bias`), and an ONNX graph of the
//! same network (Gemm + activations) that tract serves.
//!
//! During training each weight is kept as `[in, out]`, so the forward pass is `x · W` on
//! contiguous memory with no transposed view; the exports transpose once.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use maas_core::{Activation, Architecture, DenseLayer};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::TrainError;
use crate::optim::values;
use crate::spec::{HiddenActivation, Task};

/// A tensor in PyTorch's layout: `(name, shape, values)`.
type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A multi-layer perceptron being trained.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// `(weight [in, out], bias [out])` per layer, in evaluation order.
    layers: Vec<(Var, Var)>,
    activation: HiddenActivation,
    dropout: f32,
}

impl Mlp {
    /// A network `widths[0] → … → widths[n]` initialised as PyTorch's `nn.Linear` does
    /// (uniform in ±1/√fan_in for weights and biases), from `rng`.
    pub fn new(
        widths: &[usize],
        activation: HiddenActivation,
        dropout: f32,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self, TrainError> {
        let mut layers = Vec::new();
        for pair in widths.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let w: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let b: Vec<f32> = (0..fan_out)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            layers.push((
                Var::from_vec(w, (fan_in, fan_out), &Device::Cpu)?,
                Var::from_vec(b, fan_out, &Device::Cpu)?,
            ));
        }
        Ok(Self {
            layers,
            activation,
            dropout,
        })
    }

    /// The trainable tensors: weight, bias, weight, bias, ….
    pub fn params(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// Element counts of [`Self::params`].
    pub fn param_sizes(&self) -> Vec<usize> {
        self.params().iter().map(|p| p.elem_count()).collect()
    }

    /// Every parameter's values, in [`Self::params`] order.
    pub fn snapshot(&self) -> Result<Vec<Vec<f32>>, TrainError> {
        self.params()
            .iter()
            .map(|p| values(p.as_tensor()))
            .collect()
    }

    /// Overwrites every parameter from a snapshot.
    pub fn restore(&self, snapshot: &[Vec<f32>]) -> Result<(), TrainError> {
        let params = self.params();
        if snapshot.len() != params.len() {
            return Err(TrainError::Checkpoint(
                "the checkpoint's network has a different number of layers".into(),
            ));
        }
        for (p, v) in params.iter().zip(snapshot) {
            if v.len() != p.elem_count() {
                return Err(TrainError::Checkpoint(
                    "the checkpoint's network has different layer sizes".into(),
                ));
            }
            p.set(&Tensor::from_slice(v, p.shape(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// The raw outputs (logits for classification) for `x [batch, in]`. With `dropout_rng`,
    /// hidden activations are dropped as in training (inverted dropout, masks from the RNG).
    pub fn forward(
        &self,
        x: &Tensor,
        mut dropout_rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor, TrainError> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            if i == last {
                break;
            }
            h = match self.activation {
                HiddenActivation::Relu => h.relu()?,
                HiddenActivation::Tanh => h.tanh()?,
                HiddenActivation::Sigmoid => candle_nn::ops::sigmoid(&h)?,
            };
            if self.dropout > 0.0
                && let Some(rng) = dropout_rng.as_deref_mut()
            {
                let mask = self.dropout_mask(&h, rng)?;
                h = (h * mask)?;
            }
        }
        Ok(h)
    }

    /// One training step's loss and gradients, in [`Self::params`] order, for `x [batch, in]`
    /// and targets `y`, with dropout masks drawn from `dropout_rng` exactly as
    /// [`Self::forward`] draws them; the products run on `threads` threads.
    ///
    /// The backward pass is written out for the MLP rather than left to candle's autograd,
    /// which also multiplies out the gradient with respect to the input batch: for the seed's
    /// 1000-wide input that product is as large as the first layer's forward pass, about a
    /// third of a step, and nothing reads it.
    pub fn loss_and_gradients(
        &self,
        task: Task,
        x: &Tensor,
        y: &[f32],
        mut dropout_rng: Option<&mut ChaCha8Rng>,
        threads: usize,
    ) -> Result<(Tensor, Vec<Option<Tensor>>), TrainError> {
        let mm = |a: &Tensor, b: &Tensor| crate::matmul::matmul(a, b, threads);
        let last = self.layers.len() - 1;
        // Each layer's input, and each hidden layer's activation before dropout and its mask.
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut hidden: Vec<(Tensor, Option<Tensor>)> = Vec::with_capacity(last);
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            // The bias and the activation are applied in the product's epilogue.
            let activation = (i != last).then_some(self.activation);
            let a = crate::matmul::linear(&h, w.as_tensor(), b.as_tensor(), activation, threads)?;
            inputs.push(h);
            if i == last {
                h = a;
                break;
            }
            let mask = match dropout_rng.as_deref_mut() {
                Some(rng) if self.dropout > 0.0 => Some(self.dropout_mask(&a, rng)?),
                _ => None,
            };
            h = match &mask {
                Some(m) => (&a * m)?,
                None => a.clone(),
            };
            hidden.push((a, mask));
        }
        let z = h.detach();
        let loss = loss(task, &z, y)?;
        let mut dz = output_gradient(task, &z, y)?;
        let mut grads = vec![None; self.layers.len() * 2];
        for i in (0..self.layers.len()).rev() {
            let (w, _) = &self.layers[i];
            grads[2 * i] = Some(mm(&inputs[i].t()?, &dz)?);
            grads[2 * i + 1] = Some(crate::matmul::column_sums(&dz)?);
            if i == 0 {
                break; // the input batch needs no gradient
            }
            let mut da = mm(&dz, &w.as_tensor().t()?)?;
            let (a, mask) = &hidden[i - 1];
            if let Some(m) = mask {
                da = (da * m)?;
            }
            dz = crate::matmul::activation_backward(&da, a, self.activation)?;
        }
        Ok((loss, grads))
    }

    /// An inverted-dropout mask shaped like `h`: `1 / keep` with probability `keep`, else 0.
    fn dropout_mask(&self, h: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor, TrainError> {
        let keep = 1.0 - self.dropout;
        let scale = 1.0 / keep;
        let mask: Vec<f32> = (0..h.elem_count())
            .map(|_| {
                if rng.random::<f32>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Tensor::from_vec(mask, h.shape(), &Device::Cpu)?)
    }

    /// The raw outputs for `x [batch, in]` without dropout, on the dense kernels (where the CPU
    /// has them) with `threads` threads: evaluation and metrics. Not differentiable.
    pub fn infer(&self, x: &Tensor, threads: usize) -> Result<Tensor, TrainError> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let activation = (i != last).then_some(self.activation);
            h = crate::matmul::linear(&h, w.as_tensor(), b.as_tensor(), activation, threads)?;
        }
        Ok(h)
    }

    /// Layer widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths = vec![self.layers[0].0.dims()[0]];
        widths.extend(self.layers.iter().map(|(w, _)| w.dims()[1]));
        widths
    }

    /// The manifest's description of this network (names match the safetensors file).
    pub fn architecture(&self) -> Architecture {
        let widths = self.widths();
        let last = self.layers.len() - 1;
        Architecture::Mlp {
            layers: (0..self.layers.len())
                .map(|i| DenseLayer {
                    name: format!("layer{}", i + 1),
                    in_features: widths[i],
                    out_features: widths[i + 1],
                    bias: true,
                    activation: if i == last {
                        Activation::None
                    } else {
                        match self.activation {
                            HiddenActivation::Relu => Activation::Relu,
                            HiddenActivation::Tanh => Activation::Tanh,
                            HiddenActivation::Sigmoid => Activation::Sigmoid,
                        }
                    },
                })
                .collect(),
            inferred: false,
        }
    }

    /// Weights in PyTorch's layout, `(name, shape, values)`: `layer{i}.weight [out, in]` and
    /// `layer{i}.bias [out]`.
    fn pytorch_tensors(&self) -> Result<Vec<NamedTensor>, TrainError> {
        let mut out = Vec::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (w.dims()[0], w.dims()[1]);
            let wt = values(&w.as_tensor().t()?.contiguous()?)?;
            out.push((format!("layer{}.weight", i + 1), vec![fan_out, fan_in], wt));
            out.push((
                format!("layer{}.bias", i + 1),
                vec![fan_out],
                values(b.as_tensor())?,
            ));
        }
        Ok(out)
    }

    /// The weights as a safetensors file (PyTorch names and layout).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, TrainError> {
        let tensors = self.pytorch_tensors()?;
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Export(format!("safetensors: {e}")))?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        safetensors::serialize(views, Some(meta))
            .map_err(|e| TrainError::Export(format!("safetensors: {e}")))
    }

    /// The network as an ONNX model: `input [N, in] → Gemm → activation → … → output [N, out]`.
    pub fn to_onnx(&self) -> Result<Vec<u8>, TrainError> {
        crate::onnx::export(&self.pytorch_tensors()?, self.activation)
    }
}

/// The task's loss over raw outputs `z` and targets `y` (values or class indices as f32).
pub fn loss(task: Task, z: &Tensor, y: &[f32]) -> Result<Tensor, TrainError> {
    let n = y.len();
    Ok(match task {
        Task::Regression => {
            let t = Tensor::from_slice(y, (n, 1), &Device::Cpu)?;
            candle_nn::loss::mse(z, &t)?
        }
        Task::Binary => {
            // Stable BCE with logits: max(z, 0) - z·t + log(1 + e^-|z|).
            let t = Tensor::from_slice(y, (n, 1), &Device::Cpu)?;
            let softplus = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
            ((z.relu()? - (z * &t)?)? + softplus)?.mean_all()?
        }
        Task::Multiclass => {
            let t = Tensor::from_vec(
                y.iter().map(|&c| c as u32).collect::<Vec<_>>(),
                n,
                &Device::Cpu,
            )?;
            candle_nn::loss::cross_entropy(z, &t)?
        }
    })
}

/// The gradient of [`loss`] with respect to the raw outputs `z [n, out]`.
fn output_gradient(task: Task, z: &Tensor, y: &[f32]) -> Result<Tensor, TrainError> {
    let n = y.len();
    Ok(match task {
        Task::Regression => {
            // mse = mean((z - t)²) over every element.
            let t = Tensor::from_slice(y, (n, 1), &Device::Cpu)?;
            let scale = 2.0 / z.elem_count() as f64;
            (z.broadcast_sub(&t)? * scale)?
        }
        Task::Binary => {
            let t = Tensor::from_slice(y, (n, 1), &Device::Cpu)?;
            ((candle_nn::ops::sigmoid(z)? - t)? / n as f64)?
        }
        Task::Multiclass => {
            let classes = z.dim(1)?;
            let mut onehot = vec![0.0f32; n * classes];
            for (row, &c) in y.iter().enumerate() {
                let c = c as usize;
                if c < classes {
                    onehot[row * classes + c] = 1.0;
                }
            }
            let onehot = Tensor::from_vec(onehot, (n, classes), &Device::Cpu)?;
            ((candle_nn::ops::softmax_last_dim(z)? - onehot)? / n as f64)?
        }
    })
}

/// Raw outputs for many rows at once, without dropout, in chunks of `chunk` rows.
pub fn predict(mlp: &Mlp, x: &[f32], width: usize, chunk: usize) -> Result<Vec<f32>, TrainError> {
    let threads = candle_core::utils::get_num_threads();
    let rows = x.len() / width;
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let end = (start + chunk).min(rows);
        let t = Tensor::from_slice(
            &x[start * width..end * width],
            (end - start, width),
            &Device::Cpu,
        )?;
        let z = mlp.infer(&t, threads)?;
        out.extend(z.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The written-out backward pass (on the dense kernels where the CPU has them) gives candle
    /// autograd's gradients, for every hidden activation and task, with and without dropout (the
    /// same masks: the same RNG stream), on one thread and two.
    #[test]
    fn written_out_gradients_match_candle_autograd() {
        let (n, widths) = (9, [7, 6, 5, 3]);
        for activation in [
            HiddenActivation::Relu,
            HiddenActivation::Tanh,
            HiddenActivation::Sigmoid,
        ] {
            for task in [Task::Regression, Task::Binary, Task::Multiclass] {
                for (dropout, threads) in [(0.0, 1), (0.3, 2)] {
                    let out = if task == Task::Multiclass { 3 } else { 1 };
                    let mut init = ChaCha8Rng::seed_from_u64(1);
                    let widths = [widths[0], widths[1], widths[2], out];
                    let mlp = Mlp::new(&widths, activation, dropout, &mut init).expect("mlp");
                    let x: Vec<f32> = (0..n * widths[0])
                        .map(|i| ((i * 37 % 19) as f32 / 9.0) - 1.0)
                        .collect();
                    let x = Tensor::from_vec(x, (n, widths[0]), &Device::Cpu).expect("x");
                    let y: Vec<f32> = (0..n)
                        .map(|i| match task {
                            Task::Regression => i as f32 / 4.0 - 1.0,
                            Task::Binary => (i % 2) as f32,
                            Task::Multiclass => (i % 3) as f32,
                        })
                        .collect();
                    let mut rng = ChaCha8Rng::seed_from_u64(2);
                    let z = mlp.forward(&x, Some(&mut rng)).expect("forward");
                    let want_loss = loss(task, &z, &y).expect("loss");
                    let autograd = want_loss.backward().expect("backward");
                    let mut rng = ChaCha8Rng::seed_from_u64(2);
                    let (got_loss, grads) = mlp
                        .loss_and_gradients(task, &x, &y, Some(&mut rng), threads)
                        .expect("gradients");
                    let what = format!("{activation:?} {task:?} dropout {dropout}");
                    let scalar = |t: &Tensor| t.to_scalar::<f32>().expect("scalar");
                    assert!(
                        (scalar(&got_loss) - scalar(&want_loss)).abs() < 1e-6,
                        "{what}: loss"
                    );
                    for (i, (param, grad)) in mlp.params().iter().zip(&grads).enumerate() {
                        let want = values(autograd.get(param.as_tensor()).expect("autograd"))
                            .expect("values");
                        let got = values(grad.as_ref().expect("gradient")).expect("values");
                        assert_eq!(got.len(), want.len(), "{what}: parameter {i}");
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() < 1e-5, "{what}: parameter {i}: {g} vs {w}");
                        }
                    }
                }
            }
        }
    }
}
