//! ONNX models through tract: parsed from bytes, checked for operators tract can't run, given a
//! symbolic batch dimension, optimised once per version into a plan shared by every request.
//!
//! A graph that is only a chain of dense layers (`Gemm`, or `MatMul` then `Add`, each optionally
//! followed by `Relu`, `Sigmoid` or `Tanh`, with constant weights) skips tract's optimiser and
//! runs on the packed-weight kernels of [`crate::dense`] where the CPU has them.

use std::collections::BTreeSet;
use std::sync::Arc;

use maas_core::{DataType, TensorSpec};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::EngineError;
use crate::answer::ClassifierOutputs;
use crate::dense::{Activation, DensePlan, LayerWeights, Weights};
use crate::onnx_scan as scan;
use crate::predictor::Predictor;
use crate::tensor::{Tensor as MaasTensor, TensorData};

/// How a version's graph runs.
enum Execution {
    /// tract's optimised plan.
    Tract(Arc<TypedSimplePlan>),
    /// The dense kernels (the graph is a chain of dense layers).
    Dense(DensePlan),
}

/// An ONNX model ready to serve, through tract or the dense kernels.
pub(crate) struct OnnxPredictor {
    execution: Execution,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// The graph takes NaN as a missing value (it has tree ensembles or an imputer).
    takes_missing_values: bool,
    /// Where the label and probabilities are, for a graph ending in a classifier.
    classifier: Option<ClassifierOutputs>,
}

impl std::fmt::Debug for OnnxPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxPredictor")
            .field(
                "execution",
                &match &self.execution {
                    Execution::Tract(_) => "tract",
                    Execution::Dense(_) => "dense",
                },
            )
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// Every operator type used in a graph, sub-graphs included.
fn collect_op_types(graph: &pb::GraphProto, out: &mut BTreeSet<(String, String)>) {
    for node in &graph.node {
        out.insert((node.domain.clone(), node.op_type.clone()));
        for attr in &node.attribute {
            if let Some(g) = &attr.g {
                collect_op_types(g, out);
            }
            for g in &attr.graphs {
                collect_op_types(g, out);
            }
        }
    }
}

fn datatype_of(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        // tract types some int64 results (e.g. a Cast of class labels) as symbolic dims.
        DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

fn spec_of(name: String, fact: &TypedFact) -> Result<TensorSpec, EngineError> {
    let datatype = datatype_of(fact.datum_type).ok_or_else(|| EngineError::UnsupportedModel {
        message: format!(
            "tensor {name:?} has element type {:?}, which maas can't exchange over the API; use float or integer tensors",
            fact.datum_type
        ),
    })?;
    let shape = fact
        .shape
        .iter()
        .map(|d| d.to_i64().unwrap_or(-1))
        .collect();
    Ok(TensorSpec {
        name,
        datatype,
        shape,
    })
}

fn load_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::UnsupportedModel {
        message: format!("tract could not prepare the ONNX graph: {e:#}"),
    }
}

impl OnnxPredictor {
    /// Parses, checks and optimises an ONNX model.
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, EngineError> {
        Self::load_with(bytes, crate::dense::dense_kernels_enabled())
    }

    /// Whether the dense kernels serve this version (`false`: tract's plan).
    #[cfg(test)]
    pub(crate) fn is_dense(&self) -> bool {
        matches!(self.execution, Execution::Dense(_))
    }

    /// [`OnnxPredictor::load`], with the dense kernels allowed or not.
    pub(crate) fn load_with(bytes: &[u8], allow_dense: bool) -> Result<Self, EngineError> {
        if bytes.is_empty() {
            return Err(EngineError::CorruptFile {
                message: "the ONNX file is empty".into(),
            });
        }
        // A chain of dense layers is recognised from the file's bytes and packed from them,
        // before tract decodes (and copies) the whole model.
        if allow_dense && let Some(dense) = scan::read_graph(bytes).and_then(|g| dense_chain(&g)) {
            return Ok(dense);
        }
        let onnx = crate::onnx_ml::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| EngineError::CorruptFile {
                message: format!(
                    "the file is not a readable ONNX model ({e:#}); it may be truncated or corrupted, export it again"
                ),
            })?;
        let Some(graph) = proto.graph.as_ref() else {
            return Err(EngineError::CorruptFile {
                message: "the ONNX file holds no graph; it may be truncated, export it again"
                    .into(),
            });
        };
        if graph.node.is_empty() || graph.output.is_empty() {
            return Err(EngineError::CorruptFile {
                message: "the ONNX graph has no nodes or no outputs; it may be truncated, export it again"
                    .into(),
            });
        }
        crate::onnx_ml::serve_zipmap_inputs(&mut proto);
        crate::onnx_ml::concat_feature_vectors(&mut proto);
        let classes = proto.graph.as_ref().and_then(crate::onnx_ml::graph_classes);
        crate::onnx_ml::label_linear_classifiers_by_position(&mut proto);
        let Some(graph) = proto.graph.as_ref() else {
            return Err(EngineError::CorruptFile {
                message: "the ONNX file holds no graph".into(),
            });
        };
        let mut ops = BTreeSet::new();
        collect_op_types(graph, &mut ops);
        let unsupported: Vec<String> = ops
            .iter()
            .filter(|(_, op)| !onnx.op_register.0.contains_key(op))
            .map(|(domain, op)| {
                if domain.is_empty() || domain == "ai.onnx" {
                    op.clone()
                } else {
                    format!("{domain}.{op}")
                }
            })
            .collect();
        if !unsupported.is_empty() {
            let advice = crate::onnx_ml::export_advice(&unsupported);
            return Err(EngineError::UnsupportedOperators {
                ops: unsupported,
                advice,
            });
        }
        let takes_missing_values = ops.iter().any(|(domain, op)| {
            domain == "ai.onnx.ml"
                && matches!(
                    op.as_str(),
                    "TreeEnsembleRegressor" | "TreeEnsembleClassifier" | "TreeEnsemble" | "Imputer"
                )
        });

        // A fixed leading dimension (an export without dynamic axes) becomes the symbol N, so
        // one plan serves every batch size; if the graph really depends on that size, the model
        // is served as exported.
        let typed = match Self::with_symbolic_batch(&proto).and_then(|m| m.into_optimized()) {
            Ok(typed) => typed,
            Err(_) => onnx
                .model_for_proto_model(&proto)
                .and_then(|m| m.into_optimized())
                .map_err(load_error)?,
        };
        let mut inputs = Vec::new();
        for (ix, outlet) in typed
            .input_outlets()
            .map_err(load_error)?
            .iter()
            .enumerate()
        {
            let name = typed.node(outlet.node).name.clone();
            inputs.push(spec_of(name, typed.input_fact(ix).map_err(load_error)?)?);
        }
        let mut outputs = Vec::new();
        for (ix, outlet) in typed
            .output_outlets()
            .map_err(load_error)?
            .iter()
            .enumerate()
        {
            let name = typed
                .outlet_label(*outlet)
                .map(str::to_string)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone());
            outputs.push(spec_of(name, typed.output_fact(ix).map_err(load_error)?)?);
        }
        let classifier =
            classes.and_then(|classes| crate::onnx_ml::classifier_outputs(classes, &outputs));
        let plan = typed.into_runnable().map_err(load_error)?;
        Ok(Self {
            execution: Execution::Tract(plan),
            inputs,
            outputs,
            takes_missing_values,
            classifier,
        })
    }
}

impl OnnxPredictor {
    /// True if the graph takes NaN as a missing value (tree ensembles, imputers).
    pub(crate) fn takes_missing_values(&self) -> bool {
        self.takes_missing_values
    }
}

impl OnnxPredictor {
    fn with_symbolic_batch(proto: &pb::ModelProto) -> TractResult<InferenceModel> {
        // Declared output shapes would pin the batch size again; let tract infer them.
        let mut model = crate::onnx_ml::onnx()
            .with_ignore_output_shapes(true)
            .model_for_proto_model(proto)?;
        let batch = model.sym("N");
        for ix in 0..model.inputs.len() {
            let mut fact = model.input_fact(ix)?.clone();
            // A fixed size, or a size the file leaves unnamed (skl2onnx and onnxmltools write
            // `None`), becomes N.
            let batch_like = match fact.shape.dim(0) {
                Some(tract_onnx::tract_hir::infer::GenericFactoid::Only(d)) => d.to_i64().is_ok(),
                Some(tract_onnx::tract_hir::infer::GenericFactoid::Any) => true,
                None => false,
            };
            if batch_like {
                fact.shape.set_dim(0, TDim::from(batch.clone()));
                model.set_input_fact(ix, fact)?;
            }
        }
        Ok(model)
    }
}

fn to_tract(t: MaasTensor) -> Result<TValue, EngineError> {
    let bad = |e: TractError| EngineError::InvalidInput {
        message: format!("tensor {:?}: {e}", t.name),
    };
    let tensor = match &t.data {
        TensorData::F32(v) => Tensor::from_shape(&t.shape, v),
        TensorData::F64(v) => Tensor::from_shape(&t.shape, v),
        TensorData::I32(v) => Tensor::from_shape(&t.shape, v),
        TensorData::I64(v) => Tensor::from_shape(&t.shape, v),
        TensorData::Bytes(v) => tract_ndarray::Array::from_shape_vec(t.shape.clone(), v.clone())
            .map(|a| a.into_tensor())
            .map_err(|e| TractError::msg(e.to_string())),
    }
    .map_err(bad)?;
    Ok(tensor.into_tvalue())
}

fn from_tract(name: &str, value: &TValue) -> Result<MaasTensor, EngineError> {
    let failed = |e: TractError| EngineError::Inference {
        message: format!("output {name:?}: {e}"),
    };
    let shape = value.shape().to_vec();
    fn plain<D: Datum + Copy>(t: &Tensor) -> TractResult<Vec<D>> {
        Ok(t.try_as_plain_ram()?.as_slice::<D>()?.to_vec())
    }
    let data = match value.datum_type() {
        DatumType::F32 => TensorData::F32(plain(value).map_err(failed)?),
        DatumType::F64 => TensorData::F64(plain(value).map_err(failed)?),
        DatumType::I32 => TensorData::I32(plain(value).map_err(failed)?),
        DatumType::I64 => TensorData::I64(plain(value).map_err(failed)?),
        DatumType::String => TensorData::Bytes(
            value
                .try_as_plain_ram()
                .and_then(|t| t.as_slice::<String>().map(<[String]>::to_vec))
                .map_err(failed)?,
        ),
        DatumType::TDim => {
            TensorData::I64(plain(&*value.cast_to::<i64>().map_err(failed)?).map_err(failed)?)
        }
        _ => TensorData::F32(plain(&*value.cast_to::<f32>().map_err(failed)?).map_err(failed)?),
    };
    Ok(MaasTensor {
        name: name.to_string(),
        shape,
        data,
    })
}

impl Predictor for OnnxPredictor {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn executor(&self) -> &'static str {
        match &self.execution {
            Execution::Tract(_) => "tract",
            Execution::Dense(plan) => crate::dense::executor(plan),
        }
    }

    fn classifier(&self) -> Option<ClassifierOutputs> {
        self.classifier.clone()
    }

    fn run(&self, inputs: Vec<MaasTensor>) -> Result<Vec<MaasTensor>, EngineError> {
        let plan = match &self.execution {
            Execution::Tract(plan) => plan,
            Execution::Dense(dense) => {
                let name = self.outputs.first().map_or("output", |s| s.name.as_str());
                return crate::dense::run_tensor(dense, inputs, name).map(|t| vec![t]);
            }
        };
        let values = inputs
            .into_iter()
            .map(to_tract)
            .collect::<Result<TVec<_>, _>>()?;
        // tract checks shapes when the plan is built and types at the door, but some operators
        // trust the values they are given: an embedding's `Gather` with an id past its table
        // panics inside tract. The plan is immutable (each run has its own state), so a panic
        // leaves nothing broken behind, and the request that caused it gets the blame.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(values)));
        let takes_integers = || {
            self.inputs.iter().any(|i| {
                matches!(
                    i.datatype,
                    maas_core::DataType::Int32 | maas_core::DataType::Int64
                )
            })
        };
        let results = match run {
            Ok(Ok(results)) => results,
            // With only float inputs, checked for shape and finiteness, a failure is the
            // engine's; integer inputs are indices whose values the graph can refuse.
            Ok(Err(e)) if !takes_integers() => {
                return Err(EngineError::Inference {
                    message: format!("{e:#}"),
                });
            }
            Ok(Err(e)) => return Err(value_refused(&format!("{e:#}"))),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                return Err(value_refused(what));
            }
        };
        results
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| from_tract(&spec.name, value))
            .collect()
    }
}

/// The graph could not compute these input values (an index out of its table's range, ...).
fn value_refused(detail: &str) -> EngineError {
    EngineError::InvalidInput {
        message: format!(
            "the model can't compute these input values ({detail}); check that integer inputs (ids, indices) are within the ranges the model was built for"
        ),
    }
}

/// ONNX's FLOAT element type.
const ONNX_FLOAT: i32 = 1;

/// The values of a FLOAT initializer, as its `raw_data` (little-endian) or `float_data`.
fn initializer_values<'a>(t: &'a scan::Initializer<'a>) -> Option<Weights<'a>> {
    if t.data_type != ONNX_FLOAT || t.external {
        return None;
    }
    let expected = t
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    let values = if !t.raw_data.is_empty() {
        Weights::LeBytes(t.raw_data)
    } else {
        Weights::F32(&t.float_data)
    };
    (values.len() == expected && !values.is_empty()).then_some(values)
}

/// An integer attribute's value, its default when absent; `None` if it is not an integer.
fn int_attr(node: &scan::Node<'_>, name: &str, default: i64) -> Option<i64> {
    match node.attribute.iter().find(|a| a.name == name) {
        None => Some(default),
        Some(a) => a.i,
    }
}

/// A float attribute's value, its default when absent; `None` if it is not a float.
fn float_attr(node: &scan::Node<'_>, name: &str, default: f32) -> Option<f32> {
    match node.attribute.iter().find(|a| a.name == name) {
        None => Some(default),
        Some(a) => a.f,
    }
}

/// The width of a rank-2 FLOAT graph value whose second dimension is fixed.
fn fixed_width(info: &scan::Value<'_>) -> Option<usize> {
    match (info.elem_type, info.dims.as_slice()) {
        (ONNX_FLOAT, [_, Some(w)]) => usize::try_from(*w).ok(),
        _ => None,
    }
}

/// One dense layer read from the graph.
struct ChainLayer<'a> {
    weights: Weights<'a>,
    out_major: bool,
    in_features: usize,
    out_features: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

/// Recognises a graph that is a chain of dense layers with constant weights and packs it for the
/// dense kernels; `None` for anything else (tract serves it), or when the CPU has no kernel.
pub(crate) fn dense_chain(graph: &scan::Graph<'_>) -> Option<OnnxPredictor> {
    let initializers: std::collections::HashMap<&str, &scan::Initializer<'_>> =
        graph.initializer.iter().map(|t| (t.name, t)).collect();
    let inputs: Vec<&scan::Value<'_>> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name))
        .collect();
    let ([input], [output]) = (inputs.as_slice(), graph.output.as_slice()) else {
        return None;
    };
    let in_width = fixed_width(input)?;
    let mut current = input.name;
    let mut width = in_width;
    let mut layers: Vec<ChainLayer> = Vec::new();
    // The layer the next node may complete with a bias or an activation.
    let mut open = false;
    for node in &graph.node {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        if node.input.first() != Some(&current)
            || node.output.len() != 1
            || !default_domain
            || node.attribute.iter().any(|a| a.other)
        {
            return None;
        }
        let constant = |ix: usize| -> Option<(&scan::Initializer<'_>, Weights<'_>)> {
            let t = *initializers.get(node.input.get(ix)?)?;
            Some((t, initializer_values(t)?))
        };
        match node.op_type {
            "Gemm" | "MatMul" => {
                let gemm = node.op_type == "Gemm";
                if gemm
                    && (int_attr(node, "transA", 0)? != 0
                        || float_attr(node, "alpha", 1.0)? != 1.0
                        || float_attr(node, "beta", 1.0)? != 1.0)
                {
                    return None;
                }
                if !gemm && !node.attribute.is_empty() {
                    return None;
                }
                let out_major = gemm && int_attr(node, "transB", 0)? == 1;
                let (w, weights) = constant(1)?;
                let (k, n) = match (w.dims.as_slice(), out_major) {
                    (&[n, k], true) | (&[k, n], false) => {
                        (usize::try_from(k).ok()?, usize::try_from(n).ok()?)
                    }
                    _ => return None,
                };
                if k != width {
                    return None;
                }
                let bias = match node.input.get(2).filter(|name| !name.is_empty()) {
                    Some(_) if gemm => Some(bias_values(constant(2)?, n)?),
                    Some(_) => return None,
                    None => None,
                };
                if node.input.len() > 3 || (!gemm && node.input.len() != 2) {
                    return None;
                }
                layers.push(ChainLayer {
                    weights,
                    out_major,
                    in_features: k,
                    out_features: n,
                    bias,
                    activation: Activation::None,
                });
                width = n;
                open = true;
            }
            "Add" => {
                let layer = layers.last_mut().filter(|_| open)?;
                if layer.bias.is_some()
                    || layer.activation != Activation::None
                    || node.input.len() != 2
                    || !node.attribute.is_empty()
                {
                    return None;
                }
                layer.bias = Some(bias_values(constant(1)?, layer.out_features)?);
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                let layer = layers.last_mut().filter(|_| open)?;
                if layer.activation != Activation::None
                    || node.input.len() != 1
                    || !node.attribute.is_empty()
                {
                    return None;
                }
                layer.activation = match node.op_type {
                    "Relu" => Activation::Relu,
                    "Sigmoid" => Activation::Sigmoid,
                    _ => Activation::Tanh,
                };
                open = false;
            }
            _ => return None,
        }
        current = node.output[0];
    }
    if current != output.name || layers.is_empty() {
        return None;
    }
    if fixed_width(output).is_some_and(|w| w != width) {
        return None;
    }
    let weights: Vec<LayerWeights<'_>> = layers
        .iter()
        .map(|l| LayerWeights {
            weights: l.weights,
            out_major: l.out_major,
            in_features: l.in_features,
            out_features: l.out_features,
            bias: l.bias.as_deref(),
            activation: l.activation,
        })
        .collect();
    let plan = DensePlan::new(&weights)?;
    let spec = |name: &str, width: usize| TensorSpec {
        name: name.to_string(),
        datatype: DataType::Fp32,
        shape: vec![-1, width as i64],
    };
    Some(OnnxPredictor {
        inputs: vec![spec(input.name, in_width)],
        outputs: vec![spec(output.name, width)],
        execution: Execution::Dense(plan),
        takes_missing_values: false,
        classifier: None,
    })
}

/// A bias initializer of `n` values, shaped `[n]` or `[1, n]`.
fn bias_values((t, values): (&scan::Initializer<'_>, Weights<'_>), n: usize) -> Option<Vec<f32>> {
    let n64 = n as i64;
    if !matches!(t.dims.as_slice(), [d] | [1, d] if *d == n64) || values.len() != n {
        return None;
    }
    let mut bias = vec![0.0f32; n];
    values.read(0, &mut bias);
    Some(bias)
}
