//! ONNX export of a trained MLP, encoded with prost from tract-onnx's own protobuf types: one
//! `Gemm` per layer (`transB = 1`, PyTorch's `[out, in]` weights as initializers) and the hidden
//! activation between layers. The batch dimension is the symbol `N`. Postprocessing (sigmoid,
//! softmax) stays in the manifest, as for every served model.

use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_shape_proto, type_proto,
};

use crate::TrainError;
use crate::spec::HiddenActivation;

/// ONNX's FLOAT element type.
const FLOAT: i32 = 1;

fn value_info(name: &str, width: usize) -> ValueInfoProto {
    let dim = |v: tensor_shape_proto::dimension::Value| tensor_shape_proto::Dimension {
        value: Some(v),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(tensor_shape_proto::dimension::Value::DimParam("N".into())),
                        dim(tensor_shape_proto::dimension::Value::DimValue(width as i64)),
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes the network given as PyTorch-layout tensors `layer{i}.weight [out, in]`,
/// `layer{i}.bias [out]` (in layer order, weight then bias).
pub fn export(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    activation: HiddenActivation,
) -> Result<Vec<u8>, TrainError> {
    if tensors.is_empty() || !tensors.len().is_multiple_of(2) {
        return Err(TrainError::Export(
            "a network needs weight and bias per layer".into(),
        ));
    }
    let layers = tensors.len() / 2;
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut current = "input".to_string();
    for (i, pair) in tensors.chunks(2).enumerate() {
        let (w_name, w_shape, w) = &pair[0];
        let (b_name, b_shape, b) = &pair[1];
        for (name, shape, data) in [(w_name, w_shape, w), (b_name, b_shape, b)] {
            initializers.push(TensorProto {
                name: name.clone(),
                dims: shape.iter().map(|&d| d as i64).collect(),
                data_type: FLOAT,
                raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
        }
        let last = i + 1 == layers;
        let gemm_out = if last {
            "output".to_string()
        } else {
            format!("gemm{}", i + 1)
        };
        nodes.push(NodeProto {
            op_type: "Gemm".into(),
            name: format!("layer{}", i + 1),
            input: vec![current.clone(), w_name.clone(), b_name.clone()],
            output: vec![gemm_out.clone()],
            attribute: vec![AttributeProto {
                name: "transB".into(),
                r#type: attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        current = gemm_out;
        if !last {
            let act_out = format!("act{}", i + 1);
            nodes.push(NodeProto {
                op_type: match activation {
                    HiddenActivation::Relu => "Relu",
                    HiddenActivation::Tanh => "Tanh",
                    HiddenActivation::Sigmoid => "Sigmoid",
                }
                .into(),
                name: format!("activation{}", i + 1),
                input: vec![current.clone()],
                output: vec![act_out.clone()],
                ..Default::default()
            });
            current = act_out;
        }
    }
    let in_width = tensors[0].1[1];
    let out_width = tensors[tensors.len() - 2].1[0];
    let model = ModelProto {
        ir_version: 8,
        producer_name: "maas".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "mlp".into(),
            node: nodes,
            initializer: initializers,
            input: vec![value_info("input", in_width)],
            output: vec![value_info("output", out_width)],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(prost::Message::encode_to_vec(&model))
}
