//! The Open Inference Protocol's (KServe v2 / Triton REST) request and response bodies, including
//! the binary tensor data extension, decoded into engine tensors and encoded back.
//!
//! Decoding never panics and never allocates more than the body could describe: every size
//! (shapes, binary sizes, header lengths) is checked against what actually arrived before use.

use maas_core::DataType;
use maas_engine::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::InferenceError;

/// Header carrying the length of the JSON part of a binary-extension body.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// A decoded `POST …/infer` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The client's request id, echoed in the response.
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Which outputs to return (empty: all) and whether each goes back as binary.
    pub outputs: Vec<OutputRequest>,
    /// Request-level `binary_data_output`: every output as binary.
    pub all_binary: bool,
}

/// One requested output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRequest {
    /// Output name.
    pub name: String,
    /// Return its data in the binary section.
    pub binary: bool,
}

#[derive(Debug, Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<WireInput>,
    #[serde(default)]
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Debug, Deserialize)]
struct WireInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

fn bad(message: impl Into<String>) -> InferenceError {
    InferenceError::BadRequest(message.into())
}

fn flag(params: &Option<Map<String, Value>>, key: &str) -> bool {
    params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Splits a body into its JSON part and its binary part.
fn split_body<'a>(
    header_length: Option<&str>,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), InferenceError> {
    let Some(raw) = header_length else {
        return Ok((body, &[]));
    };
    let n: usize = raw.trim().parse().map_err(|_| {
        bad(format!(
            "the Inference-Header-Content-Length header must be a byte count, got {raw:?}"
        ))
    })?;
    if n > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(n))
}

/// Decodes an inference request body (JSON, or JSON + binary tensor data).
pub fn decode_infer_request(
    header_length: Option<&str>,
    body: &[u8],
) -> Result<DecodedRequest, InferenceError> {
    let (json, mut binary) = split_body(header_length, body)?;
    let wire: WireRequest = serde_json::from_slice(json).map_err(|e| {
        bad(format!(
            "the request is not a valid inference request ({e}); send {{\"inputs\": [{{\"name\", \"shape\", \"datatype\", \"data\"}}]}}"
        ))
    })?;
    if wire.inputs.is_empty() {
        return Err(bad("the request has no inputs"));
    }
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for input in wire.inputs {
        inputs.push(decode_input(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            binary.len()
        )));
    }
    let all_binary = flag(&wire.parameters, "binary_data_output");
    let outputs = wire
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| OutputRequest {
            binary: all_binary || flag(&o.parameters, "binary_data"),
            name: o.name,
        })
        .collect();
    Ok(DecodedRequest {
        id: wire.id,
        inputs,
        outputs,
        all_binary,
    })
}

fn decode_input(input: WireInput, binary: &mut &[u8]) -> Result<Tensor, InferenceError> {
    let name = input.name;
    let datatype: DataType = input.datatype.parse().map_err(|_| {
        bad(format!(
            "input {name:?}: unknown datatype {:?}; use FP32, FP64, INT32, INT64 or BYTES",
            input.datatype
        ))
    })?;
    if !matches!(
        datatype,
        DataType::Fp32 | DataType::Fp64 | DataType::Int32 | DataType::Int64 | DataType::Bytes
    ) {
        return Err(bad(format!(
            "input {name:?}: datatype {datatype} is not supported; send FP32, FP64, INT32, INT64 or BYTES"
        )));
    }
    let mut shape = Vec::with_capacity(input.shape.len());
    for &d in &input.shape {
        let dim = usize::try_from(d).map_err(|_| {
            bad(format!(
                "input {name:?}: shape {:?} has a negative dimension; send the actual sizes",
                input.shape
            ))
        })?;
        shape.push(dim);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            bad(format!(
                "input {name:?}: shape {:?} is too large",
                input.shape
            ))
        })?;
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"));
    let data = match (binary_size, input.data) {
        (Some(size), _) => {
            let size = size
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "input {name:?}: binary_data_size must be a byte count"
                    ))
                })?;
            if size > binary.len() {
                return Err(bad(format!(
                    "input {name:?}: binary_data_size is {size} but only {} binary bytes remain",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            decode_binary(&name, datatype, mine, count)?
        }
        (None, Some(value)) => decode_json_data(&name, datatype, &value, count)?,
        (None, None) => {
            return Err(bad(format!(
                "input {name:?} has no data; send \"data\" or binary data with parameters.binary_data_size"
            )));
        }
    };
    Tensor::new(name, shape, data).map_err(|e| bad(e.to_string()))
}

fn decode_binary(
    name: &str,
    datatype: DataType,
    bytes: &[u8],
    count: usize,
) -> Result<TensorData, InferenceError> {
    if datatype == DataType::Bytes {
        return decode_binary_strings(name, bytes, count);
    }
    let width = datatype.element_size().unwrap_or(1);
    if Some(bytes.len()) != count.checked_mul(width) {
        return Err(bad(format!(
            "input {name:?}: {} binary bytes don't hold {count} {datatype} values ({} bytes each)",
            bytes.len(),
            width
        )));
    }
    let chunks = bytes.chunks_exact(width);
    Ok(match datatype {
        DataType::Fp32 => TensorData::F32(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DataType::Fp64 => TensorData::F64(
            chunks
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        DataType::Int32 => TensorData::I32(
            chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => TensorData::I64(
            chunks
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    })
}

/// `BYTES` in the binary extension: each element a 4-byte little-endian length, then its bytes.
fn decode_binary_strings(
    name: &str,
    mut bytes: &[u8],
    count: usize,
) -> Result<TensorData, InferenceError> {
    let mut strings = Vec::with_capacity(count.min(1 << 16));
    while !bytes.is_empty() {
        let truncated = || {
            bad(format!(
                "input {name:?}: BYTES binary data is truncated (each element is a 4-byte little-endian length, then its bytes)"
            ))
        };
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(truncated)?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(truncated());
        }
        let (element, rest) = rest.split_at(length);
        let text = std::str::from_utf8(element).map_err(|_| {
            bad(format!(
                "input {name:?}: BYTES element {} is not UTF-8 text",
                strings.len()
            ))
        })?;
        strings.push(text.to_string());
        bytes = rest;
    }
    if strings.len() != count {
        return Err(bad(format!(
            "input {name:?}: {} BYTES elements for a shape that holds {count}",
            strings.len()
        )));
    }
    Ok(TensorData::Bytes(strings))
}

/// Flattens `data` (flat or nested lists, row-major) into numbers of `datatype`.
fn decode_json_data(
    name: &str,
    datatype: DataType,
    data: &Value,
    count: usize,
) -> Result<TensorData, InferenceError> {
    let mut scalars: Vec<&Value> = Vec::with_capacity(count.min(1 << 20));
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => {
                if scalars.len() == count {
                    return Err(bad(format!(
                        "input {name:?}: more values than its shape holds ({count})"
                    )));
                }
                scalars.push(other);
            }
        }
    }
    if scalars.len() != count {
        return Err(bad(format!(
            "input {name:?}: {} values for a shape that holds {count}",
            scalars.len()
        )));
    }
    let not_number = |i: usize, v: &Value| {
        bad(format!(
            "input {name:?}: value {i} is {v}, not a {datatype} number"
        ))
    };
    Ok(match datatype {
        DataType::Fp32 => TensorData::F32(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().map(|x| x as f32).ok_or_else(|| not_number(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp64 => TensorData::F64(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or_else(|| not_number(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bytes => TensorData::Bytes(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        bad(format!("input {name:?}: value {i} is {v}, not a string"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int32 => TensorData::I32(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| not_number(i, v))
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => TensorData::I64(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_i64().ok_or_else(|| not_number(i, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Output values as JSON, each type serialised as itself (f32 in its shortest form).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireData<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    Bytes(&'a [String]),
}

#[derive(Debug, Serialize)]
struct WireResponseOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<WireData<'a>>,
}

#[derive(Debug, Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<WireResponseOutput<'a>>,
}

/// An encoded response body and, for the binary extension, the JSON header's length.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResponse {
    /// The body.
    pub body: Vec<u8>,
    /// `Some(n)`: the first `n` bytes are JSON, the rest binary tensor data.
    pub header_length: Option<usize>,
}

fn append_le(out: &mut Vec<u8>, data: &TensorData) {
    match data {
        TensorData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bytes(v) => v.iter().for_each(|x| {
            out.extend_from_slice(&(x.len() as u32).to_le_bytes());
            out.extend_from_slice(x.as_bytes());
        }),
    }
}

fn byte_size(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|x| 4 + x.len()).sum(),
        other => other.len() * other.datatype().element_size().unwrap_or(1),
    }
}

/// Selects the requested outputs and encodes the response (binary where asked for).
pub fn encode_infer_response(
    model_name: &str,
    model_version: u64,
    request: &DecodedRequest,
    outputs: &[Tensor],
) -> Result<EncodedResponse, InferenceError> {
    let mut chosen: Vec<(&Tensor, bool)> = Vec::new();
    if request.outputs.is_empty() {
        chosen.extend(outputs.iter().map(|t| (t, request.all_binary)));
    } else {
        for wanted in &request.outputs {
            let tensor = outputs
                .iter()
                .find(|t| t.name == wanted.name)
                .ok_or_else(|| {
                    let names: Vec<&str> = outputs.iter().map(|t| t.name.as_str()).collect();
                    bad(format!(
                        "the model has no output {:?}; its outputs are {}",
                        wanted.name,
                        names.join(", ")
                    ))
                })?;
            chosen.push((tensor, wanted.binary));
        }
    }
    let mut binary = Vec::new();
    let wire_outputs = chosen
        .iter()
        .map(|(t, as_binary)| {
            let datatype = t.data.datatype().as_str();
            if *as_binary {
                append_le(&mut binary, &t.data);
                WireResponseOutput {
                    name: &t.name,
                    datatype,
                    shape: &t.shape,
                    parameters: Some(serde_json::json!({"binary_data_size": byte_size(&t.data)})),
                    data: None,
                }
            } else {
                WireResponseOutput {
                    name: &t.name,
                    datatype,
                    shape: &t.shape,
                    parameters: None,
                    data: Some(match &t.data {
                        TensorData::F32(v) => WireData::F32(v),
                        TensorData::F64(v) => WireData::F64(v),
                        TensorData::I32(v) => WireData::I32(v),
                        TensorData::I64(v) => WireData::I64(v),
                        TensorData::Bytes(v) => WireData::Bytes(v),
                    }),
                }
            }
        })
        .collect();
    let response = WireResponse {
        model_name,
        model_version: model_version.to_string(),
        id: request.id.as_deref(),
        outputs: wire_outputs,
    };
    let mut body = serde_json::to_vec(&response)
        .map_err(|e| InferenceError::Internal(format!("response encoding failed: {e}")))?;
    if chosen.iter().any(|(_, b)| *b) {
        let header_length = body.len();
        body.extend_from_slice(&binary);
        Ok(EncodedResponse {
            body,
            header_length: Some(header_length),
        })
    } else {
        Ok(EncodedResponse {
            body,
            header_length: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_flat_and_nested_json_data() {
        let flat = br#"{"id":"r1","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#;
        let nested = br#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#;
        let a = decode_infer_request(None, flat).expect("flat");
        let b = decode_infer_request(None, nested).expect("nested");
        assert_eq!(a.id.as_deref(), Some("r1"));
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.inputs[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn decodes_binary_inputs_and_requested_binary_outputs() {
        let json = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"k","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        body.extend_from_slice(&7i64.to_le_bytes());
        let req = decode_infer_request(Some(&json.len().to_string()), &body).expect("binary");
        assert_eq!(req.inputs[0].data, TensorData::F32(vec![1.5, -2.0]));
        assert_eq!(req.inputs[1].data, TensorData::I64(vec![7]));
        assert!(req.outputs[0].binary);

        let y = Tensor::new("y", vec![1, 1], TensorData::F32(vec![0.25])).expect("tensor");
        let out = encode_infer_response("m", 3, &req, &[y]).expect("encode");
        let n = out.header_length.expect("binary response");
        let header: Value = serde_json::from_slice(&out.body[..n]).expect("json header");
        assert_eq!(header["model_version"], "3");
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 4);
        assert_eq!(&out.body[n..], &0.25f32.to_le_bytes());
    }

    #[test]
    fn bytes_tensors_travel_as_json_strings_and_length_prefixed_binary() {
        let json =
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","data":["gold","é"]}]}"#;
        let req = decode_infer_request(None, json.as_bytes()).expect("json strings");
        let want = TensorData::Bytes(vec!["gold".into(), "é".into()]);
        assert_eq!(req.inputs[0].data, want);

        let header = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":14}}]}"#;
        let mut body = header.to_vec();
        for s in ["gold", "é"] {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
            body.extend_from_slice(s.as_bytes());
        }
        let length = header.len().to_string();
        let req = decode_infer_request(Some(&length), &body).expect("binary strings");
        assert_eq!(req.inputs[0].data, want);
        let truncated = decode_infer_request(Some(&length), &body[..body.len() - 1])
            .expect_err("truncated")
            .to_string();
        assert!(truncated.contains("binary"), "{truncated}");

        let label = Tensor::new("label", vec![2], want).expect("tensor");
        let plain = DecodedRequest {
            id: None,
            inputs: vec![],
            outputs: vec![],
            all_binary: false,
        };
        let encoded =
            encode_infer_response("m", 1, &plain, std::slice::from_ref(&label)).expect("encodes");
        let doc: Value = serde_json::from_slice(&encoded.body).expect("json");
        assert_eq!(doc["outputs"][0]["datatype"], "BYTES");
        assert_eq!(doc["outputs"][0]["data"], serde_json::json!(["gold", "é"]));
        let binary = DecodedRequest {
            all_binary: true,
            ..plain
        };
        let encoded = encode_infer_response("m", 1, &binary, &[label]).expect("encodes");
        let at = encoded.header_length.expect("binary");
        assert_eq!(&encoded.body[at..], &body[header.len()..]);
    }

    #[test]
    fn refuses_inconsistent_requests_with_reasons() {
        let cases: &[(Option<&str>, &[u8], &str)] = &[
            (None, b"{", "not a valid inference request"),
            (None, br#"{"inputs":[]}"#, "no inputs"),
            (None, br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]}"#, "1 values"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#, "more values"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#, "not a FP32"),
            (None, br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#, "negative"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[true]}]}"#, "not supported"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":[1]}]}"#, "not a string"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#, "unknown datatype"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[3000000000]}]}"#, "not a INT32"),
            (None, br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, "no data"),
            (None, br#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#, "too large"),
            (Some("abc"), b"{}", "byte count"),
            (Some("99"), b"{}", "only 2 bytes"),
        ];
        for (header, body, expected) in cases {
            let err = decode_infer_request(*header, body)
                .expect_err("must fail")
                .to_string();
            assert!(
                err.contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
