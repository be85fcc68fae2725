//! The router in-process (no socket): every route of the Open Inference Protocol and V1, the
//! binary extension, alias selection, warm caching, and every error status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use maas_core::{AliasName, ManifestTemplate, ModelName, Version};
use maas_inference::{AppState, CacheConfig, InferenceConfig, MetricsSink, app};
use maas_models::{PushRequest, push};
use maas_registry::Registry;
use maas_store::{MemoryStore, ObjectStore, PutCondition};
use serde_json::{Value, json};
use tower::ServiceExt;

use maas_tests::fixtures::{push_seed, seed_file as fixture, seed_rows_and_outputs as reference};

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-4, "got {g}, PyTorch {w}");
    }
}

struct Service {
    router: axum::Router,
    state: Arc<AppState>,
    store: Arc<MemoryStore>,
    registry: Registry,
}

async fn push_file(registry: &Registry, model: &str, file: &str) -> Version {
    push_seed(registry, model, file, ManifestTemplate::default())
        .await
        .version
}

async fn service_with(cache: CacheConfig, max_body_bytes: usize) -> Service {
    let store = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    push_file(&registry, "seed", "model.onnx").await;
    push_file(&registry, "seed-st", "model.safetensors").await;
    let mut config = InferenceConfig::from_lookup(|_| None).expect("config");
    config.cache = cache;
    config.max_body_bytes = max_body_bytes;
    config.metrics = MetricsSink::Off;
    let state = Arc::new(AppState::new(&config, registry.clone()));
    Service {
        router: app(state.clone()),
        state,
        store,
        registry,
    }
}

async fn service() -> Service {
    service_with(CacheConfig::default(), maas_inference::LAMBDA_PAYLOAD_LIMIT).await
}

async fn call(svc: &Service, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = svc
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body)
}

async fn get(svc: &Service, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) =
        call(svc, Request::get(uri).body(Body::empty()).expect("request")).await;
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

async fn post_json(svc: &Service, uri: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, _, body) = call(svc, request).await;
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

fn infer_body(rows: &[Vec<f32>], nested: bool) -> Value {
    let data: Value = if nested {
        json!(rows)
    } else {
        json!(rows.iter().flatten().collect::<Vec<_>>())
    };
    json!({"id": "req-42", "inputs": [{"name": "input", "shape": [rows.len(), 1000], "datatype": "FP32", "data": data}]})
}

fn output_values(body: &Value) -> Vec<f32> {
    body["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

#[tokio::test]
async fn health_and_server_metadata() {
    let svc = service().await;
    assert_eq!(
        get(&svc, "/v2/health/live").await,
        (StatusCode::OK, json!({"live": true}))
    );
    assert_eq!(
        get(&svc, "/v2/health/ready").await,
        (StatusCode::OK, json!({"ready": true}))
    );
    let (status, meta) = get(&svc, "/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["name"], "maas");
    assert!(
        meta["extensions"]
            .as_array()
            .expect("list")
            .contains(&json!("binary_tensor_data"))
    );
}

#[tokio::test]
async fn model_metadata_lists_versions_platform_and_tensors() {
    let svc = service().await;
    let (status, meta) = get(&svc, "/v2/models/seed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["platform"], "onnx");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 1000]})
    );
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 1]));
    let (_, meta) = get(&svc, "/v2/models/seed-st/versions/1").await;
    assert_eq!(meta["platform"], "safetensors");
    let (status, ready) = get(&svc, "/v2/models/seed/versions/1/ready").await;
    assert_eq!(
        (status, ready["ready"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, list) = get(&svc, "/v2/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["models"][0]["name"], "seed");
    assert_eq!(list["models"][1]["name"], "seed-st");
}

#[tokio::test]
async fn infer_reproduces_pytorch_with_flat_and_nested_data_on_both_engines() {
    let svc = service().await;
    let (rows, expected) = reference();
    for model in ["seed", "seed-st"] {
        for nested in [false, true] {
            let (status, body) = post_json(
                &svc,
                &format!("/v2/models/{model}/infer"),
                infer_body(&rows, nested),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["id"], "req-42", "id echoed");
            assert_eq!(body["model_name"], model);
            assert_eq!(body["model_version"], "1");
            assert_eq!(body["outputs"][0]["shape"], json!([8, 1]));
            assert_eq!(body["outputs"][0]["datatype"], "FP32");
            assert_close(&output_values(&body), &expected);
        }
        let (status, body) = post_json(
            &svc,
            &format!("/v2/models/{model}/versions/1/infer"),
            infer_body(&rows[..1], false),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_close(&output_values(&body), &expected[..1]);
    }
}

#[tokio::test]
async fn binary_tensor_data_in_and_out() {
    let svc = service().await;
    let (rows, expected) = reference();
    let header = json!({
        "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 8 * 1000 * 4}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for v in rows.iter().flatten() {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let request = Request::post("/v2/models/seed/infer")
        .header("Inference-Header-Content-Length", header.len())
        .header("Content-Type", "application/octet-stream")
        .body(Body::from(body))
        .expect("request");
    let (status, headers, body) = call(&svc, request).await;
    assert_eq!(status, StatusCode::OK);
    let n: usize = headers["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let json_part: Value = serde_json::from_slice(&body[..n]).expect("header JSON");
    assert_eq!(
        json_part["outputs"][0]["parameters"]["binary_data_size"],
        32
    );
    let values: Vec<f32> = body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_close(&values, &expected);
}

#[tokio::test]
async fn other_numeric_datatypes_and_requested_outputs() {
    let svc = service().await;
    for (datatype, data) in [
        ("FP64", json!(vec![0.5f64; 1000])),
        ("INT32", json!(vec![1i32; 1000])),
        ("INT64", json!(vec![2i64; 1000])),
    ] {
        let body = json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": datatype, "data": data}], "outputs": [{"name": "output"}]});
        let (status, out) = post_json(&svc, "/v2/models/seed/infer", body).await;
        assert_eq!(status, StatusCode::OK, "{datatype}: {out}");
        assert_eq!(out["outputs"].as_array().expect("outputs").len(), 1);
    }
    let body = json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "data": vec![0.0; 1000]}], "outputs": [{"name": "probabilities"}]});
    let (status, out) = post_json(&svc, "/v2/models/seed/infer", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        out["error"]
            .as_str()
            .expect("message")
            .contains("its outputs are output"),
        "{out}"
    );
}

#[tokio::test]
async fn aliases_select_versions_and_promotions_show_within_the_ttl() {
    let cache = CacheConfig {
        alias_ttl: Duration::from_millis(200),
        ..CacheConfig::default()
    };
    let svc = service_with(cache, maas_inference::LAMBDA_PAYLOAD_LIMIT).await;
    let model = ModelName::new("seed").expect("name");
    push_file(&svc.registry, "seed", "model.onnx").await; // version 2
    let (rows, _) = reference();
    let version_of = |body: &Value| body["model_version"].as_str().expect("version").to_string();

    let (_, body) = post_json(&svc, "/v2/models/seed/infer", infer_body(&rows[..1], false)).await;
    assert_eq!(version_of(&body), "2", "no production alias: latest");
    let staging = AliasName::new("staging").expect("alias");
    svc.registry
        .set_alias(&model, &staging, Version::FIRST, "t", None, Value::Null)
        .await
        .expect("alias");
    let (_, body) = post_json(
        &svc,
        "/v2/models/seed/infer?alias=staging",
        infer_body(&rows[..1], false),
    )
    .await;
    assert_eq!(version_of(&body), "1", "?alias=staging");
    let request = Request::post("/v2/models/seed/infer")
        .header("X-Maas-Alias", "staging")
        .body(Body::from(infer_body(&rows[..1], false).to_string()))
        .expect("request");
    let (_, _, raw) = call(&svc, request).await;
    assert_eq!(
        version_of(&serde_json::from_slice(&raw).expect("json")),
        "1",
        "X-Maas-Alias header"
    );
    let (_, body) = post_json(
        &svc,
        "/v2/models/seed/versions/staging/infer",
        infer_body(&rows[..1], false),
    )
    .await;
    assert_eq!(version_of(&body), "1", "alias in the version segment");

    // Promote production to 1: once the TTL has passed, unversioned requests follow it.
    let production = AliasName::new("production").expect("alias");
    svc.registry
        .set_alias(&model, &production, Version::FIRST, "t", None, Value::Null)
        .await
        .expect("alias");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, body) = post_json(&svc, "/v2/models/seed/infer", infer_body(&rows[..1], false)).await;
    assert_eq!(version_of(&body), "1", "production wins over latest");
}

#[tokio::test]
async fn v1_predict_takes_instances() {
    let svc = service().await;
    let (rows, expected) = reference();
    let (status, body) = post_json(
        &svc,
        "/v1/models/seed-st:predict",
        json!({"instances": rows}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: Vec<f32> = body["predictions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_f64().expect("n") as f32)
        .collect();
    assert_close(&got, &expected);
    let (status, body) =
        post_json(&svc, "/v1/models/seed:explain", json!({"instances": rows})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = post_json(
        &svc,
        "/v1/models/seed:predict",
        json!({"instances": [[1, 2, 3]]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("[-1, 1000]"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_requests_get_400_with_what_to_fix() {
    let svc = service().await;
    let cases: Vec<(&str, Body, &str)> = vec![
        ("malformed JSON", Body::from("{\"inputs\": ["), "not a valid inference request"),
        ("wrong width", Body::from(json!({"inputs": [{"name": "input", "shape": [1, 999], "datatype": "FP32", "data": vec![0.0; 999]}]}).to_string()), "[-1, 1000]"),
        ("wrong rank", Body::from(json!({"inputs": [{"name": "input", "shape": [1000], "datatype": "FP32", "data": vec![0.0; 1000]}]}).to_string()), "[-1, 1000]"),
        ("shape/data mismatch", Body::from(json!({"inputs": [{"name": "input", "shape": [2, 1000], "datatype": "FP32", "data": vec![0.0; 1000]}]}).to_string()), "2000"),
        ("BYTES", Body::from(json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "BYTES", "data": vec!["x"; 1000]}]}).to_string()), "cannot convert BYTES data to FP32"),
        ("BOOL", Body::from(json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BOOL", "data": [true]}]}).to_string()), "not supported"),
        ("strings as numbers", Body::from(json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}]}).to_string()), "not a FP32"),
        ("two inputs", Body::from(json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "b", "shape": [1], "datatype": "FP32", "data": [1]}]}).to_string()), "takes 1 input"),
    ];
    for (what, body, expected) in cases {
        let request = Request::post("/v2/models/seed/infer")
            .body(body)
            .expect("request");
        let (status, _, raw) = call(&svc, request).await;
        let doc: Value = serde_json::from_slice(&raw).expect("JSON error");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {doc}");
        let message = doc["error"].as_str().expect("error field");
        assert!(message.contains(expected), "{what}: {message}");
    }
    // NaN can't be written in JSON, but binary data can carry it.
    let header = json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 4000}}]}).to_string();
    let mut body = header.clone().into_bytes();
    for i in 0..1000 {
        body.extend_from_slice(&(if i == 5 { f32::NAN } else { 0.0 }).to_le_bytes());
    }
    let request = Request::post("/v2/models/seed/infer")
        .header("Inference-Header-Content-Length", header.len())
        .body(Body::from(body))
        .expect("request");
    let (status, _, raw) = call(&svc, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&raw).contains("column 5"));
}

#[tokio::test]
async fn unknown_models_versions_aliases_and_routes_are_404_and_bad_names_400() {
    let svc = service().await;
    let (rows, _) = reference();
    for (uri, status, expected) in [
        (
            "/v2/models/nope/infer",
            StatusCode::NOT_FOUND,
            "\"nope\" not found",
        ),
        (
            "/v2/models/seed/versions/9/infer",
            StatusCode::NOT_FOUND,
            "no version 9",
        ),
        (
            "/v2/models/seed/infer?alias=canary",
            StatusCode::NOT_FOUND,
            "no alias \"canary\"",
        ),
        (
            "/v2/models/Seed/infer",
            StatusCode::BAD_REQUEST,
            "invalid model name",
        ),
        (
            "/v2/models/..%2Fetc/infer",
            StatusCode::BAD_REQUEST,
            "invalid model name",
        ),
        ("/v3/anything", StatusCode::NOT_FOUND, "no such route"),
    ] {
        let (got, body) = post_json(&svc, uri, infer_body(&rows[..1], false)).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert!(
            body["error"].as_str().expect("message").contains(expected),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_before_parsing() {
    let svc = service_with(CacheConfig::default(), 10_000).await;
    let big = vec![b' '; 10_001];
    let request = Request::post("/v2/models/seed/infer")
        .body(Body::from(big))
        .expect("request");
    let (status, _, raw) = call(&svc, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&raw).contains("smaller requests"));
    // Also when Content-Length announces it, without reading the body.
    let request = Request::post("/v2/models/seed/infer")
        .header("Content-Length", "99999999")
        .body(Body::from("{}"))
        .expect("request");
    assert_eq!(call(&svc, request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_broken_model_is_503_and_the_others_keep_serving() {
    let svc = service().await;
    push_file(&svc.registry, "fragile", "model.onnx").await;
    svc.store
        .put(
            "models/fragile/versions/1/model.onnx",
            Bytes::from_static(b"bit rot"),
            PutCondition::None,
        )
        .await
        .expect("corrupt it");
    let (rows, expected) = reference();
    let (status, body) =
        post_json(&svc, "/v2/models/fragile/infer", infer_body(&rows, false)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"].as_str().expect("message");
    assert!(
        message.contains("can't be loaded") && !message.contains("sha256"),
        "no internals leak: {message}"
    );
    let (status, ready) = get(&svc, "/v2/models/fragile/ready").await;
    assert_eq!(
        (status, ready["ready"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(false))
    );
    let (status, body) = post_json(&svc, "/v2/models/seed/infer", infer_body(&rows, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_close(&output_values(&body), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_load_and_the_cache_evicts_by_bytes() {
    // Room for one seed model (2.2 MB) but not two.
    let cache = CacheConfig {
        max_bytes: 3_000_000,
        ..CacheConfig::default()
    };
    let svc = service_with(cache, maas_inference::LAMBDA_PAYLOAD_LIMIT).await;
    let (rows, _) = reference();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let router = svc.router.clone();
        let body = infer_body(&rows[..1], false).to_string();
        tasks.push(tokio::spawn(async move {
            router
                .oneshot(
                    Request::post("/v2/models/seed/infer")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("infallible")
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
    assert_eq!(
        svc.state.cache.loads_started(),
        1,
        "16 concurrent requests, one load"
    );
    assert_eq!(
        post_json(&svc, "/v2/models/seed/infer", infer_body(&rows[..1], false))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(svc.state.cache.loads_started(), 1, "warm: no reload");

    assert_eq!(
        post_json(
            &svc,
            "/v2/models/seed-st/infer",
            infer_body(&rows[..1], false)
        )
        .await
        .0,
        StatusCode::OK
    );
    let loaded: Vec<String> = svc
        .state
        .cache
        .loaded()
        .await
        .into_iter()
        .map(|(m, _, _)| m.to_string())
        .collect();
    assert_eq!(
        loaded,
        ["seed-st"],
        "the least recently used model was evicted"
    );
}

#[tokio::test]
async fn non_finite_inputs_pass_when_the_manifest_allows_them() {
    let svc = service().await;
    push(
        &svc.registry,
        PushRequest {
            model: ModelName::new("lenient").expect("name"),
            file_name: "model.onnx".into(),
            bytes: Bytes::from(fixture("model.onnx")),
            template: ManifestTemplate {
                allow_non_finite: Some(true),
                ..ManifestTemplate::default()
            },
            actor: "test".into(),
            alias: None,
            reason: None,
        },
    )
    .await
    .expect("push");
    let header = json!({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 4000}}]}).to_string();
    let mut body = header.clone().into_bytes();
    for i in 0..1000 {
        body.extend_from_slice(&(if i == 5 { f32::INFINITY } else { 0.0 }).to_le_bytes());
    }
    let request = |uri: &str| {
        Request::post(uri)
            .header("Inference-Header-Content-Length", header.len())
            .body(Body::from(body.clone()))
            .expect("request")
    };
    assert_eq!(
        call(&svc, request("/v2/models/lenient/infer")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&svc, request("/v2/models/seed/infer")).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// Regression: every failed load of `/versions/{n}` with a fresh `n` stayed in the negative
/// cache forever (+7 MB for 20,000 unknown versions). Every map on the request path is bounded
/// by count and by time.
#[tokio::test]
async fn unknown_versions_and_aliases_from_urls_never_grow_the_caches_past_their_bounds() {
    let cache = CacheConfig {
        max_remembered: 32,
        failure_ttl: Duration::from_millis(300),
        alias_ttl: Duration::from_millis(300),
        ..CacheConfig::default()
    };
    let svc = service_with(cache, maas_inference::LAMBDA_PAYLOAD_LIMIT).await;
    let (rows, _) = reference();
    for n in 0..400u64 {
        let (status, _) = post_json(
            &svc,
            &format!("/v2/models/seed/versions/{}/infer", 1000 + n),
            infer_body(&rows[..1], false),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&svc, &format!("/v2/models/seed/versions/alias{n}")).await;
        assert!(status.is_client_error(), "{status}");
    }
    let (loaded, resolved, failed) = svc.state.cache.entry_counts().await;
    assert_eq!(loaded, 0);
    assert!(failed <= 32, "{failed} failed loads remembered");
    assert!(resolved <= 32, "{resolved} resolutions remembered");
    // And they expire.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, resolved, failed) = svc.state.cache.entry_counts().await;
    assert_eq!((resolved, failed), (0, 0));
}

/// V1 finds the model before it reads the body: an unknown model is a 404 whatever the body
/// holds, and a known model with a body that isn't JSON is a 400.
#[tokio::test]
async fn v1_answers_an_unknown_model_with_404_whatever_the_body() {
    let svc = service().await;
    for (uri, body, status) in [
        (
            "/v1/models/nope:predict",
            "not json at all",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/models/nope:predict",
            "{\"instances\": [[1]]}",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/models/seed/versions/99:predict",
            "{",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/models/seed:predict",
            "not json at all",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let request = Request::post(uri).body(Body::from(body)).expect("request");
        let (got, _, answer) = call(&svc, request).await;
        assert_eq!(
            got,
            status,
            "{uri} {body:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}
