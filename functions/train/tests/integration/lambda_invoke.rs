//! The real `train` binary under the Lambda runtime emulator, invoked with `cargo lambda invoke
//! --data-file`, training from a dataset in s3s-fs on 127.0.0.1: a spec by direct invocation,
//! then an S3 event for a request under `jobs/requests/`, then a spec that must fail.

use std::path::Path;

use bytes::Bytes;
use maas_core::ModelName;
use maas_registry::{Registry, VersionSelector};
use maas_store::{ObjectStore, PutCondition};
use maas_tests::{LambdaEmulator, S3Endpoint};
use maas_train::synthetic::{self, Target};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_binary_under_cargo_lambda_invoke_against_s3s_fs() {
    // GIVEN a dataset in a bucket on a local S3 endpoint, under a store prefix
    let s3 = S3Endpoint::start("lambda-train").await;
    let store = s3.store("prod");
    store
        .put(
            "datasets/houses.csv",
            Bytes::from(synthetic::csv(Target::Regression, 600, 12, 5)),
            PutCondition::None,
        )
        .await
        .expect("upload");
    // AND the train binary attached to the emulator, configured as the template does
    let mut emulator = LambdaEmulator::start().await;
    let mut env: Vec<(String, String)> =
        vec![("MAAS_STORE".into(), "s3://lambda-train/prod".into())];
    env.extend(s3.env().into_iter().map(|(k, v)| (k.to_string(), v)));
    emulator.start_function(Path::new(env!("CARGO_BIN_EXE_train")), &env);
    let files = tempfile::tempdir().expect("dir");
    let spec = json!({
        "job_id": "houses-1",
        "model": "houses",
        "dataset": {"key": "datasets/houses.csv", "target": "y"},
        "architecture": {"hidden": [32, 16]},
        "training": {"epochs": 3, "batch_size": 32, "learning_rate": 0.005},
        "promotion": {"alias": "production"}
    });

    // WHEN the spec is invoked directly
    let spec_file = files.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write");
    let direct = emulator.invoke_file(&spec_file);
    assert!(direct.ok, "{direct:?}\n{}", emulator.log_text());
    let response: Value = serde_json::from_str(&direct.stdout).expect("response JSON");

    // THEN version 1 is written with its lineage and promoted (there was no production yet)
    assert_eq!(response["state"], "succeeded", "{response}");
    assert_eq!(response["version"], 1, "{response}");
    assert_eq!(response["promotion"]["promoted"], true, "{response}");
    let registry = Registry::new(store.clone());
    let model = ModelName::new("houses").expect("name");
    let version = registry
        .resolve(&model, &VersionSelector::Alias("production".into()))
        .await
        .expect("production resolves");
    assert_eq!(version.get(), 1);
    let manifest = registry.manifest(&model, version).await.expect("manifest");
    let lineage = serde_json::to_value(&manifest.lineage).expect("lineage");
    assert_eq!(lineage["source"], "trained", "{lineage}");
    assert_eq!(lineage["dataset_key"], "datasets/houses.csv", "{lineage}");
    assert_eq!(lineage["job_id"], "houses-1", "{lineage}");
    assert!(
        manifest.metrics["val_mse"].as_f64().expect("val_mse")
            < manifest.metrics["val_mse_baseline"]
                .as_f64()
                .expect("baseline")
    );

    // WHEN a request lands under jobs/requests/ and S3's event for it is delivered
    let mut request = spec.clone();
    request.as_object_mut().expect("object").remove("job_id");
    store
        .put(
            "jobs/requests/weekly.json",
            Bytes::from(request.to_string()),
            PutCondition::None,
        )
        .await
        .expect("request");
    let raw = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/s3-object-created.json"),
    )
    .expect("event fixture");
    let mut event: Value = serde_json::from_slice(&raw).expect("json");
    event["Records"][0]["s3"]["bucket"]["name"] = json!("lambda-train");
    event["Records"][0]["s3"]["object"]["key"] = json!("prod/jobs/requests/weekly.json");
    let event_file = files.path().join("event.json");
    std::fs::write(&event_file, event.to_string()).expect("write");
    let from_event = emulator.invoke_file(&event_file);
    assert!(from_event.ok, "{from_event:?}\n{}", emulator.log_text());
    let response: Value = serde_json::from_str(&from_event.stdout).expect("response JSON");

    // THEN the job named after the file ran and wrote version 2
    assert_eq!(response["jobs"][0]["job_id"], "weekly", "{response}");
    assert_eq!(response["jobs"][0]["version"], 2, "{response}");
    let status: Value = serde_json::from_slice(
        &store
            .get("jobs/weekly/status.json")
            .await
            .expect("status")
            .body,
    )
    .expect("status JSON");
    assert_eq!(status["state"], "succeeded", "{status}");

    // WHEN a spec names a column the dataset lacks, the invocation fails, says why, and no
    // version is written
    let bad = json!({
        "job_id": "houses-bad",
        "model": "houses",
        "dataset": {"key": "datasets/houses.csv", "target": "price"},
    });
    let bad_file = files.path().join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).expect("write");
    let failed = emulator.invoke_file(&bad_file);
    assert!(!failed.ok, "{failed:?}");
    let said = format!("{}{}", failed.stdout, failed.stderr);
    assert!(said.contains("price"), "{said}");
    assert_eq!(
        registry
            .complete_versions(&model)
            .await
            .expect("versions")
            .len(),
        2
    );
}
