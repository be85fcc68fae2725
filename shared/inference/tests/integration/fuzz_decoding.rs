//! Property-based fuzzing of request decoding: nothing a client sends may panic the service (the
//! Lambda build aborts on panic). Three generators: raw bytes with arbitrary header lengths,
//! structurally plausible requests with hostile values, and byte-level mutations of valid JSON
//! and binary requests. `PROPTEST_CASES` scales the runs (CI uses the defaults below; a long run
//! is `PROPTEST_CASES=200000 cargo test --release -p maas-inference --test integration fuzz_decoding`).

use maas_inference::protocol::decode_infer_request;
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every successful decode must be internally consistent.
fn check_consistent(body: &[u8], header: Option<&str>) {
    if let Ok(request) = decode_infer_request(header, body) {
        for tensor in &request.inputs {
            let count: usize = tensor.shape.iter().product();
            assert_eq!(tensor.data.len(), count, "data fills the shape");
        }
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ".{0,8}".prop_map(Value::String),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 64, 8, |inner| {
        prop::collection::vec(inner, 0..8).prop_map(Value::Array)
    })
}

fn input() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("input".to_string()), ".{0,6}"],
        prop::collection::vec(prop_oneof![-3i64..10, any::<i64>()], 0..4),
        prop::sample::select(vec![
            "FP32", "FP64", "INT32", "INT64", "BYTES", "BOOL", "FP16", "fp32", "",
        ]),
        prop::option::of(data()),
        prop::option::of(prop_oneof![0u64..64, any::<u64>()]),
    )
        .prop_map(|(name, shape, datatype, data, binary_size)| {
            let mut doc = json!({"name": name, "shape": shape, "datatype": datatype});
            if let Some(d) = data {
                doc["data"] = d;
            }
            if let Some(size) = binary_size {
                doc["parameters"] = json!({"binary_data_size": size});
            }
            doc
        })
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(input(), 0..4),
        prop::option::of(".{0,8}"),
        prop::option::of(prop::collection::vec((".{0,6}", any::<bool>()), 0..3)),
        any::<bool>(),
    )
        .prop_map(|(inputs, id, outputs, binary_output)| {
            let mut doc = json!({"inputs": inputs});
            if let Some(id) = id {
                doc["id"] = json!(id);
            }
            if let Some(outputs) = outputs {
                doc["outputs"] = json!(outputs
                    .into_iter()
                    .map(|(name, binary)| json!({"name": name, "parameters": {"binary_data": binary}}))
                    .collect::<Vec<_>>());
            }
            if binary_output {
                doc["parameters"] = json!({"binary_data_output": true});
            }
            doc
        })
}

fn valid_json_request() -> Vec<u8> {
    json!({"id": "x", "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}], "outputs": [{"name": "output"}]})
        .to_string()
        .into_bytes()
}

fn valid_binary_request() -> (Vec<u8>, usize) {
    let header = json!({"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}, {"name": "k", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[0u8; 24]);
    (body, header.len())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn raw_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048), header in prop::option::of(prop_oneof![(0usize..4096).prop_map(|n| n.to_string()), ".{0,12}"])) {
        check_consistent(&body, header.as_deref());
    }

    #[test]
    fn plausible_requests_never_panic(doc in request(), binary in prop::collection::vec(any::<u8>(), 0..256), binary_mode in any::<bool>()) {
        let json = doc.to_string().into_bytes();
        if binary_mode {
            let mut body = json.clone();
            body.extend_from_slice(&binary);
            check_consistent(&body, Some(&json.len().to_string()));
        } else {
            check_consistent(&json, None);
        }
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in prop::option::of(any::<prop::sample::Index>()),
        binary in any::<bool>(),
        header_shift in -4i64..4,
    ) {
        let (mut body, header_len) = if binary { valid_binary_request() } else { (valid_json_request(), 0) };
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Some(cut) = truncate {
            body.truncate(cut.index(body.len() + 1));
        }
        let header = binary.then(|| (header_len as i64 + header_shift).max(0).to_string());
        check_consistent(&body, header.as_deref());
    }
}

#[test]
fn deeply_nested_data_is_refused_not_overflowed() {
    // serde_json stops at 128 levels; our own flattening is iterative, so depth can't overflow.
    let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
    let body =
        format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{deep}}}]}}"#);
    assert!(decode_infer_request(None, body.as_bytes()).is_ok());
    let deeper = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let body =
        format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{deeper}}}]}}"#);
    assert!(decode_infer_request(None, body.as_bytes()).is_err());
}
