//! The real `score` binary under the Lambda runtime emulator, invoked with `cargo lambda invoke
//! --data-file` on a real S3 event document, scoring a file in s3s-fs on 127.0.0.1: outputs match
//! PyTorch's reference, malformed rows land in the errors file, redelivery changes nothing and a
//! missing model fails the invocation.

use std::path::Path;

use bytes::Bytes;
use maas_core::ManifestTemplate;
use maas_registry::Registry;
use maas_store::{ObjectStore, PutCondition};
use maas_tests::fixtures::{push_seed, seed_rows_and_outputs};
use maas_tests::{LambdaEmulator, S3Endpoint};
use serde_json::{Value, json};

/// The S3 notification fixture with one record for `key` in `bucket` (URL-encoded as S3 does).
fn event_file(dir: &Path, name: &str, bucket: &str, encoded_key: &str) -> std::path::PathBuf {
    let raw = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/s3-object-created.json"),
    )
    .expect("event fixture");
    let mut doc: Value = serde_json::from_slice(&raw).expect("json");
    doc["Records"][0]["s3"]["bucket"]["name"] = json!(bucket);
    doc["Records"][0]["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
    doc["Records"][0]["s3"]["object"]["key"] = json!(encoded_key);
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).expect("write event");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_binary_under_cargo_lambda_invoke_against_s3s_fs() {
    // GIVEN the seed model in a bucket on a local S3 endpoint, under a store prefix
    let s3 = S3Endpoint::start("lambda-batch").await;
    let store = s3.store("prod");
    push_seed(
        &Registry::new(store.clone()),
        "seed",
        "model.onnx",
        ManifestTemplate::default(),
    )
    .await;
    // AND a CSV of the reference rows with two malformed rows planted at lines 3 and 7
    let (rows, expected) = seed_rows_and_outputs();
    let header: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    let mut csv = header.join(",");
    let mut good_lines = Vec::new();
    let mut line = 1;
    for (i, row) in rows.iter().enumerate() {
        if i == 1 || i == 4 {
            line += 1;
            csv.push_str(if i == 1 { "\n1,2,three" } else { "\nNaN" });
            csv.push_str(&",0".repeat(if i == 1 { 0 } else { 999 }));
        }
        line += 1;
        good_lines.push(line);
        csv.push('\n');
        csv.push_str(
            &row.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let key = "batch/input/seed:1/daily run/é.csv";
    store
        .put(key, Bytes::from(csv), PutCondition::None)
        .await
        .expect("upload");

    // AND the score binary attached to the emulator, configured as the template does
    let mut emulator = LambdaEmulator::start().await;
    let mut env: Vec<(String, String)> =
        vec![("MAAS_STORE".into(), "s3://lambda-batch/prod".into())];
    env.extend(s3.env().into_iter().map(|(k, v)| (k.to_string(), v)));
    emulator.start_function(Path::new(env!("CARGO_BIN_EXE_score")), &env);

    // WHEN S3's event for the upload is delivered (key URL-encoded, `+` for space)
    let events = tempfile::tempdir().expect("dir");
    let event = event_file(
        events.path(),
        "created.json",
        "lambda-batch",
        "prod/batch/input/seed%3A1/daily+run/%C3%A9.csv",
    );
    let first = emulator.invoke_file(&event);
    assert!(first.ok, "{first:?}\n{}", emulator.log_text());
    let response: Value = serde_json::from_str(&first.stdout).expect("response JSON");
    assert_eq!(response["scored"], json!([key]), "{response}");

    // THEN the output holds every good row with PyTorch's prediction
    let output = store
        .get("batch/output/seed:1/daily run/é.csv")
        .await
        .expect("output");
    let text = String::from_utf8(output.body.to_vec()).expect("utf-8");
    let mut lines = text.lines();
    assert!(lines.next().expect("header").ends_with(",f999,prediction"));
    let predictions: Vec<f32> = lines
        .map(|l| {
            l.rsplit(',')
                .next()
                .expect("column")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(predictions.len(), expected.len());
    for (got, want) in predictions.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "{got} vs PyTorch {want}");
    }
    // AND the errors file lists exactly the planted rows, by line
    let errors = store
        .get("batch/output/seed:1/daily run/é.csv.errors.jsonl")
        .await
        .expect("errors");
    let errors: Vec<Value> = String::from_utf8_lossy(&errors.body)
        .lines()
        .map(|l| serde_json::from_str(l).expect("error line"))
        .collect();
    let error_lines: Vec<u64> = errors
        .iter()
        .map(|e| e["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(error_lines, [3, 7], "{errors:?}");
    // AND the report says what happened
    let report: Value = serde_json::from_slice(
        &store
            .get("batch/output/seed:1/daily run/é.csv.report.json")
            .await
            .expect("report")
            .body,
    )
    .expect("report JSON");
    assert_eq!(report["rows_read"], 10, "{report}");
    assert_eq!(report["rows_scored"], 8, "{report}");
    assert_eq!(report["rows_rejected"], 2, "{report}");
    assert_eq!(report["model_version"], 1, "{report}");

    // WHEN the same event is delivered again, nothing changes
    let before = store.list("batch/output/").await.expect("list");
    let again = emulator.invoke_file(&event);
    assert!(again.ok, "{again:?}");
    let response: Value = serde_json::from_str(&again.stdout).expect("response JSON");
    assert_eq!(response["already_scored"], json!([key]), "{response}");
    assert_eq!(store.list("batch/output/").await.expect("list"), before);

    // WHEN a file arrives for a model that doesn't exist, the invocation fails (Lambda retries,
    // then the failure destination gets it) and says why
    store
        .put(
            "batch/input/ghost/x.csv",
            Bytes::from_static(b"a\n1\n"),
            PutCondition::None,
        )
        .await
        .expect("upload");
    let ghost = event_file(
        events.path(),
        "ghost.json",
        "lambda-batch",
        "prod/batch/input/ghost/x.csv",
    );
    let failed = emulator.invoke_file(&ghost);
    assert!(!failed.ok, "{failed:?}");
    let said = format!("{}{}", failed.stdout, failed.stderr);
    assert!(said.contains("ghost"), "{said}");
    assert!(store.head("batch/output/ghost/x.csv").await.is_err());
}
