//! The scoring function's event handling fed real S3 notification documents: one record and many,
//! URL-encoded keys, keys outside the trigger prefix, re-delivery and failures.

use std::sync::Arc;

use aws_lambda_events::event::s3::S3Event;
use bytes::Bytes;
use maas_batch::BatchScorer;
use maas_core::ManifestTemplate;
use maas_registry::Registry;
use maas_score_function::{ScoreFunctionError, handle_event, handle_payload};
use maas_store::{LocalFsStore, PutCondition, SharedStore};
use maas_tests::fixtures::push_seed;
use serde_json::{Value, json};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("fixture")
}

/// A real S3 event with one record per (already URL-encoded) key.
fn event(encoded_keys: &[&str]) -> S3Event {
    let template: Value =
        serde_json::from_slice(&fixture("tests/events/s3-object-created.json")).expect("json");
    let record = template["Records"][0].clone();
    let records: Vec<Value> = encoded_keys
        .iter()
        .map(|key| {
            let mut r = record.clone();
            r["s3"]["object"]["key"] = json!(key);
            r
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("the runtime's S3Event accepts it")
}

async fn store_with_model() -> (tempfile::TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    push_seed(
        &Registry::new(store.clone()),
        "seed",
        "model.onnx",
        ManifestTemplate::default(),
    )
    .await;
    (dir, store)
}

fn csv_rows(n: usize) -> Bytes {
    let mut csv = (0..1000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for r in 0..n {
        csv.push('\n');
        csv.push_str(
            &(0..1000)
                .map(|i| format!("{}", ((r * 7 + i) % 13) as f32 / 13.0))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    Bytes::from(csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_scored_with_decoded_keys_and_redelivery_is_a_no_op() {
    let (_dir, store) = store_with_model().await;
    for key in [
        "batch/input/seed/Happy Face.csv",
        "batch/input/seed/café+1.csv",
        "batch/input/seed/plain.csv",
    ] {
        store
            .put(key, csv_rows(3), PutCondition::None)
            .await
            .expect("upload");
    }
    let scorer = BatchScorer::new(store.clone());
    let keys = [
        "batch/input/seed/Happy+Face.csv",
        "batch/input/seed/caf%C3%A9%2B1.csv",
        "batch/input/seed/plain.csv",
        "elsewhere/file.csv",
    ];
    let summary = handle_event(&scorer, "", event(&keys))
        .await
        .expect("all scored");
    assert_eq!(
        summary.scored,
        [
            "batch/input/seed/Happy Face.csv",
            "batch/input/seed/café+1.csv",
            "batch/input/seed/plain.csv"
        ]
    );
    assert_eq!(summary.skipped, ["elsewhere/file.csv"]);
    for out in [
        "batch/output/seed/Happy Face.csv",
        "batch/output/seed/café+1.csv.report.json",
    ] {
        store.head(out).await.expect(out);
    }
    // The same event again (S3 delivers at least once): nothing is rescored or rewritten.
    let before = store.list("batch/output/").await.expect("list");
    let again = handle_event(&scorer, "", event(&keys))
        .await
        .expect("redelivery");
    assert!(again.scored.is_empty());
    assert_eq!(again.already_scored.len(), 3);
    assert_eq!(store.list("batch/output/").await.expect("list"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_prefix_is_stripped_from_event_keys() {
    let (_dir, store) = store_with_model().await;
    store
        .put("batch/input/seed/a.csv", csv_rows(2), PutCondition::None)
        .await
        .expect("upload");
    let scorer = BatchScorer::new(store.clone());
    let summary = handle_event(
        &scorer,
        "team/maas",
        event(&[
            "team/maas/batch/input/seed/a.csv",
            "other/batch/input/seed/a.csv",
        ]),
    )
    .await
    .expect("scored");
    assert_eq!(summary.scored, ["batch/input/seed/a.csv"]);
    assert_eq!(summary.skipped, ["other/batch/input/seed/a.csv"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_fail_the_invocation_after_trying_every_record() {
    let (_dir, store) = store_with_model().await;
    store
        .put("batch/input/seed/good.csv", csv_rows(2), PutCondition::None)
        .await
        .expect("upload");
    store
        .put("batch/input/ghost/x.csv", csv_rows(2), PutCondition::None)
        .await
        .expect("upload");
    let scorer = BatchScorer::new(store.clone());
    let err = handle_event(
        &scorer,
        "",
        event(&[
            "batch/input/ghost/x.csv",
            "batch/input/missing/file.csv",
            "batch/input/seed/good.csv",
        ]),
    )
    .await
    .expect_err("must fail so Lambda retries");
    let ScoreFunctionError::RecordsFailed {
        failed,
        total,
        details,
    } = err
    else {
        panic!("records failed");
    };
    assert_eq!((failed, total), (2, 3));
    assert!(details.contains("\"ghost\" not found"), "{details}");
    store
        .head("batch/output/seed/good.csv")
        .await
        .expect("the good record was still scored");
}

/// The bulk state machine's payload: one listed key (raw, not URL-encoded), under batch/bulk/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_items_name_one_raw_key_and_are_scored_like_uploads() {
    let (_dir, store) = store_with_model().await;
    let key = "batch/bulk/seed@latest/run 1/a+b.csv";
    store
        .put(key, csv_rows(3), PutCondition::None)
        .await
        .expect("upload");
    let scorer = BatchScorer::new(store.clone());
    let summary = handle_payload(&scorer, "", serde_json::json!({ "key": key }))
        .await
        .expect("scored");
    assert_eq!(summary.scored, vec![key.to_string()]);
    let report = store
        .get("batch/output/_bulk/seed@latest/run 1/a+b.csv.report.json")
        .await
        .expect("report");
    let report: serde_json::Value = serde_json::from_slice(&report.body).expect("json");
    assert_eq!(report["rows_scored"], 3, "{report}");
    // The same item again (a Map retry) is a no-op.
    let again = handle_payload(&scorer, "", serde_json::json!({ "key": key }))
        .await
        .expect("no-op");
    assert_eq!(again.already_scored, vec![key.to_string()]);
    // A missing model fails the item (the Map counts it against its tolerance).
    store
        .put("batch/bulk/ghost/x.csv", csv_rows(1), PutCondition::None)
        .await
        .expect("upload");
    let err = handle_payload(
        &scorer,
        "",
        serde_json::json!({ "key": "batch/bulk/ghost/x.csv" }),
    )
    .await
    .expect_err("unknown model");
    assert!(err.to_string().contains("ghost"), "{err}");
    let err = handle_payload(&scorer, "", serde_json::json!({ "nothing": 1 }))
        .await
        .expect_err("neither form");
    assert!(err.to_string().contains("batch/bulk/"), "{err}");
}
