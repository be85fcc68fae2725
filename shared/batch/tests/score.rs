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
    assert!(
        errors.contains("\\\"f10\\\" is \\\"abc\\\", not a number"),
        "{errors}"
    );
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
    let output = text(&store, "batch/output/seed@latest/rows.jsonl").await;
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
    let errors = text(&store, "batch/output/seed@latest/rows.jsonl.errors.jsonl").await;
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

/// One file scored against two aliases (the A/B case) gives two outputs, each from its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_scored_under_two_selectors_keeps_both_outputs() {
    use maas_core::AliasName;
    let (_dir, store) = store_with_seed().await;
    let registry = Registry::new(store.clone());
    let template = ManifestTemplate {
        features: Some(features()),
        ..ManifestTemplate::default()
    };
    push_seed(&registry, "seed", "model.onnx", template).await;
    let model = maas_core::ModelName::new("seed").expect("name");
    for (alias, version) in [("staging", 1), ("production", 2)] {
        registry
            .set_alias(
                &model,
                &AliasName::new(alias).expect("alias"),
                maas_core::Version::new(version).expect("version"),
                "tester",
                None,
                Value::Null,
            )
            .await
            .expect("alias");
    }
    let (csv, _) = csv_with_bad_rows();
    let scorer = BatchScorer::new(store.clone());
    let mut reports = Vec::new();
    for folder in ["seed@staging", "seed@production", "seed:1", "seed"] {
        let key = format!("batch/input/{folder}/x.csv");
        store
            .put(&key, Bytes::from(csv.clone()), PutCondition::None)
            .await
            .expect("upload");
        let ScoreOutcome::Scored(report) = scorer.score(&key).await.expect("score") else {
            panic!("{key} scored");
        };
        assert_eq!(report.output_key, format!("batch/output/{folder}/x.csv"));
        reports.push(report);
    }
    // THEN each selector's report is still there, naming the version its selector chose.
    for (report, version) in reports.iter().zip([1, 2, 1, 2]) {
        let stored: maas_batch::ScoreReport = serde_json::from_slice(
            &store
                .get(&format!("{}.report.json", report.output_key))
                .await
                .expect("report")
                .body,
        )
        .expect("json");
        assert_eq!(stored.model_version, version, "{}", report.output_key);
        assert_eq!(stored.input_key, report.input_key);
        text(&store, &report.output_key).await;
    }
}

/// A file overwritten while it is read is not published as a mix of both versions: the scorer
/// stops without output, and scoring the new object afterwards gives its own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_overwritten_mid_score_publishes_nothing() {
    use maas_tests::faults::{Call, FaultyStore, Op};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (_dir, store) = store_with_seed().await;
    // GIVEN an input bigger than one ranged read (8 MiB): 1,000 rows of 1,000 features
    let (rows, _) = reference();
    let line = |v: f32| {
        let cells: Vec<String> = rows[0].iter().map(|x| format!("{:?}", x + v)).collect();
        format!("{}\n", cells.join(","))
    };
    let mut old = format!("{}\n", features().join(","));
    let mut new = old.clone();
    for _ in 0..1000 {
        old.push_str(&line(0.0));
        new.push_str(&line(0.25));
    }
    assert!(old.len() > 9 * 1024 * 1024, "{}", old.len());
    let key = "batch/input/seed/big.csv";
    store
        .put(key, Bytes::from(old), PutCondition::None)
        .await
        .expect("upload");
    // WHEN the object is replaced right after the first range was read
    let inner = store.clone();
    let replaced = Arc::new(AtomicBool::new(false));
    let new_body = Bytes::from(new);
    let hook_replaced = replaced.clone();
    let ranges = Arc::new(AtomicUsize::new(0));
    let faulty = FaultyStore::new(
        store.clone(),
        Arc::new(move |call: Call| {
            let inner = inner.clone();
            let replaced = hook_replaced.clone();
            let body = new_body.clone();
            let second_range = call.op == Op::GetRange
                && call.key == key
                && ranges.fetch_add(1, Ordering::SeqCst) == 1;
            Box::pin(async move {
                if second_range && !replaced.swap(true, Ordering::SeqCst) {
                    // The first range went through; overwrite before the second one.
                    tokio::spawn(async move {
                        inner
                            .put(key, body, PutCondition::None)
                            .await
                            .expect("overwrite");
                    })
                    .await
                    .expect("overwrite task");
                }
                None
            })
        }),
    );
    let outcome = BatchScorer::new(Arc::new(faulty))
        .score(key)
        .await
        .expect("an overwrite is not an error");
    // THEN nothing was published
    assert!(
        matches!(outcome, ScoreOutcome::Superseded { .. }),
        "{outcome:?}"
    );
    assert!(replaced.load(Ordering::SeqCst));
    assert!(
        store.list("batch/output/").await.expect("list").is_empty(),
        "no output from a mixed read"
    );
    // AND the new object's event scores the new rows
    let ScoreOutcome::Scored(report) = BatchScorer::new(store.clone())
        .score(key)
        .await
        .expect("score")
    else {
        panic!("scored");
    };
    assert_eq!((report.rows_read, report.rows_rejected), (1000, 0));
    let head = store.head(key).await.expect("head");
    assert_eq!(report.input_etag, head.etag.0);
}

/// Regression: invalid UTF-8 on one JSON-lines row failed the whole file, and one huge line was
/// held whole. Both are now row errors; the rows around them are scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonl_row_with_bad_utf8_or_a_huge_line_is_a_row_error() {
    let (_dir, store) = store_with_seed().await;
    let (rows, expected) = reference();
    let row = |i: usize| serde_json::to_string(&rows[i]).expect("json");
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(row(0).as_bytes());
    body.push(b'\n');
    // Line 2: a string with a byte that is not UTF-8.
    body.extend_from_slice(b"{\"note\": \"caf\xe9\"}\n");
    body.extend_from_slice(row(1).as_bytes());
    body.push(b'\n');
    // Line 4: 9 MiB of one array (over the 8 MiB line bound).
    body.push(b'[');
    body.extend(std::iter::repeat_n(b"0.5,".as_slice(), (9 << 20) / 4).flatten());
    body.extend_from_slice(b"0.5]\n");
    body.extend_from_slice(row(2).as_bytes());
    let key = "batch/input/seed/mixed.jsonl";
    store
        .put(key, Bytes::from(body), PutCondition::None)
        .await
        .expect("upload");
    let ScoreOutcome::Scored(report) = BatchScorer::new(store.clone())
        .score(key)
        .await
        .expect("the file is scored")
    else {
        panic!("scored");
    };
    assert_eq!(
        (report.rows_read, report.rows_scored, report.rows_rejected),
        (5, 3, 2)
    );
    let errors = text(&store, &report.errors_key).await;
    let lines: Vec<Value> = errors
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines[0]["line"], 2);
    assert!(
        lines[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("UTF-8")
    );
    assert_eq!(lines[1]["line"], 4);
    assert!(
        lines[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("longer than")
    );
    let output = text(&store, &report.output_key).await;
    let predictions: Vec<f32> = output
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["prediction"]
                .as_f64()
                .expect("prediction") as f32
        })
        .collect();
    assert_eq!(predictions.len(), 3);
    for (p, e) in predictions.iter().zip(&expected[..3]) {
        assert!((p - e).abs() <= 1e-4, "{p} vs {e}");
    }
}

/// Storage faults: a fault at every store call of a scoring run in turn (a failure, a lost
/// answer, a read cut short). After each, nothing partial is on view — an output is there whole
/// or not at all, and a report vouches for complete outputs — and a retry scores the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_with_a_fault_at_any_call_publishes_whole_outputs_or_none() {
    use maas_tests::faults::{Fault, FaultyStore};
    let (csv, _) = csv_with_bad_rows();
    let key = "batch/input/seed/f.csv";
    let setup = async || {
        let (dir, store) = store_with_seed().await;
        store
            .put(key, Bytes::from(csv.clone()), PutCondition::None)
            .await
            .expect("upload");
        (dir, store)
    };
    let (_clean_dir, clean) = setup().await;
    let counting = FaultyStore::counting(clean.clone());
    let ScoreOutcome::Scored(report) = BatchScorer::new(Arc::new(counting.clone()))
        .score(key)
        .await
        .expect("clean run")
    else {
        panic!("scored");
    };
    let expected_out = text(&clean, &report.output_key).await;
    let expected_errors = text(&clean, &report.errors_key).await;
    let calls = counting.calls().len();
    let mut tried = 0;
    for k in 0..calls {
        for fault in [Fault::Fail, Fault::LoseResponse, Fault::Truncate] {
            let (_dir, store) = setup().await;
            let faulty = Arc::new(FaultyStore::at_call(store.clone(), k, fault));
            let result = BatchScorer::new(faulty).score(key).await;
            let what = format!("{fault:?} at call {k}: {result:?}");
            let seen = |key: String| {
                let store = store.clone();
                async move { store.get(&key).await.ok().map(|o| o.body) }
            };
            if let Some(out) = seen(report.output_key.clone()).await {
                assert_eq!(out, expected_out.as_bytes(), "{what}: partial output");
            }
            if let Some(errors) = seen(report.errors_key.clone()).await {
                assert_eq!(errors, expected_errors.as_bytes(), "{what}: partial errors");
            }
            if seen(report.output_key.clone() + ".report.json")
                .await
                .is_some()
            {
                assert!(seen(report.output_key.clone()).await.is_some(), "{what}");
                assert!(seen(report.errors_key.clone()).await.is_some(), "{what}");
            }
            // The retry (a redelivered event) finishes the file.
            let retried = BatchScorer::new(store.clone()).score(key).await;
            assert!(
                matches!(
                    retried,
                    Ok(ScoreOutcome::Scored(_) | ScoreOutcome::AlreadyScored(_))
                ),
                "{what}: retry {retried:?}"
            );
            assert_eq!(
                text(&store, &report.output_key).await,
                expected_out,
                "{what}"
            );
            tried += 1;
        }
    }
    eprintln!("scoring: {calls} calls, {tried} faulty runs");
}

/// A scikit-learn pipeline exported with one input per column (three FP32, one INT64 plan id)
/// and string classes: CSV columns map to the inputs by name, whatever their order and with
/// extra columns beside; each row gains `label` and `probability_churn` / `probability_stay`,
/// as scikit-learn answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_with_several_inputs_scores_csv_columns_by_input_name() {
    use maas_tests::fixtures::{push_tabular, strings, tabular_reference};
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    push_tabular(
        &Registry::new(store.clone()),
        "churn",
        "sklearn-several-inputs",
        "model.onnx",
    )
    .await;
    let reference = tabular_reference("sklearn-several-inputs");
    let rows = reference.rows();
    let mut csv = String::from("customer,plan,calls,spend,tenure\n");
    for r in 0..rows {
        let x = &reference.inputs[r * 4..r * 4 + 4];
        csv.push_str(&format!(
            "c{r},{},{:?},{:?},{:?}\n",
            x[3] as i64, x[2], x[1], x[0]
        ));
    }
    csv.push_str("bad-plan,1.5,0,0,0\n");
    let key = "batch/input/churn/today.csv";
    store
        .put(key, Bytes::from(csv), PutCondition::None)
        .await
        .expect("upload");
    let ScoreOutcome::Scored(report) = BatchScorer::new(store.clone())
        .with_chunk_rows(5)
        .score(key)
        .await
        .expect("score")
    else {
        panic!("scored");
    };
    assert_eq!((report.rows_scored, report.rows_rejected), (rows as u64, 1));
    let output = text(&store, &report.output_key).await;
    let mut reader = csv::Reader::from_reader(output.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        headers[5..],
        ["label", "probability_churn", "probability_stay"]
    );
    let labels = strings(&reference.raw["library"]["labels"]);
    let probabilities = &reference.probabilities.as_ref().expect("probabilities");
    for (r, record) in reader.records().enumerate() {
        let record = record.expect("record");
        assert_eq!(record.get(0), Some(format!("c{r}").as_str()));
        assert_eq!(record.get(5), Some(labels[r].as_str()), "row {r}: label");
        for c in 0..2 {
            let p: f64 = record.get(6 + c).expect("cell").parse().expect("number");
            let want = probabilities[r * 2 + c];
            assert!(
                (p - want).abs() <= 1e-5,
                "row {r}: {p} vs scikit-learn's {want}"
            );
        }
    }
    let errors = text(&store, &report.errors_key).await;
    assert!(
        errors.contains("plan") && errors.contains("not an integer"),
        "{errors}"
    );
}

/// An XGBoost binary classifier from its own JSON file: JSON lines by the file's feature
/// names, a missing value as `null`, integer labels kept as integers, one probability per
/// class, matching XGBoost's own `predict_proba`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booster_classifier_scores_json_lines_with_integer_labels() {
    use maas_tests::fixtures::{push_tabular, tabular_reference};
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    let manifest = push_tabular(
        &Registry::new(store.clone()),
        "xgb",
        "xgboost-binary",
        "model.json",
    )
    .await;
    let features = manifest
        .features
        .clone()
        .expect("feature names from the file");
    let reference = tabular_reference("xgboost-binary");
    let width = features.len();
    let mut body = String::new();
    for r in 0..reference.rows() {
        let mut row = serde_json::Map::new();
        for (j, name) in features.iter().enumerate() {
            let v = reference.inputs[r * width + j];
            row.insert(
                name.clone(),
                if v.is_nan() {
                    Value::Null
                } else {
                    Value::from(f64::from(v))
                },
            );
        }
        body.push_str(&Value::Object(row).to_string());
        body.push('\n');
    }
    let key = "batch/input/xgb/rows.jsonl";
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
    assert_eq!(report.rows_rejected, 0);
    let output = text(&store, &report.output_key).await;
    let probabilities = reference.probabilities.as_ref().expect("probabilities");
    for (r, line) in output.lines().enumerate() {
        let doc: Value = serde_json::from_str(line).expect("json line");
        assert_eq!(
            doc["label"],
            Value::from(reference.labels[r] as i64),
            "row {r}: {doc}"
        );
        for c in 0..2 {
            let p = doc[format!("probability_{c}")]
                .as_f64()
                .expect("probability");
            let want = probabilities[r * 2 + c];
            assert!(
                (p - want).abs() <= 1e-5 * want.abs().max(1.0),
                "row {r}: {p} vs {want}"
            );
        }
    }
}
