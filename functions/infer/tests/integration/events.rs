//! The router fed real Lambda event documents (API Gateway HTTP API payload 2.0 and function URL),
//! deserialised by `lambda_http` exactly as in Lambda, and the responses converted back the way
//! `lambda_http` converts them (JSON as text, binary tensor data as base64).

use std::sync::Arc;

use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body as LambdaBody, IntoResponse, Request};
use maas_core::ManifestTemplate;
use maas_inference::{AppState, InferenceConfig, MetricsSink, app};
use maas_registry::Registry;
use maas_store::MemoryStore;
use maas_tests::fixtures::{push_seed, seed_rows_and_outputs as reference};
use serde_json::{Value, json};
use tower::ServiceExt;

fn fixture(path: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join(path)).expect("fixture")
}

async fn router() -> axum::Router {
    let registry = Registry::new(Arc::new(MemoryStore::new()));
    push_seed(&registry, "seed", "model.onnx", ManifestTemplate::default()).await;
    let mut config = InferenceConfig::from_lookup(|_| None).expect("config");
    config.metrics = MetricsSink::Off;
    app(Arc::new(AppState::new(&config, registry)))
}

/// A real event document with this request's method, path, headers and body.
fn event(
    shape: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    base64: bool,
) -> Request {
    let mut doc: Value =
        serde_json::from_slice(&fixture(&format!("tests/events/{shape}"))).expect("event json");
    doc["rawPath"] = json!(path);
    doc["rawQueryString"] = json!("");
    doc.as_object_mut()
        .expect("object")
        .remove("queryStringParameters");
    doc["requestContext"]["http"]["method"] = json!(method);
    doc["requestContext"]["http"]["path"] = json!(path);
    for (k, v) in headers {
        doc["headers"][*k] = json!(v);
    }
    match body {
        Some(bytes) if base64 => {
            doc["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            doc["isBase64Encoded"] = json!(true);
        }
        Some(bytes) => {
            doc["body"] = json!(String::from_utf8(bytes.to_vec()).expect("utf8 body"));
            doc["isBase64Encoded"] = json!(false);
        }
        None => {
            doc.as_object_mut().expect("object").remove("body");
        }
    }
    let lambda_request: LambdaRequest =
        serde_json::from_value(doc).expect("lambda_http accepts the event");
    Request::from(lambda_request)
}

/// Runs the request through the router and converts the response as `lambda_http` does.
async fn invoke(
    router: &axum::Router,
    request: Request,
) -> (u16, lambda_http::http::HeaderMap, LambdaBody) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let response = IntoResponse::into_response(response).await;
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.into_body(),
    )
}

fn text_json(body: &LambdaBody) -> Value {
    match body {
        LambdaBody::Text(text) => serde_json::from_str(text).expect("JSON text body"),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn http_api_infer_event_reproduces_pytorch() {
    let router = router().await;
    let (rows, expected) = reference();
    let body = json!({"id": "apigw-1", "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "data": rows}]}).to_string();
    let request = event(
        "apigw-v2-http-api.json",
        "POST",
        "/v2/models/seed/infer",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
        false,
    );
    let (status, _, body) = invoke(&router, request).await;
    assert_eq!(status, 200);
    let doc = text_json(&body);
    assert_eq!(doc["id"], "apigw-1");
    assert_eq!(doc["model_version"], "1");
    let got: Vec<f32> = doc["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("n") as f32)
        .collect();
    for (g, w) in got.iter().zip(&expected) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
}

#[tokio::test]
async fn function_url_binary_infer_event_returns_base64_binary() {
    let router = router().await;
    let (rows, expected) = reference();
    let header = json!({
        "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 32000}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for v in rows.iter().flatten() {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let len = header.len().to_string();
    let request = event(
        "function-url.json",
        "POST",
        "/v2/models/seed/infer",
        &[
            ("content-type", "application/octet-stream"),
            ("inference-header-content-length", &len),
        ],
        Some(&body),
        true,
    );
    let (status, headers, body) = invoke(&router, request).await;
    assert_eq!(status, 200);
    let LambdaBody::Binary(bytes) = body else {
        panic!("binary responses go back as binary (base64 in the Lambda response)");
    };
    let n: usize = headers["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let values: Vec<f32> = bytes[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for (g, w) in values.iter().zip(&expected) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
}

#[tokio::test]
async fn function_url_metadata_health_and_errors() {
    let router = router().await;
    let (status, _, body) = invoke(
        &router,
        event(
            "function-url.json",
            "GET",
            "/v2/health/ready",
            &[],
            None,
            false,
        ),
    )
    .await;
    assert_eq!((status, text_json(&body)), (200, json!({"ready": true})));
    let (status, _, body) = invoke(
        &router,
        event(
            "function-url.json",
            "GET",
            "/v2/models/seed",
            &[],
            None,
            false,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(text_json(&body)["inputs"][0]["shape"], json!([-1, 1000]));
    let (status, _, body) = invoke(
        &router,
        event(
            "apigw-v2-http-api.json",
            "POST",
            "/v2/models/nope/infer",
            &[],
            Some(b"{}"),
            false,
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        text_json(&body)["error"]
            .as_str()
            .expect("message")
            .contains("\"nope\" not found")
    );
    // tritonclient's JSON mode posts without any Content-Type: still JSON.
    let (rows, _) = reference();
    let body = json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "data": rows[0]}]}).to_string();
    let (status, _, _) = invoke(
        &router,
        event(
            "apigw-v2-http-api.json",
            "POST",
            "/v2/models/seed/infer",
            &[],
            Some(body.as_bytes()),
            false,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let v1 = json!({"instances": [rows[0].clone()]}).to_string();
    let (status, _, body) = invoke(
        &router,
        event(
            "function-url.json",
            "POST",
            "/v1/models/seed:predict",
            &[("content-type", "application/json")],
            Some(v1.as_bytes()),
            false,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(
        text_json(&body)["predictions"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
}
