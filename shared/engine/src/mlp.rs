//! safetensors weights served by candle as a multi-layer perceptron.
//!
//! The weight file follows PyTorch's `state_dict` naming: `{layer}.weight` of shape
//! `[out_features, in_features]` and `{layer}.bias` of shape `[out_features]`. The architecture
//! comes from the manifest or, when none is given, is inferred from the names and shapes: the
//! seed's `layer1, layer2, …`, `nn.Sequential`'s `0, 2, 4, …` or any prefix followed by numbers,
//! ordered numerically, with ReLU between layers and none after the last.
//!
//! Where the CPU has them, the layers run on the packed-weight kernels of [`crate::dense`];
//! otherwise (and for GELU) on candle.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor as CandleTensor};
use maas_core::{Activation, Architecture, DataType, DenseLayer, TensorSpec};
use safetensors::SafeTensors;

use crate::EngineError;
use crate::dense::{DensePlan, LayerWeights};
use crate::predictor::Predictor;
use crate::tensor::{Tensor as MaasTensor, TensorData};

/// Shape and dtype of every tensor in a safetensors file, read without copying the data.
fn tensor_shapes(
    bytes: &[u8],
) -> Result<BTreeMap<String, (safetensors::Dtype, Vec<usize>)>, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::CorruptFile {
            message: "the safetensors file is empty".into(),
        });
    }
    let file = SafeTensors::deserialize(bytes).map_err(|e| EngineError::CorruptFile {
        message: format!(
            "the file is not a readable safetensors file ({e}); it may be truncated or corrupted, save it again with safetensors"
        ),
    })?;
    Ok(file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec())))
        .collect())
}

/// Splits a name into text and number runs so `layer10` sorts after `layer2`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut digits = c.to_string();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            parts.push((
                std::mem::take(&mut text),
                digits.parse().unwrap_or(u64::MAX),
            ));
        } else {
            text.push(c);
        }
    }
    if !text.is_empty() {
        parts.push((text, 0));
    }
    parts
}

const SUPPORTED_DTYPES: &str = "F32, F64, F16 or BF16";

fn check_dtypes(
    shapes: &BTreeMap<String, (safetensors::Dtype, Vec<usize>)>,
) -> Result<(), EngineError> {
    use safetensors::Dtype;
    for (name, (dtype, _)) in shapes {
        if !matches!(dtype, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16) {
            return Err(EngineError::UnsupportedModel {
                message: format!(
                    "tensor {name:?} has dtype {dtype:?}; maas serves weights stored as {SUPPORTED_DTYPES} (convert with `tensor.float()` before saving)"
                ),
            });
        }
    }
    Ok(())
}

/// Infers a chain of dense layers from tensor names and shapes.
pub(crate) fn infer_architecture(bytes: &[u8]) -> Result<Architecture, EngineError> {
    let shapes = tensor_shapes(bytes)?;
    check_dtypes(&shapes)?;
    let mut prefixes: Vec<&str> = shapes
        .keys()
        .filter_map(|k| k.strip_suffix(".weight"))
        .collect();
    if prefixes.is_empty() {
        return Err(EngineError::UnsupportedModel {
            message: "no `*.weight` tensors found, so the layers can't be inferred; describe them in a manifest (`architecture`) and push with --manifest".into(),
        });
    }
    for name in shapes.keys() {
        let known = name
            .strip_suffix(".weight")
            .or_else(|| name.strip_suffix(".bias"))
            .is_some_and(|p| prefixes.contains(&p));
        if !known {
            return Err(EngineError::UnsupportedModel {
                message: format!(
                    "tensor {name:?} is not the weight or bias of a linear layer, so the network can't be inferred as an MLP; describe it in a manifest (`architecture`) and push with --manifest"
                ),
            });
        }
    }
    prefixes.sort_by_key(|p| natural_key(p));
    let last = prefixes.len() - 1;
    let mut layers = Vec::with_capacity(prefixes.len());
    for (i, prefix) in prefixes.iter().enumerate() {
        let (_, shape) = &shapes[&format!("{prefix}.weight")];
        let &[out_features, in_features] = shape.as_slice() else {
            return Err(EngineError::ShapeMismatch {
                message: format!(
                    "{prefix}.weight has shape {shape:?}; a linear layer's weight is 2-D [out_features, in_features]"
                ),
            });
        };
        layers.push(DenseLayer {
            name: (*prefix).to_string(),
            in_features,
            out_features,
            bias: shapes.contains_key(&format!("{prefix}.bias")),
            activation: if i == last {
                Activation::None
            } else {
                Activation::Relu
            },
        });
    }
    let arch = Architecture::Mlp {
        layers,
        inferred: true,
    };
    check_architecture(&arch, &shapes)?;
    Ok(arch)
}

/// Checks that the weights exist with the shapes the architecture needs and that layers chain.
fn check_architecture(
    arch: &Architecture,
    shapes: &BTreeMap<String, (safetensors::Dtype, Vec<usize>)>,
) -> Result<(), EngineError> {
    let Architecture::Mlp { layers, .. } = arch;
    if layers.is_empty() {
        return Err(EngineError::ShapeMismatch {
            message: "the architecture has no layers".into(),
        });
    }
    let mut previous: Option<&DenseLayer> = None;
    for layer in layers {
        let weight = format!("{}.weight", layer.name);
        let expected = vec![layer.out_features, layer.in_features];
        match shapes.get(&weight) {
            None => {
                return Err(EngineError::ShapeMismatch {
                    message: format!("the weights file has no tensor {weight:?}"),
                });
            }
            Some((_, shape)) if *shape != expected => {
                return Err(EngineError::ShapeMismatch {
                    message: format!(
                        "{weight} has shape {shape:?} but layer {:?} needs [{}, {}] ([out_features, in_features])",
                        layer.name, layer.out_features, layer.in_features
                    ),
                });
            }
            Some(_) => {}
        }
        if layer.bias {
            let bias = format!("{}.bias", layer.name);
            match shapes.get(&bias) {
                Some((_, shape)) if *shape == vec![layer.out_features] => {}
                Some((_, shape)) => {
                    return Err(EngineError::ShapeMismatch {
                        message: format!(
                            "{bias} has shape {shape:?} but layer {:?} has {} outputs",
                            layer.name, layer.out_features
                        ),
                    });
                }
                None => {
                    return Err(EngineError::ShapeMismatch {
                        message: format!("the weights file has no tensor {bias:?}"),
                    });
                }
            }
        }
        if let Some(prev) = previous
            && prev.out_features != layer.in_features
        {
            return Err(EngineError::ShapeMismatch {
                message: format!(
                    "layers don't chain: {:?} outputs {} values but {:?} takes {}",
                    prev.name, prev.out_features, layer.name, layer.in_features
                ),
            });
        }
        previous = Some(layer);
    }
    Ok(())
}

/// One dense layer in candle, weights pre-transposed to `[in, out]` for batched products.
struct LoadedLayer {
    /// `[out, in]`, PyTorch's layout: a single row multiplies it as dot products.
    weight: CandleTensor,
    /// `[in, out]`, contiguous: batches multiply it without a strided view.
    weight_t: CandleTensor,
    bias: Option<CandleTensor>,
    activation: Activation,
}

/// How a version's layers run.
enum Execution {
    /// candle tensors.
    Candle(Vec<LoadedLayer>),
    /// The dense kernels.
    Dense(DensePlan),
}

/// A safetensors MLP for one model version.
pub(crate) struct MlpPredictor {
    execution: Execution,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for MlpPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpPredictor")
            .field(
                "execution",
                &match &self.execution {
                    Execution::Candle(layers) => format!("candle, {} layers", layers.len()),
                    Execution::Dense(plan) => format!("{plan:?}"),
                },
            )
            .field("inputs", &self.inputs)
            .finish()
    }
}

fn candle_error(e: candle_core::Error) -> EngineError {
    EngineError::Inference {
        message: e.to_string(),
    }
}

impl MlpPredictor {
    /// The tensor specs an MLP exposes: `input [-1, in]` → `output [-1, out]`, FP32.
    pub(crate) fn specs(arch: &Architecture) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![TensorSpec {
                name: "input".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, arch.input_width() as i64],
            }],
            vec![TensorSpec {
                name: "output".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, arch.output_width() as i64],
            }],
        )
    }

    /// Loads weights for `arch` from safetensors bytes.
    pub(crate) fn load(
        bytes: &[u8],
        arch: &Architecture,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
    ) -> Result<Self, EngineError> {
        let allow_dense = crate::dense::dense_kernels_enabled();
        Self::load_with(bytes, arch, inputs, outputs, allow_dense)
    }

    /// Whether the dense kernels serve this version (`false`: candle).
    #[cfg(test)]
    pub(crate) fn is_dense(&self) -> bool {
        matches!(self.execution, Execution::Dense(_))
    }

    /// [`MlpPredictor::load`], with the dense kernels allowed or not.
    pub(crate) fn load_with(
        bytes: &[u8],
        arch: &Architecture,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        allow_dense: bool,
    ) -> Result<Self, EngineError> {
        let shapes = tensor_shapes(bytes)?;
        check_dtypes(&shapes)?;
        check_architecture(arch, &shapes)?;
        let Architecture::Mlp { layers: specs, .. } = arch;
        // F32 weights (what PyTorch saves) pack straight from the file's bytes.
        if allow_dense && let Some(plan) = Self::dense_plan_from_f32_file(bytes, specs)? {
            return Ok(Self {
                execution: Execution::Dense(plan),
                inputs,
                outputs,
            });
        }
        let device = Device::Cpu;
        let mut tensors: HashMap<String, CandleTensor> =
            candle_core::safetensors::load_buffer(bytes, &device).map_err(|e| {
                EngineError::CorruptFile {
                    message: format!("the safetensors data can't be read ({e}); save it again"),
                }
            })?;
        let mut take = |name: String| -> Result<CandleTensor, EngineError> {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| EngineError::ShapeMismatch {
                    message: format!("the weights file has no tensor {name:?}"),
                })?;
            t.to_dtype(DType::F32).map_err(candle_error)
        };
        if allow_dense && let Some(plan) = Self::dense_plan(specs, &mut take)? {
            return Ok(Self {
                execution: Execution::Dense(plan),
                inputs,
                outputs,
            });
        }
        let mut layers = Vec::with_capacity(specs.len());
        for spec in specs {
            let weight = take(format!("{}.weight", spec.name))?
                .contiguous()
                .map_err(candle_error)?;
            let weight_t = weight
                .t()
                .and_then(|t| t.contiguous())
                .map_err(candle_error)?;
            let bias = if spec.bias {
                Some(take(format!("{}.bias", spec.name))?)
            } else {
                None
            };
            layers.push(LoadedLayer {
                weight,
                weight_t,
                bias,
                activation: spec.activation,
            });
        }
        Ok(Self {
            execution: Execution::Candle(layers),
            inputs,
            outputs,
        })
    }

    /// The layers packed for the dense kernels straight from the file's little-endian F32 data;
    /// `None` if a tensor has another dtype (then [`MlpPredictor::dense_plan`] converts it
    /// through candle) or the kernels can't run the network.
    fn dense_plan_from_f32_file(
        bytes: &[u8],
        specs: &[DenseLayer],
    ) -> Result<Option<DensePlan>, EngineError> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| EngineError::CorruptFile {
            message: format!("the safetensors data can't be read ({e}); save it again"),
        })?;
        let f32_data = |name: String| -> Option<&[u8]> {
            let view = file.tensor(&name).ok()?;
            (view.dtype() == safetensors::Dtype::F32).then(|| view.data())
        };
        let mut layers = Vec::with_capacity(specs.len());
        let mut biases = Vec::with_capacity(specs.len());
        for spec in specs {
            let (Some(activation), Some(weights)) = (
                crate::dense::activation(spec.activation),
                f32_data(format!("{}.weight", spec.name)),
            ) else {
                return Ok(None);
            };
            let bias = if spec.bias {
                let Some(data) = f32_data(format!("{}.bias", spec.name)) else {
                    return Ok(None);
                };
                let mut values = vec![0.0f32; spec.out_features];
                if data.len() != values.len() * 4 {
                    return Ok(None);
                }
                crate::dense::Weights::LeBytes(data).read(0, &mut values);
                Some(values)
            } else {
                None
            };
            biases.push(bias);
            layers.push((spec, weights, activation));
        }
        let weights: Vec<LayerWeights<'_>> = layers
            .iter()
            .zip(&biases)
            .map(|((spec, data, activation), bias)| LayerWeights {
                weights: crate::dense::Weights::LeBytes(data),
                out_major: true,
                in_features: spec.in_features,
                out_features: spec.out_features,
                bias: bias.as_deref(),
                activation: *activation,
            })
            .collect();
        Ok(DensePlan::new(&weights))
    }

    /// The layers packed for the dense kernels, or `None` where they can't run them.
    fn dense_plan(
        specs: &[DenseLayer],
        take: &mut impl FnMut(String) -> Result<CandleTensor, EngineError>,
    ) -> Result<Option<DensePlan>, EngineError> {
        let Some(activations) = specs
            .iter()
            .map(|s| crate::dense::activation(s.activation))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        if crate::dense::Kernel::detect().is_none() {
            return Ok(None);
        }
        let values = |t: CandleTensor| t.flatten_all()?.to_vec1::<f32>();
        let mut owned = Vec::with_capacity(specs.len());
        for spec in specs {
            let weight = values(take(format!("{}.weight", spec.name))?).map_err(candle_error)?;
            let bias = if spec.bias {
                Some(values(take(format!("{}.bias", spec.name))?).map_err(candle_error)?)
            } else {
                None
            };
            owned.push((weight, bias));
        }
        let layers: Vec<LayerWeights<'_>> = specs
            .iter()
            .zip(&owned)
            .zip(activations)
            .map(|((spec, (weight, bias)), activation)| LayerWeights {
                weights: crate::dense::Weights::F32(weight),
                out_major: true,
                in_features: spec.in_features,
                out_features: spec.out_features,
                bias: bias.as_deref(),
                activation,
            })
            .collect();
        Ok(DensePlan::new(&layers))
    }

    fn forward(layers: &[LoadedLayer], mut x: CandleTensor) -> candle_core::Result<CandleTensor> {
        let rows = x.dim(0)?;
        for layer in layers {
            x = if rows == 1 {
                // One row against [out, in] rows: dot products over contiguous memory.
                layer.weight.matmul(&x.t()?)?.t()?
            } else {
                x.matmul(&layer.weight_t)?
            };
            if let Some(bias) = &layer.bias {
                x = x.broadcast_add(bias)?;
            }
            x = match layer.activation {
                Activation::None => x,
                // candle's relu is f32::max(x, 0), which turns NaN into 0; PyTorch, tract and
                // the dense kernels keep NaN, and every path must give one answer.
                Activation::Relu => x.lt(0f32)?.where_cond(&x.zeros_like()?, &x)?,
                Activation::Sigmoid => candle_nn::ops::sigmoid(&x)?,
                Activation::Tanh => x.tanh()?,
                Activation::Gelu => x.gelu_erf()?,
            };
        }
        x.contiguous()
    }
}

impl Predictor for MlpPredictor {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn executor(&self) -> &'static str {
        match &self.execution {
            Execution::Candle(_) => "candle",
            Execution::Dense(plan) => crate::dense::executor(plan),
        }
    }

    fn run(&self, inputs: Vec<MaasTensor>) -> Result<Vec<MaasTensor>, EngineError> {
        let layers = match &self.execution {
            Execution::Candle(layers) => layers,
            Execution::Dense(plan) => {
                let name = self.outputs.first().map_or("output", |s| s.name.as_str());
                return crate::dense::run_tensor(plan, inputs, name).map(|t| vec![t]);
            }
        };
        let Some(input) = inputs.into_iter().next() else {
            return Err(EngineError::InvalidInput {
                message: "no input tensor".into(),
            });
        };
        let rows = input.rows();
        let width = input.data.len().checked_div(rows).unwrap_or(0);
        let TensorData::F32(values) = input.data.cast(DataType::Fp32)? else {
            return Err(EngineError::Inference {
                message: "cast to FP32 produced another type".into(),
            });
        };
        let x =
            CandleTensor::from_vec(values, (rows, width), &Device::Cpu).map_err(candle_error)?;
        let y = Self::forward(layers, x).map_err(candle_error)?;
        let (out_rows, out_width) = y.dims2().map_err(candle_error)?;
        let data = y
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_error)?;
        Ok(vec![MaasTensor {
            name: self
                .outputs
                .first()
                .map_or("output".into(), |s| s.name.clone()),
            shape: vec![out_rows, out_width],
            data: TensorData::F32(data),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_puts_layer10_after_layer2() {
        let mut names = vec!["layer10", "layer2", "layer1"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["layer1", "layer2", "layer10"]);
        let mut seq = vec!["net.10", "net.2", "net.0"];
        seq.sort_by_key(|n| natural_key(n));
        assert_eq!(seq, ["net.0", "net.2", "net.10"]);
    }
}
