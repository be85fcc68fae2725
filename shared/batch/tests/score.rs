//! Batch scoring end to end on a real store: planted bad rows land in the errors file with their
//! lines, good rows keep their columns and gain PyTorch-exact predictions, re-delivery changes
//! nothing, and a failed file leaves no output.

use std::sync::Arc;

use bytes::Bytes;
use maas_batch::{BatchScorer, ScoreOutcome};
use maas_core::ManifestTemplate;
use maas_registry::Registry;
use maas_store::{LocalFsStore, PutCondition, SharedStore};
use serde_json::Value;

use maas_tests::fixtures::{push_seed, seed_rows_and_outputs as reference};

fn features() -> Vec<String> {
    (0..1000).map(|i| format!("f{i}")).collect()
}

async fn store_with_seed() -> (tempfile::TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    let template = ManifestTemplate {
        features: Some(features()),
        ..ManifestTemplate::default()
    };
    push_seed(
        &Registry::new(store.clone()),
        "seed",
        "model.onnx",
        template,
    )
    .await;
    (dir, store)
}

/// The 8 reference rows with an id column, and three planted bad rows. Returns the CSV and the
/// (1-based) lines of the bad rows.
fn csv_with_bad_rows() -> (String, Vec<u64>) {
    let (rows, _) = reference();
    let mut csv = format!("id,{}\n", features().join(","));
    let mut bad_lines = Vec::new();
    let mut line = 1;
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
        csv.push_str(&format!("row-{i},{}\n", cells.join(",")));
        line += 1;
        if i == 2 {
            let mut broken = cells.clone();
            broken[10] = "abc".into();
            csv.push_str(&format!("bad-text,{}\n", broken.join(",")));
            line += 1;
            bad_lines.push(line);
        }
        if i == 4 {
            csv.push_str("bad-short,1,2,3\n");
            line += 1;
            bad_lines.push(line);
            let mut nan = cells.clone();
            nan[0] = "NaN".into();
            csv.push_str(&format!("bad-nan,{}\n", nan.join(",")));
            line += 1;
            bad_lines.push(line);
        }
    }
    (csv, bad_lines)
}

async fn text(store: &SharedStore, key: &str) -> String {
    String::from_utf8(store.get(key).await.expect(key).body.to_vec()).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_are_scored_bad_rows_reported_and_redelivery_changes_nothing() {
    let (_dir, store) = store_with_seed().await;
    let (csv, bad_lines) = csv_with_bad_rows();
    let key = "batch/input/seed/daily/2026-11-29.csv";
    store
        .put(key, Bytes::from(csv), PutCondition::None)
        .await
        .expect("upload");

    // Small chunks so rows cross chunk boundaries.
    let scorer = BatchScorer::new(store.clone()).with_chunk_rows(3);
    let ScoreOutcome::Scored(report) = scorer.score(key).await.expect("score") else {
        panic!("first delivery scores");
    };
    assert_eq!(
        (report.rows_read, report.rows_scored, report.rows_rejected),
        (11, 8, 3)
    );
    assert_eq!(report.model_version, 1);
    assert_eq!(report.output_key, "batch/output/seed/daily/2026-11-29.csv");

    let (_, expected) = reference();
    let output = text(&store, &report.output_key).await;
    let mut reader = csv::Reader::from_reader(output.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(headers.get(0), Some("id"));
    assert_eq!(headers.get(1001), Some("prediction"));
    let mut n = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.expect("record");
        assert_eq!(
            record.get(0),
            Some(format!("row-{i}").as_str()),
            "input columns kept, in order"
        );
        let p: f32 = record
            .get(1001)
            .expect("prediction")
            .parse()
            .expect("number");
        assert!(
            (p - expected[i]).abs() <= 1e-4,
            "row {i}: {p} vs {}",
            expected[i]
        );
        n += 1;
    }
    assert_eq!(n, 8);

    let errors = text(&store, &report.errors_key).await;
    let lines: Vec<u64> = errors
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("jsonl")["line"]
                .as_u64()
                .expect("line")
        })
        .collect();
    assert_eq!(lines, bad_lines, "exactly the planted rows, by line");
    assert!(errors.contains("\\\"abc\\\" is not a number"), "{errors}");
    assert!(
        errors.contains("2 fields") || errors.contains("4 fields"),
        "{errors}"
    );
    assert!(errors.contains("finite"), "{errors}");

    // Re-delivery of the same event: nothing is rewritten.
    let before = store.list("batch/output/").await.expect("list");
    let again = scorer.score(key).await.expect("second delivery");
    assert!(matches!(again, ScoreOutcome::AlreadyScored(_)));
    assert_eq!(
        store.list("batch/output/").await.expect("list"),
        before,
        "outputs untouched"
    );
    assert!(
        store.list("batch/input/").await.expect("list").len() == 1,
        "nothing written under the trigger prefix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_are_scored_by_feature_name_or_position() {
    let (_dir, store) = store_with_seed().await;
    let (rows, expected) = reference();
    let mut body = String::new();
    for (i, row) in rows.iter().enumerate() {
        if i % 2 == 0 {
            let mut obj = serde_json::Map::new();
            obj.insert("id".into(), Value::from(i));
            for (name, v) in features().iter().zip(row) {
                obj.insert(name.clone(), Value::from(*v as f64));
            }
            body.push_str(&Value::Object(obj).to_string());
        } else {
            body.push_str(&serde_json::to_string(row).expect("json"));
        }
        body.push('\n');
    }
    body.push_str("{\"id\": 99, \"f0\": 1}\n\nnot json\n");
    let key = "batch/input/seed@latest/rows.jsonl";
    store
        .put(key, Bytes::from(body), PutCondition::None)
        .await
        .expect("upload");
    let ScoreOutcome::Scored(report) = BatchScorer::new(store.clone())
        .score(key)
        .await
        .expect("score")
    else {
        panic!("scored");
    };
    assert_eq!(
        (report.rows_read, report.rows_scored, report.rows_rejected),
        (10, 8, 2)
    );
    let output = text(&store, "batch/output/seed/rows.jsonl").await;
    for (i, line) in output.lines().enumerate() {
        let doc: Value = serde_json::from_str(line).expect("json line");
        let p = doc["prediction"].as_f64().expect("prediction") as f32;
        assert!((p - expected[i]).abs() <= 1e-4);
        if i % 2 == 0 {
            assert_eq!(doc["id"], i, "object rows keep their fields");
        } else {
            assert_eq!(doc["instance"].as_array().expect("instance").len(), 1000);
        }
    }
    let errors = text(&store, "batch/output/seed/rows.jsonl.errors.jsonl").await;
    let lines: Vec<u64> = errors
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["line"]
                .as_u64()
                .expect("line")
        })
        .collect();
    assert_eq!(
        lines,
        vec![9, 11],
        "blank lines count as lines but not as rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_scored_fails_and_leaves_no_output() {
    let (_dir, store) = store_with_seed().await;
    store
        .put(
            "batch/input/seed/wrong.csv",
            Bytes::from_static(b"a,b\n1,2\n"),
            PutCondition::None,
        )
        .await
        .expect("upload");
    let err = BatchScorer::new(store.clone())
        .score("batch/input/seed/wrong.csv")
        .await
        .expect_err("schema");
    assert!(err.to_string().contains("no column \"f0\""), "{err}");
    let err = BatchScorer::new(store.clone())
        .score("batch/input/nope/x.csv")
        .await
        .expect_err("no input");
    assert!(
        matches!(err, maas_batch::BatchError::Store(ref e) if e.is_not_found()),
        "{err}"
    );
    store
        .put(
            "batch/input/nope/x.csv",
            Bytes::from_static(b"a\n1\n"),
            PutCondition::None,
        )
        .await
        .expect("upload");
    let err = BatchScorer::new(store.clone())
        .score("batch/input/nope/x.csv")
        .await
        .expect_err("no model");
    assert!(err.to_string().contains("\"nope\" not found"), "{err}");
    assert!(
        store.list("batch/output/").await.expect("list").is_empty(),
        "nothing visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_scores_stable_new_files_once_and_survives_bad_ones() {
    use maas_batch::{InputWatcher, WatchPass};
    let (_dir, store) = store_with_seed().await;
    let scorer = BatchScorer::new(store.clone());
    let mut watcher = InputWatcher::new();
    let (csv, _) = csv_with_bad_rows();
    store
        .put(
            "batch/input/seed/a.csv",
            Bytes::from(csv.clone()),
            PutCondition::None,
        )
        .await
        .expect("upload");
    store
        .put(
            "batch/input/ghost/b.csv",
            Bytes::from(csv.clone()),
            PutCondition::None,
        )
        .await
        .expect("upload");

    // A file is scored once it looked the same on two listings.
    let first = watcher.pass(&scorer).await.expect("pass");
    assert_eq!(first, WatchPass::default(), "nothing is stable yet");
    let second = watcher.pass(&scorer).await.expect("pass");
    assert_eq!(second.scored, ["batch/input/seed/a.csv"]);
    assert_eq!(second.failed.len(), 1, "{second:?}");
    assert_eq!(second.failed[0].0, "batch/input/ghost/b.csv");
    assert!(second.failed[0].1.contains("ghost"), "{second:?}");
    store
        .head("batch/output/seed/a.csv.report.json")
        .await
        .expect("report written");

    // Handled files, scored or failed, are left alone until they change.
    let third = watcher.pass(&scorer).await.expect("pass");
    assert_eq!(third, WatchPass::default());

    // A changed file is scored again, after it settles.
    let mut changed = csv.clone();
    changed.push_str(&format!("99,{}\n", vec!["0.5"; 1000].join(",")));
    store
        .put(
            "batch/input/seed/a.csv",
            Bytes::from(changed),
            PutCondition::None,
        )
        .await
        .expect("upload");
    assert_eq!(
        watcher.pass(&scorer).await.expect("pass"),
        WatchPass::default()
    );
    let rescored = watcher.pass(&scorer).await.expect("pass");
    assert_eq!(rescored.scored, ["batch/input/seed/a.csv"]);

    // A new watcher (a restarted `maas serve`) finds the outputs up to date.
    let mut restarted = InputWatcher::new();
    restarted.pass(&scorer).await.expect("pass");
    let again = restarted.pass(&scorer).await.expect("pass");
    assert_eq!(again.already_scored, ["batch/input/seed/a.csv"]);
    assert!(again.scored.is_empty());
}
