//! The `maas` binary end to end: push the seed model in both formats to the local store and to an
//! S3 endpoint (s3s-fs on 127.0.0.1), predict PyTorch's reference inputs, and check that every
//! error is one clear line with a non-zero exit.

use std::path::Path;

use maas_tests::S3Endpoint;
use maas_tests::fixtures::{assert_matches_reference, seed_dir, seed_reference};
use serde_json::Value;

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

async fn maas(store: &str, env: &[(&str, String)], args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .arg("--store")
        .arg(store)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("MAAS_ACTOR", "ci-tester")
        .env_remove("MAAS_STORE")
        .output()
        .await
        .expect("run maas");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(store: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let run = maas(store, env, args).await;
    assert!(run.status.success(), "maas {args:?} failed: {}", run.stderr);
    run.stdout
}

async fn fails(store: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let run = maas(store, env, args).await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "maas {args:?} should fail: {}",
        run.stdout
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    run.stderr
}

/// Starts `maas serve` over `store` on a free port of 127.0.0.1; returns it and `host:port`.
fn spawn_serve(store: &str, args: &[&str]) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args(["--store", store, "serve", "--addr", &addr])
        .args(args)
        .env_remove("MAAS_STORE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("maas serve");
    (server, addr)
}

fn write_reference_inputs(dir: &Path) -> (String, String) {
    let reference = seed_reference();
    let json_path = dir.join("rows.json");
    std::fs::write(
        &json_path,
        serde_json::to_vec(&reference.inputs).expect("json"),
    )
    .expect("write");
    let csv_path = dir.join("rows.csv");
    let mut csv = (0..1000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for row in &reference.inputs {
        csv.push('\n');
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    std::fs::write(&csv_path, csv).expect("write");
    (
        json_path.display().to_string(),
        csv_path.display().to_string(),
    )
}

fn predictions_of(stdout: &str) -> Vec<f32> {
    let doc: Value = serde_json::from_str(stdout).expect("predict prints JSON");
    doc["predictions"]
        .as_array()
        .expect("predictions")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// Pushes both formats to `store` and checks predictions, listings and promotion.
async fn push_and_predict_both_formats(store: &str, env: &[(&str, String)], work: &Path) {
    let (json_rows, csv_rows) = write_reference_inputs(work);
    let onnx = seed_dir().join("model.onnx").display().to_string();
    let safetensors = seed_dir().join("model.safetensors").display().to_string();

    let pushed: Value =
        serde_json::from_str(&ok(store, env, &["--json", "push", "seed-onnx", &onnx]).await)
            .expect("json");
    assert_eq!(pushed["version"], 1);
    assert_eq!(pushed["format"], "onnx");
    assert_eq!(pushed["inputs"][0]["shape"], serde_json::json!([-1, 1000]));
    let pushed: Value = serde_json::from_str(
        &ok(
            store,
            env,
            &[
                "--json",
                "push",
                "seed-st",
                &safetensors,
                "--alias",
                "production",
            ],
        )
        .await,
    )
    .expect("json");
    assert_eq!(pushed["format"], "safetensors");
    assert_eq!(pushed["architecture"]["layers"][2]["name"], "layer3");
    assert_eq!(pushed["alias_moved"]["to"], 1);

    for model in ["seed-onnx", "seed-st"] {
        assert_matches_reference(
            &predictions_of(&ok(store, env, &["predict", model, "--input", &json_rows]).await),
            1e-4,
        );
        assert_matches_reference(
            &predictions_of(&ok(store, env, &["predict", model, "--input", &csv_rows]).await),
            1e-4,
        );
    }

    // A second push makes version 2; `latest` follows, production stays until promoted.
    ok(store, env, &["push", "seed-st", &safetensors]).await;
    let versions: Value =
        serde_json::from_str(&ok(store, env, &["--json", "versions", "seed-st"]).await)
            .expect("json");
    assert_eq!(versions[0]["aliases"], serde_json::json!(["production"]));
    assert_eq!(versions[1]["aliases"], serde_json::json!(["latest"]));
    assert_eq!(versions[1]["source"], "pushed");
    let default: Value =
        serde_json::from_str(&ok(store, env, &["predict", "seed-st", "--input", &json_rows]).await)
            .expect("json");
    assert_eq!(
        default["model_version"], 1,
        "no version given: production wins over latest"
    );
    let latest: Value = serde_json::from_str(
        &ok(
            store,
            env,
            &[
                "predict", "seed-st", "--alias", "latest", "--input", &json_rows,
            ],
        )
        .await,
    )
    .expect("json");
    assert_eq!(latest["model_version"], 2);
    let promoted = ok(
        store,
        env,
        &[
            "promote",
            "seed-st",
            "2",
            "--alias",
            "production",
            "--reason",
            "passes review",
        ],
    )
    .await;
    assert!(
        promoted.contains("from version 1 to version 2"),
        "{promoted}"
    );
    let audit: Value =
        serde_json::from_str(&ok(store, env, &["--json", "audit", "seed-st"]).await).expect("json");
    let last = audit
        .as_array()
        .expect("records")
        .last()
        .expect("a record")
        .clone();
    assert_eq!(last["action"], "alias_moved");
    assert_eq!(last["actor"], "ci-tester");
    assert_eq!(last["reason"], "passes review");
    assert_eq!(
        (last["from"].clone(), last["to"].clone()),
        (serde_json::json!(1), serde_json::json!(2))
    );

    let models: Value =
        serde_json::from_str(&ok(store, env, &["--json", "models"]).await).expect("json");
    let names: Vec<&str> = models
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["model"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["seed-onnx", "seed-st"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_push_and_predict() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    push_and_predict_both_formats(&store, &[], work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_push_and_predict() {
    let s3 = S3Endpoint::start("maas-models").await;
    let work = tempfile::tempdir().expect("temp dir");
    push_and_predict_both_formats("s3://maas-models/team-a", &s3.env(), work.path()).await;
    // The objects really are in the bucket, under the prefix.
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket("maas-models")
        .prefix("team-a/models/seed-st/versions/1/")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&"team-a/models/seed-st/versions/1/manifest.json"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"team-a/models/seed-st/versions/1/model.safetensors"),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_clear_line_and_change_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    let onnx = seed_dir().join("model.onnx").display().to_string();
    let pickle = seed_dir().join("model.pt").display().to_string();
    ok(&store, &[], &["push", "seed", &onnx]).await;
    let before = ok(&store, &[], &["--json", "versions", "seed"]).await;

    let err = fails(&store, &[], &["push", "seed", &pickle]).await;
    assert!(err.contains("Export safetensors or ONNX"), "{err}");
    for bad in ["../x", "Seed", ""] {
        let err = fails(&store, &[], &["push", bad, &onnx]).await;
        assert!(err.contains("invalid model name"), "{err}");
    }
    assert_eq!(
        ok(&store, &[], &["--json", "versions", "seed"]).await,
        before,
        "refused pushes wrote nothing"
    );

    let err = fails(&store, &[], &["predict", "nope", "--input", &onnx]).await;
    assert!(err.contains("\"nope\" not found"), "{err}");
    let err = fails(
        &store,
        &[],
        &["predict", "seed", "--version", "9", "--input", &onnx],
    )
    .await;
    assert!(err.contains("no version 9"), "{err}");
    let rows = work.path().join("short.json");
    std::fs::write(&rows, "[[1, 2, 3]]").expect("write");
    let err = fails(
        &store,
        &[],
        &["predict", "seed", "--input", &rows.display().to_string()],
    )
    .await;
    assert!(err.contains("takes 1000"), "{err}");
    std::fs::write(&rows, "[[1, 2, ").expect("write");
    let err = fails(
        &store,
        &[],
        &["predict", "seed", "--input", &rows.display().to_string()],
    )
    .await;
    assert!(err.contains("not valid JSON"), "{err}");
    let err = fails(
        &store,
        &[],
        &["promote", "seed", "3", "--alias", "production"],
    )
    .await;
    assert!(err.contains("no version 3"), "{err}");
    let err = fails(&store, &[], &["promote", "seed", "1", "--alias", "latest"]).await;
    assert!(err.contains("implicit"), "{err}");
    let err = fails("s3://UPPER", &[], &["models"]).await;
    assert!(err.contains("bucket name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_local_files_with_errors_and_report() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    let onnx = seed_dir().join("model.onnx").display().to_string();
    ok(&store, &[], &["push", "seed", &onnx]).await;
    let reference = seed_reference();
    let mut csv = (0..1000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for (i, row) in reference.inputs.iter().enumerate() {
        csv.push('\n');
        if i == 3 {
            csv.push_str("oops\n");
        }
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let input = work.path().join("rows.csv");
    std::fs::write(&input, csv).expect("write");
    let output = work.path().join("scored.csv");
    let report: Value = serde_json::from_str(
        &ok(
            &store,
            &[],
            &[
                "--json",
                "score",
                "seed",
                &input.display().to_string(),
                &output.display().to_string(),
            ],
        )
        .await,
    )
    .expect("json");
    assert_eq!(
        (
            report["rows_read"].clone(),
            report["rows_scored"].clone(),
            report["rows_rejected"].clone()
        ),
        (
            serde_json::json!(9),
            serde_json::json!(8),
            serde_json::json!(1)
        )
    );
    let scored = std::fs::read_to_string(&output).expect("output");
    let predictions: Vec<f32> = scored
        .lines()
        .skip(1)
        .map(|l| {
            l.rsplit(',')
                .next()
                .expect("last column")
                .parse()
                .expect("number")
        })
        .collect();
    assert_matches_reference(&predictions, 1e-4);
    let errors =
        std::fs::read_to_string(work.path().join("scored.csv.errors.jsonl")).expect("errors");
    let error: Value = serde_json::from_str(errors.trim()).expect("one error line");
    assert_eq!(error["line"], 5);
    assert!(work.path().join("scored.csv.report.json").exists());
    assert!(
        !work.path().join("scored.csv.partial").exists(),
        "no partial file left"
    );
}

/// A LightGBM classifier from its own text file and a scikit-learn pipeline of several inputs
/// with string classes: `maas predict` prints labels, probabilities and classes; `maas score`
/// writes `label` and `probability_<class>` columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabular_classifiers_predict_and_score_with_labels_and_probabilities() {
    use maas_tests::fixtures::{strings, tabular_dir, tabular_reference};
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();

    // LightGBM: rows as JSON lists, NaN as null; integer labels stay integers.
    let booster = tabular_dir("lightgbm-multiclass").join("model.txt");
    ok(
        &store,
        &[],
        &["push", "lgbm", &booster.display().to_string()],
    )
    .await;
    let reference = tabular_reference("lightgbm-multiclass");
    let width = reference.features.len();
    let rows: Vec<Value> = reference
        .inputs
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|&v| {
                    if v.is_nan() {
                        Value::Null
                    } else {
                        serde_json::json!(v)
                    }
                })
                .collect()
        })
        .collect();
    let input = work.path().join("lgbm.json");
    std::fs::write(&input, Value::Array(rows).to_string()).expect("write");
    let printed: Value = serde_json::from_str(
        &ok(
            &store,
            &[],
            &["predict", "lgbm", "--input", &input.display().to_string()],
        )
        .await,
    )
    .expect("json");
    let want: Vec<Value> = reference
        .labels
        .iter()
        .map(|&l| serde_json::json!(l as i64))
        .collect();
    assert_eq!(printed["labels"], Value::Array(want), "{printed}");
    assert_eq!(printed["classes"], serde_json::json!([0, 1, 2]));
    let probabilities: Vec<f64> = printed["probabilities"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|p| p.as_f64().expect("p"))
        })
        .collect();
    for (got, want) in probabilities
        .iter()
        .zip(reference.probabilities.as_ref().expect("p"))
    {
        assert!((got - want).abs() <= 1e-5, "{got} vs LightGBM's {want}");
    }

    // scikit-learn, several inputs: CSV columns named after the inputs.
    let pipeline = tabular_dir("sklearn-several-inputs").join("model.onnx");
    ok(
        &store,
        &[],
        &["push", "churn", &pipeline.display().to_string()],
    )
    .await;
    let reference = tabular_reference("sklearn-several-inputs");
    let mut csv = String::from("tenure,spend,calls,plan");
    for x in reference.inputs.chunks(4) {
        csv.push_str(&format!(
            "\n{:?},{:?},{:?},{}",
            x[0], x[1], x[2], x[3] as i64
        ));
    }
    let input = work.path().join("churn.csv");
    std::fs::write(&input, &csv).expect("write");
    let printed: Value = serde_json::from_str(
        &ok(
            &store,
            &[],
            &["predict", "churn", "--input", &input.display().to_string()],
        )
        .await,
    )
    .expect("json");
    let labels = strings(&reference.raw["library"]["labels"]);
    assert_eq!(strings(&printed["labels"]), labels);
    assert_eq!(printed["classes"], serde_json::json!(["churn", "stay"]));

    let output = work.path().join("churn-scored.csv");
    ok(
        &store,
        &[],
        &[
            "score",
            "churn",
            &input.display().to_string(),
            &output.display().to_string(),
        ],
    )
    .await;
    let scored = std::fs::read_to_string(&output).expect("output");
    let mut lines = scored.lines();
    assert_eq!(
        lines.next(),
        Some("tenure,spend,calls,plan,label,probability_churn,probability_stay")
    );
    let scored_labels: Vec<&str> = lines
        .map(|l| l.split(',').nth(4).expect("label column"))
        .collect();
    assert_eq!(scored_labels, labels);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_scores_files_dropped_into_the_local_batch_input_folder() {
    // GIVEN the seed model in a local store, and `maas serve` over it
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("maas-data");
    let store = data.display().to_string();
    let onnx = seed_dir().join("model.onnx").display().to_string();
    ok(&store, &[], &["push", "seed", &onnx]).await;
    let (mut server, _) = spawn_serve(&store, &["--batch-interval", "0.2"]);

    // WHEN a CSV is copied into batch/input/seed/ with plain file tools
    let reference = seed_reference();
    let mut csv = (0..1000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for row in &reference.inputs {
        csv.push('\n');
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    csv.push_str("\nnot,a,row");
    let inbox = data.join("batch/input/seed/2026-11");
    std::fs::create_dir_all(&inbox).expect("inbox");
    std::fs::write(inbox.join("drop.csv"), csv).expect("drop the file");

    // THEN the outputs appear under batch/output/seed/, report last
    let outbox = data.join("batch/output/seed/2026-11");
    let report_path = outbox.join("drop.csv.report.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !report_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no report after 2 minutes"
        );
        assert!(
            server.try_wait().expect("server status").is_none(),
            "maas serve exited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("json");
    assert_eq!(report["rows_scored"], 8, "{report}");
    assert_eq!(report["rows_rejected"], 1, "{report}");
    let scored = std::fs::read_to_string(outbox.join("drop.csv")).expect("output");
    let predictions: Vec<f32> = scored
        .lines()
        .skip(1)
        .map(|l| {
            l.rsplit(',')
                .next()
                .expect("column")
                .parse()
                .expect("number")
        })
        .collect();
    assert_matches_reference(&predictions, 1e-4);
    let errors = std::fs::read_to_string(outbox.join("drop.csv.errors.jsonl")).expect("errors");
    assert_eq!(errors.lines().count(), 1, "{errors}");
    server.kill().await.expect("stop server");
}

/// The repository's example specs.
fn spec_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/specs")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_the_example_specs_then_predict_and_serve_the_versions() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    let file = |name: &str| work.path().join(name).display().to_string();

    // GIVEN generated datasets for the three example specs
    ok(
        &store,
        &[],
        &[
            "generate-dataset",
            "regression",
            &file("seed.csv"),
            "--rows",
            "2500",
        ],
    )
    .await;
    ok(
        &store,
        &[],
        &[
            "generate-dataset",
            "binary",
            &file("churn.csv"),
            "--rows",
            "2000",
            "--features",
            "12",
        ],
    )
    .await;
    ok(
        &store,
        &[],
        &[
            "generate-dataset",
            "multiclass",
            &file("colours.jsonl"),
            "--rows",
            "2000",
            "--features",
            "6",
        ],
    )
    .await;

    // WHEN the seed spec (MLP 1000→500→100→1, Adam, lr 0.001) trains on it
    let out = ok(
        &store,
        &[],
        &[
            "--json",
            "train",
            &spec_path("seed.json"),
            "--dataset",
            &file("seed.csv"),
        ],
    )
    .await;
    let result: Value = serde_json::from_str(&out).expect("json");
    // THEN version 1 beats predicting the mean by a wide margin and becomes production
    let (mse, baseline) = (
        result["metrics"]["val_mse"].as_f64().expect("val_mse"),
        result["metrics"]["val_mse_baseline"]
            .as_f64()
            .expect("baseline"),
    );
    assert!(
        mse < baseline / 4.0,
        "val_mse {mse} vs the mean's {baseline}"
    );
    assert_eq!(result["version"], 1);
    assert_eq!(result["status"]["promotion"]["promoted"], true, "{result}");
    let history = result["status"]["history"].as_array().expect("history");
    assert_eq!(history.len(), 10);

    // AND `maas predict` serves it: the first rows of the dataset come back near their targets
    let csv = std::fs::read_to_string(file("seed.csv")).expect("csv");
    let mut lines = csv.lines();
    let header = lines.next().expect("header");
    let features_header = header.trim_end_matches(",y");
    let rows: Vec<(String, f64)> = lines
        .take(50)
        .map(|l| {
            let (x, y) = l.rsplit_once(',').expect("row");
            (x.to_string(), y.parse().expect("y"))
        })
        .collect();
    let mut input = features_header.to_string();
    for (x, _) in &rows {
        input.push('\n');
        input.push_str(x);
    }
    std::fs::write(file("rows.csv"), input).expect("rows");
    let predicted = predictions_of(
        &ok(
            &store,
            &[],
            &["predict", "seed-trained", "--input", &file("rows.csv")],
        )
        .await,
    );
    let mse_here: f64 = predicted
        .iter()
        .zip(&rows)
        .map(|(p, (_, y))| (f64::from(*p) - y).powi(2))
        .sum::<f64>()
        / rows.len() as f64;
    assert!(
        mse_here < baseline / 2.0,
        "served predictions: mse {mse_here}"
    );

    // WHEN the binary and multiclass specs train
    let churn: Value = serde_json::from_str(
        &ok(
            &store,
            &[],
            &[
                "--json",
                "train",
                &spec_path("binary.json"),
                "--dataset",
                &file("churn.csv"),
            ],
        )
        .await,
    )
    .expect("json");
    assert!(
        churn["metrics"]["val_accuracy"].as_f64().expect("accuracy") > 0.85,
        "{churn}"
    );
    assert!(
        churn["metrics"]["val_auc"].as_f64().expect("auc") > 0.9,
        "{churn}"
    );
    let colours: Value = serde_json::from_str(
        &ok(
            &store,
            &[],
            &[
                "--json",
                "train",
                &spec_path("multiclass.json"),
                "--dataset",
                &file("colours.jsonl"),
            ],
        )
        .await,
    )
    .expect("json");
    assert!(
        colours["metrics"]["val_accuracy"]
            .as_f64()
            .expect("accuracy")
            > 0.7,
        "{colours}"
    );

    // THEN `maas serve` answers for them over the Open Inference Protocol, with labels
    let (mut server, addr) = spawn_serve(&store, &["--batch-watch", "never"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "maas serve did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let client = maas_tests::http::Client { addr };
    let body = serde_json::json!({"instances": [[0.5, -0.2, 0.1, 0.9, -0.7, 0.3], [-0.5, 0.2, -0.1, -0.9, 0.7, -0.3]]});
    let (status, _, answer) = client
        .post(
            "/v1/models/colours:predict",
            body.to_string().into_bytes(),
            &[("Content-Type", "application/json".into())],
        )
        .await;
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(status, 200, "{answer}");
    let labels = answer["labels"].as_array().expect("labels");
    assert_eq!(labels.len(), 2, "{answer}");
    for label in labels {
        assert!(
            ["red", "green", "blue"].contains(&label.as_str().expect("label")),
            "{answer}"
        );
    }
    server.kill().await.expect("stop server");

    // AND a bad spec is refused with one clear line, and no version is written
    std::fs::write(
        file("bad.json"),
        r#"{"model": "seed-trained", "dataset": {"key": "datasets/seed.csv", "target": "y"}, "training": {"learning_rate": -1}}"#,
    )
    .expect("spec");
    let err = fails(&store, &[], &["train", &file("bad.json")]).await;
    assert!(err.contains("learning_rate"), "{err}");
    let versions: Value =
        serde_json::from_str(&ok(&store, &[], &["--json", "versions", "seed-trained"]).await)
            .expect("json");
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_trains_serves_predicts_and_scores_a_dropped_file() {
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("maas-data");
    let store = data.display().to_string();
    let out = ok(
        &store,
        &[],
        &["demo", "--addr", "127.0.0.1:0", "--rows", "1500", "--exit"],
    )
    .await;
    for expected in [
        "[1/5] generating",
        "[2/5] training",
        "version 1: validation MSE",
        "POST /v2/models/seed/versions/1/infer with 3 rows",
        "1001 rows read, 1000 scored, 1 rejected",
        "[5/5] what to try next",
        "demo finished; model seed version 1",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    // Three predictions printed next to their targets, and near them (targets span about ±2).
    let pairs: Vec<(f64, f64)> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("prediction"))
        .map(|rest| {
            let (p, t) = rest.split_once("target").expect("target");
            (
                p.trim().parse().expect("prediction"),
                t.trim().parse().expect("target"),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 3, "{out}");
    for (prediction, target) in &pairs {
        assert!((prediction - target).abs() < 1.0, "{out}");
    }
    // The outputs are where the demo says: the demo drops its file under `seed:{version}/`, so
    // they are under the same selector folder in batch/output/.
    let folder = std::fs::read_dir(data.join("batch/output"))
        .expect("outputs")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .find(|name| name.starts_with("seed:"))
        .expect("a seed:{version} output folder");
    assert!(
        out.contains(&format!("batch/output/{folder}/demo.csv")),
        "{out}"
    );
    let scored = std::fs::read_to_string(data.join(format!("batch/output/{folder}/demo.csv")))
        .expect("output");
    assert_eq!(scored.lines().count(), 1001);
    let errors =
        std::fs::read_to_string(data.join(format!("batch/output/{folder}/demo.csv.errors.jsonl")))
            .expect("errors");
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

/// Starts the SigV4-checking proxy (botocore's signer) in front of `upstream`; returns it and its
/// `host:port`.
async fn spawn_sigv4_proxy(upstream: &str) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let python = if python.exists() {
        python
    } else {
        "python3".into()
    };
    let mut proxy = tokio::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sigv4_proxy.py"))
        .args([
            upstream,
            "AKIDMAASTEST",
            "maas-test-secret",
            "eu-west-1",
            "execute-api",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python sigv4_proxy.py (scripts/test installs botocore into .venv)");
    let stdout = proxy.stdout.take().expect("proxy stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("proxy starts within 30 s")
        .expect("read proxy stdout")
        .expect("proxy printed its port");
    let port = first.trim_start_matches("listening on ").to_string();
    (proxy, format!("127.0.0.1:{port}"))
}

pub(crate) async fn wait_for_port(addr: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "{addr} did not open");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `maas predict --url` signs with SigV4 from the standard credential chain: an endpoint that
/// recomputes the signature with botocore accepts it (JSON and CSV rows, a version, an alias),
/// and refuses a wrong secret, a wrong region and an unsigned request with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_url_signs_requests_that_an_independent_sigv4_check_accepts() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    let manifest = work.path().join("manifest.json");
    let features: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({ "features": features })).expect("json"),
    )
    .expect("write manifest");
    let onnx = seed_dir().join("model.onnx").display().to_string();
    let manifest_arg = manifest.display().to_string();
    ok(
        &store,
        &[],
        &["push", "seed", &onnx, "--manifest", &manifest_arg],
    )
    .await;
    ok(
        &store,
        &[],
        &[
            "push",
            "seed",
            &onnx,
            "--manifest",
            &manifest_arg,
            "--alias",
            "production",
        ],
    )
    .await;
    let (json_rows, csv_rows) = write_reference_inputs(work.path());

    let (_server, server_addr) = spawn_serve(&store, &["--batch-watch", "never"]);
    wait_for_port(&server_addr).await;
    let (_proxy, proxy_addr) = spawn_sigv4_proxy(&server_addr).await;
    let url = format!("http://{proxy_addr}");
    let empty_config = work.path().join("aws-config");
    std::fs::write(&empty_config, "").expect("write empty AWS config");
    let empty_config = empty_config.display().to_string();
    let creds = |secret: &str| {
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIDMAASTEST".to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_SESSION_TOKEN", String::new()),
            ("AWS_CONFIG_FILE", empty_config.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE", empty_config.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("AWS_REGION", "eu-west-1".to_string()),
        ]
    };
    let good = creds("maas-test-secret");
    let unused_store = "memory://";

    let out = ok(
        unused_store,
        &good,
        &["predict", "seed", "--url", &url, "-i", &json_rows],
    )
    .await;
    assert_matches_reference(&predictions_of(&out), 1e-4);
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        doc["model_version"], "2",
        "production (the default) is version 2"
    );

    let out = ok(
        unused_store,
        &good,
        &[
            "predict",
            "seed",
            "--url",
            &url,
            "--version",
            "1",
            "-i",
            &csv_rows,
        ],
    )
    .await;
    assert_matches_reference(&predictions_of(&out), 1e-4);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["model_version"],
        "1"
    );

    let out = ok(
        unused_store,
        &good,
        &[
            "predict",
            "seed",
            "--url",
            &url,
            "--alias",
            "latest",
            "--region",
            "eu-west-1",
            "-i",
            &json_rows,
        ],
    )
    .await;
    assert_matches_reference(&predictions_of(&out), 1e-4);

    let err = fails(
        unused_store,
        &creds("wrong-secret"),
        &["predict", "seed", "--url", &url, "-i", &json_rows],
    )
    .await;
    assert!(err.contains("403") && err.contains("signature"), "{err}");

    let err = fails(
        unused_store,
        &good,
        &[
            "predict",
            "seed",
            "--url",
            &url,
            "--region",
            "us-east-1",
            "-i",
            &json_rows,
        ],
    )
    .await;
    assert!(err.contains("403") && err.contains("--region"), "{err}");

    let err = fails(
        unused_store,
        &good,
        &[
            "predict",
            "seed",
            "--url",
            &url,
            "--unsigned",
            "-i",
            &json_rows,
        ],
    )
    .await;
    assert!(err.contains("Missing Authentication Token"), "{err}");

    // Unknown models are the server's 404, relayed in one line.
    let err = fails(
        unused_store,
        &good,
        &["predict", "nope", "--url", &url, "-i", &json_rows],
    )
    .await;
    assert!(err.contains("404"), "{err}");
}

/// `maas train --remote` against an S3 endpoint: the request lands under jobs/requests/, where
/// the deployed function's trigger listens. The test plays S3's part: it hands the upload event
/// to the training function's handler, first with a deadline that pauses the job (the CLI
/// resubmits it) and then without (the job finishes and the CLI prints the new version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_remote_submits_to_the_bucket_follows_the_job_and_resubmits_a_paused_one() {
    use tokio::io::AsyncBufReadExt;
    let work = tempfile::tempdir().expect("temp dir");
    let s3 = S3Endpoint::start("remote-train").await;
    let env = s3.env();
    let store = format!("s3://{}", s3.bucket);
    let data = work.path().join("small.csv").display().to_string();
    ok(
        "memory://",
        &[],
        &[
            "generate-dataset",
            "regression",
            &data,
            "--rows",
            "300",
            "--features",
            "8",
        ],
    )
    .await;
    let spec = work.path().join("small.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "model": "remote-small",
            "dataset": {"key": "datasets/small.csv", "format": "csv", "target": "y"},
            "task": "regression",
            "architecture": {"hidden": [8], "activation": "relu"},
            "training": {"epochs": 3, "batch_size": 32, "seed": 7}
        })
        .to_string(),
    )
    .expect("write spec");
    let spec = spec.display().to_string();

    // A local store is refused: nothing would pick the request up.
    let err = fails(
        work.path().join("local").to_str().expect("utf-8"),
        &[],
        &["train", &spec, "--remote"],
    )
    .await;
    assert!(err.contains("s3://"), "{err}");

    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args([
            "--store",
            &store,
            "train",
            &spec,
            "--remote",
            "--dataset",
            &data,
        ])
        .args(["--job-id", "remote-1", "--poll-seconds", "0.1"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("MAAS_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("maas train --remote");
    let mut stderr = tokio::io::BufReader::new(cli.stderr.take().expect("stderr")).lines();
    let mut said = Vec::new();
    let mut wait_for = async |needle: &str| {
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = stderr.next_line().await.expect("read stderr") {
                said.push(line.clone());
                if line.contains(needle) {
                    return;
                }
            }
            panic!("maas exited before saying {needle:?}: {said:?}");
        })
        .await;
        assert!(found.is_ok(), "no {needle:?} within 60 s: {said:?}");
    };
    wait_for("submitted as jobs/requests/remote-1.json").await;

    let bucket_store: maas_store::SharedStore = s3.store("");
    let request = bucket_store
        .get("jobs/requests/remote-1.json")
        .await
        .expect("the request is in the bucket");
    let sent: Value = serde_json::from_slice(&request.body).expect("the request is JSON");
    assert_eq!(sent["job_id"], "remote-1");
    assert_eq!(sent["model"], "remote-small");
    bucket_store
        .get("datasets/small.csv")
        .await
        .expect("--dataset was uploaded");

    let event = |key: &str| {
        let mut event: Value = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../functions/train/tests/events/s3-object-created.json"),
            )
            .expect("event fixture"),
        )
        .expect("json");
        event["Records"][0]["s3"]["object"]["key"] = Value::String(key.to_string());
        event
    };
    // First invocation: out of time at once, so the job pauses at a checkpoint.
    let paused = maas_train_function::handle(
        bucket_store.clone(),
        "",
        event("jobs/requests/remote-1.json"),
        Some(std::time::Instant::now()),
        "s3-trigger",
    )
    .await
    .expect("first invocation");
    assert_eq!(paused["jobs"][0]["state"], "paused", "{paused}");
    wait_for("resubmitting to continue").await;

    // The resubmitted request's event: the job resumes and finishes.
    let done = maas_train_function::handle(
        bucket_store.clone(),
        "",
        event("jobs/requests/remote-1.json"),
        None,
        "s3-trigger",
    )
    .await
    .expect("second invocation");
    assert_eq!(done["jobs"][0]["state"], "succeeded", "{done}");

    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cli.wait_with_output())
        .await
        .expect("maas returns once the job is done")
        .expect("maas output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    while let Ok(Some(line)) = stderr.next_line().await {
        said.push(line);
    }
    assert!(out.status.success(), "{stdout} {said:?}");
    assert!(
        stdout.contains("job remote-1 succeeded: remote-small version 1"),
        "{stdout}"
    );
    assert!(stdout.contains("val_mse"), "{stdout}");
    let versions = ok(&store, &env, &["versions", "remote-small"]).await;
    assert!(versions.contains("trained  s3-trigger"), "{versions}");

    // --no-wait only submits.
    let out = ok(
        &store,
        &env,
        &[
            "train",
            &spec,
            "--remote",
            "--no-wait",
            "--job-id",
            "remote-2",
        ],
    )
    .await;
    assert!(out.contains("submitted job remote-2"), "{out}");
    bucket_store
        .get("jobs/requests/remote-2.json")
        .await
        .expect("second request");
}

/// Regression: a `MAAS_ENGINE_THREADS` that is not a number silently became 1 thread.
#[tokio::test]
async fn a_thread_count_that_is_not_a_number_stops_the_command() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data").display().to_string();
    for bad in ["two", "0", "-1"] {
        let err = fails(
            &store,
            &[("MAAS_ENGINE_THREADS", bad.to_string())],
            &["models"],
        )
        .await;
        assert!(err.contains("MAAS_ENGINE_THREADS"), "{err}");
    }
    ok(&store, &[("MAAS_ENGINE_THREADS", "2".into())], &["models"]).await;
}
