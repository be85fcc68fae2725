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
                let mask = Tensor::from_vec(mask, h.shape(), &Device::Cpu)?;
                h = (h * mask)?;
            }
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

/// Raw outputs for many rows at once, without dropout, in chunks of `chunk` rows.
pub fn predict(mlp: &Mlp, x: &[f32], width: usize, chunk: usize) -> Result<Vec<f32>, TrainError> {
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
        let z = mlp.forward(&t, None)?;
        out.extend(z.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        start = end;
    }
    Ok(out)
}
