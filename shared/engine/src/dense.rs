//! The bridge to the dense kernels of `maas-dense`: the switch that turns them off and running a
//! plan on engine tensors.

use maas_core::DataType;
pub(crate) use maas_dense::{Activation, DensePlan, Kernel, LayerWeights, Weights};

use crate::EngineError;
use crate::tensor::{Tensor, TensorData};

/// Whether the dense kernels may serve models: on unless `MAAS_DENSE_KERNELS=off` (to compare
/// with the engines' own paths).
pub fn dense_kernels_enabled() -> bool {
    !matches!(
        std::env::var("MAAS_DENSE_KERNELS").as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// The kernels' form of a manifest activation; `None` for GELU, which they don't implement.
pub(crate) fn activation(a: maas_core::Activation) -> Option<Activation> {
    Some(match a {
        maas_core::Activation::None => Activation::None,
        maas_core::Activation::Relu => Activation::Relu,
        maas_core::Activation::Sigmoid => Activation::Sigmoid,
        maas_core::Activation::Tanh => Activation::Tanh,
        maas_core::Activation::Gelu => return None,
    })
}

/// The executor name of a plan.
pub(crate) fn executor(plan: &DensePlan) -> &'static str {
    match plan.kernel() {
        Kernel::Avx512 => "dense-avx512",
        Kernel::Avx2 => "dense-avx2",
    }
}

/// Runs the plan on the first of `inputs` (any numeric type, `[rows, in_features]`) and names
/// the result `output_name`.
pub(crate) fn run_tensor(
    plan: &DensePlan,
    inputs: Vec<Tensor>,
    output_name: &str,
) -> Result<Tensor, EngineError> {
    let Some(input) = inputs.into_iter().next() else {
        return Err(EngineError::InvalidInput {
            message: "no input tensor".into(),
        });
    };
    let rows = input.rows();
    let width = plan.in_features();
    if rows.checked_mul(width) != Some(input.data.len()) {
        return Err(EngineError::InvalidInput {
            message: format!(
                "input {:?} has shape {:?}; the model takes [rows, {width}]",
                input.name, input.shape
            ),
        });
    }
    let TensorData::F32(values) = input.data.cast(DataType::Fp32)? else {
        return Err(EngineError::Inference {
            message: "cast to FP32 produced another type".into(),
        });
    };
    let output = plan
        .forward(&values, rows)
        .map_err(|e| EngineError::InvalidInput {
            message: e.to_string(),
        })?;
    Ok(Tensor {
        name: output_name.to_string(),
        shape: vec![rows, plan.out_features()],
        data: TensorData::F32(output),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_shape_proto,
        type_proto,
    };

    use super::*;
    use crate::mlp::{MlpPredictor, infer_architecture};
    use crate::onnx::OnnxPredictor;
    use crate::predictor::Predictor;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/seed-mlp")
            .join(name);
        std::fs::read(path).expect("seed fixture")
    }

    /// PyTorch's inputs (8 × 1000) and outputs for the seed model.
    fn reference() -> (Vec<f32>, Vec<f32>) {
        let doc: serde_json::Value =
            serde_json::from_slice(&fixture("reference.json")).expect("reference json");
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .expect("array")
                .iter()
                .flat_map(|x| match x.as_array() {
                    Some(row) => row
                        .iter()
                        .map(|v| v.as_f64().expect("number") as f32)
                        .collect(),
                    None => vec![x.as_f64().expect("number") as f32],
                })
                .collect()
        };
        (floats(&doc["inputs"]), floats(&doc["outputs"]))
    }

    fn run(predictor: &dyn Predictor, values: Vec<f32>, width: usize) -> Vec<f32> {
        let rows = values.len() / width;
        let input =
            Tensor::new("input", vec![rows, width], TensorData::F32(values)).expect("input tensor");
        let output = predictor.run(vec![input]).expect("prediction");
        let TensorData::F32(v) = output[0].data.clone() else {
            panic!("FP32 output");
        };
        v
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what}: row {i}: {g} vs {w}");
        }
    }

    #[test]
    fn the_seed_onnx_model_runs_on_the_dense_kernels_and_matches_pytorch_and_tract() {
        let bytes = fixture("model.onnx");
        let (inputs, outputs) = reference();
        let dense = OnnxPredictor::load_with(&bytes, true).expect("loads");
        let tract = OnnxPredictor::load_with(&bytes, false).expect("loads");
        assert_eq!(dense.is_dense(), Kernel::detect().is_some());
        assert!(!tract.is_dense());
        assert_eq!(dense.inputs(), tract.inputs());
        assert_eq!(dense.outputs(), tract.outputs());
        let got = run(&dense, inputs.clone(), 1000);
        assert_close(&got, &outputs, 1e-4, "dense vs PyTorch");
        assert_close(&got, &run(&tract, inputs, 1000), 1e-5, "dense vs tract");
    }

    #[test]
    fn the_seed_safetensors_model_runs_on_the_dense_kernels_and_matches_pytorch_and_candle() {
        let bytes = fixture("model.safetensors");
        let (inputs, outputs) = reference();
        let arch = infer_architecture(&bytes).expect("architecture");
        let (specs_in, specs_out) = MlpPredictor::specs(&arch);
        let load = |dense| {
            MlpPredictor::load_with(&bytes, &arch, specs_in.clone(), specs_out.clone(), dense)
                .expect("loads")
        };
        let (dense, candle) = (load(true), load(false));
        assert_eq!(dense.is_dense(), Kernel::detect().is_some());
        assert!(!candle.is_dense());
        let got = run(&dense, inputs.clone(), 1000);
        assert_close(&got, &outputs, 1e-4, "dense vs PyTorch");
        assert_close(&got, &run(&candle, inputs, 1000), 1e-5, "dense vs candle");
    }

    /// A small random-weight ONNX graph built from `nodes`, with `input [N, 7]`.
    fn graph(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, out_width: i64) -> Vec<u8> {
        let info = |name: &str, width: i64| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            tensor_shape_proto::Dimension {
                                value: Some(tensor_shape_proto::dimension::Value::DimParam(
                                    "N".into(),
                                )),
                                ..Default::default()
                            },
                            tensor_shape_proto::Dimension {
                                value: Some(tensor_shape_proto::dimension::Value::DimValue(width)),
                                ..Default::default()
                            },
                        ],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: nodes,
                initializer: initializers,
                input: vec![info("x", 7)],
                output: vec![info("y", out_width)],
                ..Default::default()
            }),
            ..Default::default()
        };
        prost::Message::encode_to_vec(&model)
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn attr_f(name: &str, f: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Float as i32,
            f,
            ..Default::default()
        }
    }

    /// An initializer of `dims` with values from a fixed sequence, as `float_data` or raw bytes.
    fn init(name: &str, dims: &[i64], raw: bool) -> TensorProto {
        let n: i64 = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 37 + name.len() as i64 * 11) % 23) as f32 / 23.0 - 0.45)
            .collect();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            raw_data: if raw {
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                Vec::new()
            },
            float_data: if raw { Vec::new() } else { values },
            ..Default::default()
        }
    }

    /// A small dense chain (Gemm with transB → Relu → MatMul + Add) with weights both raw and
    /// as float_data: the scanner's fuzz corpus.
    pub(crate) fn chain_model_bytes() -> Vec<u8> {
        graph(
            vec![
                node(
                    "Gemm",
                    &["x", "w1", "b1"],
                    "h1",
                    vec![AttributeProto {
                        name: "transB".into(),
                        r#type: attribute_proto::AttributeType::Int as i32,
                        i: 1,
                        ..Default::default()
                    }],
                ),
                node("Relu", &["h1"], "h2", vec![]),
                node("MatMul", &["h2", "w2"], "h3", vec![]),
                node("Add", &["h3", "b2"], "y", vec![]),
            ],
            vec![
                init("w1", &[5, 7], true),
                init("b1", &[5], false),
                init("w2", &[5, 3], false),
                init("b2", &[3], true),
            ],
            3,
        )
    }

    fn rows() -> Vec<f32> {
        (0..7 * 9).map(|i| (i % 11) as f32 / 5.0 - 1.0).collect()
    }

    #[test]
    fn matmul_add_chains_with_sigmoid_and_tanh_match_tract() {
        let bytes = graph(
            vec![
                node("MatMul", &["x", "w1"], "h1", vec![]),
                node("Add", &["h1", "b1"], "h2", vec![]),
                node("Sigmoid", &["h2"], "h3", vec![]),
                node("MatMul", &["h3", "w2"], "h4", vec![]),
                node("Tanh", &["h4"], "y", vec![]),
            ],
            vec![
                init("w1", &[7, 40], true),
                init("b1", &[1, 40], false),
                init("w2", &[40, 3], false),
            ],
            3,
        );
        let dense = OnnxPredictor::load_with(&bytes, true).expect("loads");
        let tract = OnnxPredictor::load_with(&bytes, false).expect("loads");
        assert_eq!(dense.is_dense(), Kernel::detect().is_some());
        assert_eq!(dense.outputs(), tract.outputs());
        assert_close(
            &run(&dense, rows(), 7),
            &run(&tract, rows(), 7),
            1e-5,
            "chain",
        );
    }

    #[test]
    fn graphs_outside_the_dense_pattern_stay_on_tract_and_still_answer() {
        let scaled = graph(
            vec![node(
                "Gemm",
                &["x", "w", "b"],
                "y",
                vec![attr_f("alpha", 0.5)],
            )],
            vec![init("w", &[7, 4], true), init("b", &[4], true)],
            4,
        );
        let branched = graph(
            vec![
                node("MatMul", &["x", "w"], "h", vec![]),
                node("Relu", &["h"], "r", vec![]),
                node("Add", &["r", "b"], "y", vec![]),
            ],
            vec![init("w", &[7, 4], true), init("b", &[4], true)],
            4,
        );
        for bytes in [scaled, branched] {
            let model = OnnxPredictor::load_with(&bytes, true).expect("loads");
            assert!(!model.is_dense());
            assert_eq!(run(&model, rows(), 7).len(), 9 * 4);
        }
    }
}
