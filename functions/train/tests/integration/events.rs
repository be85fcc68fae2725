//! The training function's event handling against a real store: a spec by direct invocation,
//! S3 events on `jobs/requests/` (multi-record, URL-encoded keys, keys outside the prefix,
//! redelivery), `{"resume": id}` after a deadline, and events it must refuse.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use maas_core::ModelName;
use maas_registry::Registry;
use maas_store::{LocalFsStore, PutCondition, SharedStore};
use maas_train::synthetic::{self, Target};
use maas_train_function::handle;
use serde_json::{Value, json};

async fn store_with_dataset() -> (tempfile::TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    store
        .put(
            "datasets/small.csv",
            Bytes::from(synthetic::csv(Target::Regression, 400, 8, 3)),
            PutCondition::None,
        )
        .await
        .expect("upload");
    (dir, store)
}

fn small_spec(model: &str, epochs: usize) -> Value {
    json!({
        "model": model,
        "dataset": {"key": "datasets/small.csv", "target": "y"},
        "architecture": {"hidden": [16]},
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.01}
    })
}

/// An S3 notification with one record per key (keys given URL-encoded, as S3 sends them).
fn s3_event(encoded_keys: &[&str]) -> Value {
    let raw = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/s3-object-created.json"),
    )
    .expect("event fixture");
    let mut doc: Value = serde_json::from_slice(&raw).expect("json");
    let template = doc["Records"][0].clone();
    doc["Records"] = encoded_keys
        .iter()
        .map(|key| {
            let mut record = template.clone();
            record["s3"]["object"]["key"] = json!(key);
            record
        })
        .collect();
    doc
}

async fn versions(store: &SharedStore, model: &str) -> usize {
    Registry::new(store.clone())
        .complete_versions(&ModelName::new(model).expect("name"))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_invoked_directly_trains_a_version() {
    let (_dir, store) = store_with_dataset().await;
    let mut spec = small_spec("direct", 2);
    spec["job_id"] = json!("direct-1");
    let out = handle(store.clone(), "", spec, None, "test")
        .await
        .expect("job runs");
    assert_eq!(out["state"], "succeeded", "{out}");
    assert_eq!(out["version"], 1, "{out}");
    assert!(out["metrics"]["val_mse"].as_f64().is_some(), "{out}");
    let status: Value = serde_json::from_slice(
        &store
            .get("jobs/direct-1/status.json")
            .await
            .expect("status")
            .body,
    )
    .expect("status JSON");
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_events_run_every_request_once_and_skip_other_keys() {
    let (_dir, store) = store_with_dataset().await;
    for (key, model) in [
        ("jobs/requests/nightly.json", "alpha"),
        ("jobs/requests/tier é.json", "beta"),
    ] {
        store
            .put(
                key,
                Bytes::from(small_spec(model, 1).to_string()),
                PutCondition::None,
            )
            .await
            .expect("request");
    }
    // One event, three records: two requests (one key URL-encoded with `+` and %-escaped UTF-8,
    // whose stem is not a valid job id) and a key outside the trigger prefix.
    let event = s3_event(&[
        "jobs/requests/nightly.json",
        "datasets/small.csv",
        "jobs/requests/tier+%C3%A9.json",
    ]);
    let err = handle(store.clone(), "", event, None, "test")
        .await
        .expect_err("the request with a bad job id fails the invocation");
    let said = err.to_string();
    assert!(
        said.starts_with("1 of 3 training requests failed"),
        "{said}"
    );
    assert!(said.contains("jobs/requests/tier é.json"), "{said}");
    assert!(said.contains("job_id"), "{said}");
    // The good request still ran: its job id is the file's stem.
    assert_eq!(versions(&store, "alpha").await, 1);
    assert_eq!(versions(&store, "beta").await, 0);
    assert!(store.head("jobs/nightly/status.json").await.is_ok());

    // Redelivery of the good record finds the job done and writes no second version.
    let again = handle(
        store.clone(),
        "",
        s3_event(&["jobs/requests/nightly.json"]),
        None,
        "test",
    )
    .await
    .expect("redelivery");
    assert_eq!(again["jobs"][0]["state"], "succeeded", "{again}");
    assert_eq!(again["jobs"][0]["version"], 1, "{again}");
    assert_eq!(versions(&store, "alpha").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_paused_by_the_deadline_resumes_with_a_resume_event() {
    let (_dir, store) = store_with_dataset().await;
    let mut spec = small_spec("paused", 2);
    spec["job_id"] = json!("paused-1");
    // A deadline inside the safety margin: the job checkpoints nothing and pauses at once.
    let soon = Some(Instant::now() + Duration::from_secs(5));
    let out = handle(store.clone(), "", spec, soon, "test")
        .await
        .expect("pauses");
    assert_eq!(out["state"], "paused", "{out}");
    assert_eq!(out["resume_with"], json!({"resume": "paused-1"}), "{out}");
    assert_eq!(versions(&store, "paused").await, 0);

    let done = handle(
        store.clone(),
        "",
        json!({"resume": "paused-1"}),
        None,
        "test",
    )
    .await
    .expect("resumes");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(versions(&store, "paused").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_it_cannot_run_fail_with_a_reason() {
    let (_dir, store) = store_with_dataset().await;
    let cases = [
        (json!({"hello": "world"}), "expected a job spec"),
        (json!({"resume": "nobody"}), "no job \"nobody\" to resume"),
        (json!({"resume": "../etc"}), "job_id"),
        (
            json!({"model": "m", "dataset": {"key": "datasets/small.csv", "target": "y"}, "epochs": 3}),
            "unknown field",
        ),
        (
            json!({"model": "m", "dataset": {"key": "datasets/missing.csv", "target": "y"}}),
            "no dataset",
        ),
    ];
    for (event, expected) in cases {
        let err = handle(store.clone(), "", event.clone(), None, "test")
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains(expected),
            "{event}: {err} (expected {expected:?})"
        );
    }
    assert_eq!(versions(&store, "m").await, 0);
}

#[test]
fn lambda_deadlines_become_instants_and_impossible_ones_are_ignored() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let left = maas_train_function::deadline_instant(now_ms + 60_000)
        .expect("a future deadline")
        .saturating_duration_since(Instant::now());
    assert!(
        left > Duration::from_secs(55) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    assert_eq!(maas_train_function::deadline_instant(600_000), None);
}
