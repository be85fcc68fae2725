//! The real `infer` Lambda binary under the Lambda runtime emulator of `cargo lambda`, reading
//! models from s3s-fs on 127.0.0.1 and called through the emulated function URL. Checks PyTorch's
//! reference outputs and that cold-start timings and per-request latency reach the logs.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_models::{PushRequest, push};
use maas_registry::Registry;
use maas_tests::fixtures::{assert_matches_reference, seed_file, seed_reference};
use maas_tests::http::Client;
use maas_tests::{LambdaEmulator, S3Endpoint};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_binary_under_the_lambda_emulator_against_s3s_fs() {
    // GIVEN the seed model pushed to a bucket on a local S3 endpoint
    let s3 = S3Endpoint::start("lambda-models").await;
    let registry = Registry::new(s3.store("prod"));
    push(
        &registry,
        PushRequest {
            model: ModelName::new("seed").expect("name"),
            file_name: "model.onnx".into(),
            bytes: Bytes::from(seed_file("model.onnx")),
            template: ManifestTemplate::default(),
            actor: "test".into(),
            alias: None,
            reason: None,
        },
    )
    .await
    .expect("push");

    // AND the infer binary attached to the Lambda emulator, configured like the template does
    let mut emulator = LambdaEmulator::start().await;
    let mut env: Vec<(String, String)> = vec![
        ("MAAS_STORE".into(), "s3://lambda-models/prod".into()),
        ("MAAS_PRELOAD".into(), "seed".into()),
        ("MAAS_EMF".into(), "1".into()),
    ];
    env.extend(s3.env().into_iter().map(|(k, v)| (k.to_string(), v)));
    emulator.start_function(Path::new(env!("CARGO_BIN_EXE_infer")), &env);
    let client = Client {
        addr: emulator.addr(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, _) = client
            .request("GET", "/lambda-url/_/v2/health/ready", Vec::new(), &[])
            .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the function never became ready:\n{}",
            emulator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // WHEN the reference rows are posted through the function URL, as JSON and as binary
    let reference = seed_reference();
    let body = json!({"id": "watch-1", "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "data": reference.inputs}]});
    let (status, _, raw) = client
        .post(
            "/lambda-url/_/v2/models/seed/infer",
            body.to_string().into_bytes(),
            &[("Content-Type", "application/json".into())],
        )
        .await;
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&raw),
        emulator.log_text()
    );
    let doc: Value = serde_json::from_slice(&raw).expect("JSON response");
    assert_eq!(doc["id"], "watch-1");
    assert_eq!(doc["model_version"], "1");
    let got: Vec<f32> = doc["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("n") as f32)
        .collect();
    // THEN PyTorch's outputs come back
    assert_matches_reference(&got, 1e-4);

    let header = json!({
        "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 32000}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut binary = header.clone().into_bytes();
    for v in reference.inputs.iter().flatten() {
        binary.extend_from_slice(&v.to_le_bytes());
    }
    let (status, headers, raw) = client
        .post(
            "/lambda-url/_/v2/models/seed/infer",
            binary,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Inference-Header-Content-Length", header.len().to_string()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{}", emulator.log_text());
    let n: usize = headers
        .iter()
        .find(|(k, _)| k == "inference-header-content-length")
        .map(|(_, v)| v.parse().expect("number"))
        .expect("binary response header");
    let values: Vec<f32> = raw[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_matches_reference(&values, 1e-4);

    let (status, _, raw) = client
        .post("/lambda-url/_/v2/models/missing/infer", b"{}".to_vec(), &[])
        .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&raw));

    // AND the logs carry the cold start (init, fetch, build) and per-request latency, as JSON
    // lines and as CloudWatch EMF metrics.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = emulator.log_text();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has("init complete") && has("\"init_ms\""),
        "init timing missing:\n{text}"
    );
    assert!(
        has("\"fetch_ms\"") && has("\"build_ms\""),
        "load timings missing:\n{text}"
    );
    assert!(
        has("\"latency_ms\"") && has("/v2/models/seed/infer"),
        "request log missing:\n{text}"
    );
    assert!(has("\"CloudWatchMetrics\""), "EMF lines missing:\n{text}");
}
