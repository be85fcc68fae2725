//! Classifiers answer like classifiers over HTTP: the Open Inference Protocol returns every
//! output the graph declares (string labels as `BYTES`) and honours requested outputs; V1
//! `:predict` returns `predictions` plus `labels`, `probabilities` and `classes`, with labels in
//! their own type, and takes objects keyed by input name for a model of several inputs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use maas_inference::{AppState, InferenceConfig, MetricsSink, app};
use maas_registry::Registry;
use maas_store::MemoryStore;
use serde_json::{Value, json};
use tower::ServiceExt;

use maas_tests::fixtures::{TabularReference, push_tabular, strings, tabular_reference};

async fn router() -> axum::Router {
    let registry = Registry::new(Arc::new(MemoryStore::new()));
    push_tabular(&registry, "churn", "sklearn-several-inputs", "model.onnx").await;
    push_tabular(
        &registry,
        "medals",
        "sklearn-scaler-logistic-multiclass",
        "model.onnx",
    )
    .await;
    push_tabular(&registry, "xgb", "xgboost-binary", "model.json").await;
    let mut config = InferenceConfig::from_lookup(|_| None).expect("config");
    config.metrics = MetricsSink::Off;
    app(Arc::new(AppState::new(&config, registry)))
}

async fn post(router: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(
            Request::post(uri)
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

fn assert_probabilities(got: &Value, reference: &TabularReference) {
    let want = reference.probabilities.as_ref().expect("probabilities");
    let got: Vec<f64> = got
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|p| p.as_f64().expect("p"))
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5, "{g} vs the library's {w}");
    }
}

#[tokio::test]
async fn v1_answers_a_classifier_of_several_inputs_with_string_labels() {
    let router = router().await;
    let reference = tabular_reference("sklearn-several-inputs");
    let instances: Vec<Value> = reference
        .inputs
        .chunks(4)
        .map(|x| json!({"tenure": x[0], "spend": x[1], "calls": x[2], "plan": x[3] as i64}))
        .collect();
    let (status, body) = post(
        &router,
        "/v1/models/churn:predict",
        json!({"instances": instances}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let labels = strings(&reference.raw["library"]["labels"]);
    assert_eq!(strings(&body["labels"]), labels);
    assert_eq!(
        strings(&body["predictions"]),
        labels,
        "the first output: the label"
    );
    assert_eq!(body["classes"], json!(["churn", "stay"]));
    assert_probabilities(&body["probabilities"], &reference);

    // A missing input and a plan that is not an integer are the client's errors, by name.
    let (status, body) = post(
        &router,
        "/v1/models/churn:predict",
        json!({"instances": [{"tenure": 1, "spend": 2, "plan": 1}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("calls"), "{body}");
    let (status, body) = post(
        &router,
        "/v1/models/churn:predict",
        json!({"instances": [{"tenure": 1, "spend": 2, "calls": 0, "plan": "gold"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("not an integer"), "{body}");
}

#[tokio::test]
async fn oip_returns_string_labels_as_bytes_and_honours_requested_outputs() {
    let router = router().await;
    let reference = tabular_reference("sklearn-scaler-logistic-multiclass");
    let rows = reference.rows();
    let request = json!({"inputs": [{"name": "X", "shape": [rows, 6], "datatype": "FP32", "data": reference.inputs}]});
    let (status, body) = post(&router, "/v2/models/medals/infer", request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outputs = body["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2, "every output the graph declares: {body}");
    let label = outputs
        .iter()
        .find(|o| o["datatype"] == "BYTES")
        .expect("a BYTES label output");
    assert_eq!(
        strings(&label["data"]),
        strings(&reference.raw["library"]["labels"])
    );

    let mut only = request;
    only["outputs"] = json!([{"name": "output_probability"}]);
    let (status, body) = post(&router, "/v2/models/medals/infer", only).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputs"].as_array().expect("outputs").len(), 1);
    assert_eq!(body["outputs"][0]["name"], "output_probability");
    assert_eq!(body["outputs"][0]["shape"], json!([rows, 3]));
}

#[tokio::test]
async fn v1_keeps_integer_labels_of_a_booster_as_integers() {
    let router = router().await;
    let reference = tabular_reference("xgboost-binary");
    let width = reference.features.len();
    // Rows as lists; a missing value is null.
    let instances: Vec<Value> = reference
        .inputs
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|&v| if v.is_nan() { Value::Null } else { json!(v) })
                .collect()
        })
        .collect();
    let (status, body) = post(
        &router,
        "/v1/models/xgb:predict",
        json!({"instances": instances}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let want: Vec<Value> = reference.labels.iter().map(|&l| json!(l as i64)).collect();
    assert_eq!(body["labels"], Value::Array(want));
    assert_eq!(body["classes"], json!([0, 1]));
    assert_probabilities(&body["probabilities"], &reference);
}
