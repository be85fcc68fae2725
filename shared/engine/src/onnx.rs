//! ONNX models through tract: parsed from bytes, checked for operators tract can't run, given a
//! symbolic batch dimension, optimised once per version into a plan shared by every request.

use std::collections::BTreeSet;
use std::sync::Arc;

use maas_core::{DataType, TensorSpec};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::EngineError;
use crate::predictor::Predictor;
use crate::tensor::{Tensor as MaasTensor, TensorData};

/// An optimised tract plan for one model version.
pub(crate) struct OnnxPredictor {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for OnnxPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxPredictor")
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
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
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
        message: format!("tract could not prepare the ONNX graph: {e}"),
    }
}

impl OnnxPredictor {
    /// Parses, checks and optimises an ONNX model.
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, EngineError> {
        if bytes.is_empty() {
            return Err(EngineError::CorruptFile {
                message: "the ONNX file is empty".into(),
            });
        }
        let onnx = tract_onnx::onnx();
        let proto = onnx
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
            return Err(EngineError::UnsupportedOperators { ops: unsupported });
        }

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
        let plan = typed.into_runnable().map_err(load_error)?;
        Ok(Self {
            plan,
            inputs,
            outputs,
        })
    }
}

impl OnnxPredictor {
    fn with_symbolic_batch(proto: &pb::ModelProto) -> TractResult<InferenceModel> {
        // Declared output shapes would pin the batch size again; let tract infer them.
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .model_for_proto_model(proto)?;
        let batch = model.sym("N");
        for ix in 0..model.inputs.len() {
            let mut fact = model.input_fact(ix)?.clone();
            let fixed = matches!(fact.shape.dim(0), Some(tract_onnx::tract_hir::infer::GenericFactoid::Only(d)) if d.to_i64().is_ok());
            if fixed {
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

    fn run(&self, inputs: Vec<MaasTensor>) -> Result<Vec<MaasTensor>, EngineError> {
        let values = inputs
            .into_iter()
            .map(to_tract)
            .collect::<Result<TVec<_>, _>>()?;
        let results = self.plan.run(values).map_err(|e| EngineError::Inference {
            message: format!("{e:#}"),
        })?;
        results
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| from_tract(&spec.name, value))
            .collect()
    }
}
