//! The committed fixtures — the seed (the PyTorch MLP as safetensors, ONNX and pickle, with
//! PyTorch's outputs for 8 inputs) and the tabular models of `fixtures/tabular` — and generators
//! for files a push must refuse.

use std::path::PathBuf;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Directory of the seed-mlp fixture.
pub fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed-mlp")
}

/// Bytes of one seed fixture file (`model.onnx`, `model.safetensors`, `model.pt`).
pub fn seed_file(name: &str) -> Vec<u8> {
    std::fs::read(seed_dir().join(name)).expect("seed fixture file")
}

/// PyTorch's inputs and outputs for the seed model.
pub struct Reference {
    /// 8 rows of 1000 features.
    pub inputs: Vec<Vec<f32>>,
    /// One prediction per row.
    pub outputs: Vec<f32>,
}

/// Loads `reference.json`.
pub fn seed_reference() -> Reference {
    let raw = std::fs::read(seed_dir().join("reference.json")).expect("reference.json");
    let doc: serde_json::Value = serde_json::from_slice(&raw).expect("reference json");
    let as_f32 = |v: &serde_json::Value| v.as_f64().expect("number") as f32;
    Reference {
        inputs: doc["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|row| row.as_array().expect("row").iter().map(as_f32).collect())
            .collect(),
        outputs: doc["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(as_f32)
            .collect(),
    }
}

/// Asserts every prediction is within `tol` of PyTorch's.
pub fn assert_matches_reference(predictions: &[f32], tol: f32) {
    let reference = seed_reference();
    assert_eq!(
        predictions.len(),
        reference.outputs.len(),
        "one prediction per row"
    );
    for (i, (got, want)) in predictions.iter().zip(&reference.outputs).enumerate() {
        assert!(
            (got - want).abs() <= tol,
            "row {i}: got {got}, PyTorch {want} (diff {})",
            (got - want).abs()
        );
    }
}

/// The seed safetensors with tensors renamed (e.g. `layer1` → `0`, as `nn.Sequential` saves).
pub fn seed_safetensors_renamed(rename: &[(&str, &str)]) -> Vec<u8> {
    let original = seed_file("model.safetensors");
    let parsed = safetensors::SafeTensors::deserialize(&original).expect("seed safetensors");
    let mut views = Vec::new();
    for (name, view) in parsed.tensors() {
        let (prefix, suffix) = name.split_once('.').expect("prefix.suffix");
        let new_prefix = rename
            .iter()
            .find(|(from, _)| *from == prefix)
            .map_or(prefix, |(_, to)| to);
        views.push((format!("{new_prefix}.{suffix}"), view));
    }
    safetensors::serialize(views, None).expect("serialise")
}

/// A safetensors file from `(name, dtype, shape)`, filled with small values.
pub fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>)]) -> Vec<u8> {
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, dtype, shape)| {
            let n: usize = shape.iter().product();
            vec![0u8; n * dtype.bitsize() / 8]
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, dtype, shape), buf)| {
            (
                name.to_string(),
                TensorView::new(*dtype, shape.clone(), buf).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serialise")
}

/// A small, valid ONNX graph `x [N,2,2] -> op -> y` for each operator in `ops`, chained.
pub fn onnx_with_ops(ops: &[&str]) -> Vec<u8> {
    onnx_graph(ops, &["N", "2", "2"])
}

/// Like [`onnx_with_ops`], with the input and output dimensions given (numbers or symbols).
pub fn onnx_graph(ops: &[&str], dims: &[&str]) -> Vec<u8> {
    use tract_onnx::pb::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto, tensor_shape_proto, type_proto,
    };
    let value = |name: &str| ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1, // FLOAT
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(match d.parse::<i64>() {
                                Ok(n) => tensor_shape_proto::dimension::Value::DimValue(n),
                                Err(_) => {
                                    tensor_shape_proto::dimension::Value::DimParam(d.to_string())
                                }
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes: Vec<NodeProto> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| NodeProto {
            op_type: op.to_string(),
            input: vec![if i == 0 { "x".into() } else { format!("t{i}") }],
            output: vec![if i + 1 == ops.len() {
                "y".into()
            } else {
                format!("t{}", i + 1)
            }],
            name: format!("node{i}"),
            ..Default::default()
        })
        .collect();
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    prost::Message::encode_to_vec(&model)
}

/// The seed reference as (rows, PyTorch outputs).
pub fn seed_rows_and_outputs() -> (Vec<Vec<f32>>, Vec<f32>) {
    let reference = seed_reference();
    (reference.inputs, reference.outputs)
}

/// Pushes a seed fixture file (`model.onnx` or `model.safetensors`) as `model`, returning the
/// new version's manifest.
pub async fn push_seed(
    registry: &maas_registry::Registry,
    model: &str,
    file: &str,
    template: maas_core::ManifestTemplate,
) -> maas_core::Manifest {
    push_bytes(registry, model, file, seed_file(file), template).await
}

/// Pushes `bytes` as `model`'s next version, named `file`; panics with the refusal.
async fn push_bytes(
    registry: &maas_registry::Registry,
    model: &str,
    file: &str,
    bytes: Vec<u8>,
    template: maas_core::ManifestTemplate,
) -> maas_core::Manifest {
    maas_models::push(
        registry,
        maas_models::PushRequest {
            model: maas_core::ModelName::new(model).expect("valid model name"),
            file_name: file.into(),
            bytes: bytes::Bytes::from(bytes),
            template,
            actor: "test".into(),
            alias: None,
            reason: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{model}: {file} pushes: {e}"))
    .manifest
}

/// Pushes file `file` of tabular fixture `fixture` as `model`.
pub async fn push_tabular(
    registry: &maas_registry::Registry,
    model: &str,
    fixture: &str,
    file: &str,
) -> maas_core::Manifest {
    let bytes = tabular_file(fixture, file);
    push_bytes(
        registry,
        model,
        file,
        bytes,
        maas_core::ManifestTemplate::default(),
    )
    .await
}

/// An embedding lookup: `ids [N, 3]` (INT64) → `Gather(table [10, 4], ids)` → `y [N, 3, 4]`.
/// An id outside 0..10 is a bad input value (the client's error, not the model's).
pub fn onnx_embedding() -> Vec<u8> {
    use tract_onnx::pb::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
        TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
    };
    let value = |name: &str, elem_type: i32, dims: &[&str]| ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(match d.parse::<i64>() {
                                Ok(n) => tensor_shape_proto::dimension::Value::DimValue(n),
                                Err(_) => {
                                    tensor_shape_proto::dimension::Value::DimParam(d.to_string())
                                }
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let table = TensorProto {
        name: "table".into(),
        dims: vec![10, 4],
        data_type: 1,
        float_data: (0..40).map(|i| i as f32 / 10.0).collect(),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "embedding".into(),
            node: vec![NodeProto {
                op_type: "Gather".into(),
                input: vec!["table".into(), "ids".into()],
                output: vec!["y".into()],
                name: "lookup".into(),
                ..Default::default()
            }],
            initializer: vec![table],
            input: vec![value("ids", 7, &["N", "3"])],
            output: vec![value("y", 1, &["N", "3", "4"])],
            ..Default::default()
        }),
        ..Default::default()
    };
    prost::Message::encode_to_vec(&model)
}

/// The folder of a tabular fixture (`tests/fixtures/tabular/{name}`), made by
/// `tests/fixtures/tabular/make_fixtures.py` with the real exporters.
pub fn tabular_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tabular")
        .join(name)
}

/// A file of a tabular fixture.
pub fn tabular_file(name: &str, file: &str) -> Vec<u8> {
    let path = tabular_dir(name).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tabular fixture's reference: its rows and what the library itself answered.
#[derive(Debug, Clone)]
pub struct TabularReference {
    /// Feature names.
    pub features: Vec<String>,
    /// Row-major inputs (NaN where the reference has null).
    pub inputs: Vec<f32>,
    /// The library's raw `predict` values, flattened.
    pub predictions: Vec<f64>,
    /// Classifiers: probabilities, flattened row-major.
    pub probabilities: Option<Vec<f64>>,
    /// Classifiers: the label of each row (as numbers).
    pub labels: Vec<f64>,
    /// onnxruntime's outputs for `model.onnx`, by output name, flattened.
    pub onnxruntime: Vec<(String, Vec<f64>)>,
    /// The whole document, for what the fields above flatten away (string labels).
    pub raw: serde_json::Value,
}

impl TabularReference {
    /// Rows in the reference.
    pub fn rows(&self) -> usize {
        self.inputs.len() / self.features.len().max(1)
    }
}

fn flatten(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(items) => items.iter().flat_map(flatten).collect(),
        serde_json::Value::Null => vec![f64::NAN],
        serde_json::Value::String(s) if s == "inf" => vec![f64::INFINITY],
        serde_json::Value::String(s) if s == "-inf" => vec![f64::NEG_INFINITY],
        other => vec![other.as_f64().unwrap_or(f64::NAN)],
    }
}

/// Reads `reference.json` of a tabular fixture.
pub fn tabular_reference(name: &str) -> TabularReference {
    let doc: serde_json::Value =
        serde_json::from_slice(&tabular_file(name, "reference.json")).expect("reference json");
    let library = &doc["library"];
    TabularReference {
        features: doc["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|f| f.as_str().expect("name").to_string())
            .collect(),
        inputs: flatten(&doc["inputs"])
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        predictions: flatten(&library["predictions"]),
        probabilities: library.get("probabilities").map(flatten),
        labels: library.get("labels").map(flatten).unwrap_or_default(),
        onnxruntime: doc
            .get("onnxruntime")
            .and_then(|o| o.as_object())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), flatten(v))).collect())
            .unwrap_or_default(),
        raw: doc,
    }
}

/// The strings of a (nested) JSON list, in order.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}
