//! `kill -9`: the `maas` process killed at moments spread over a push, a training job and a
//! scoring run on the local store. After each kill the registry's invariants hold (no version
//! without its artifacts and audit record, no alias at a missing version, at most one version per
//! job, no partial output on view), and running the same command again finishes the work.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maas_store::{LocalFsStore, SharedStore};
use maas_tests::fixtures::{seed_dir, seed_reference};
use maas_tests::invariants::check_model;

/// Kill points per command: spread evenly over one clean run's duration.
const KILLS: u32 = 6;

fn command(store: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maas"));
    cmd.arg("--store")
        .arg(store)
        .args(args)
        .env("MAAS_ACTOR", "kill-test")
        .env_remove("MAAS_STORE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Runs the command to its end; panics if it fails.
fn finish(store: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = command(store, args).output().expect("run maas");
    assert!(
        out.status.success(),
        "maas {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Starts the command and SIGKILLs it after `after` (if it is still running). True if killed.
fn kill_after(store: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = command(store, args).spawn().expect("spawn maas");
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no cleanup runs.
    child.kill().expect("kill");
    child.wait().expect("reap");
    true
}

fn store_at(dir: &Path) -> SharedStore {
    Arc::new(LocalFsStore::open(dir).expect("store"))
}

/// A crashed runner's lease runs out with time; the test moves it into the past instead.
fn expire_lease(store_dir: &Path, job: &str) {
    let path = store_dir.join(format!("jobs/{job}/status.json"));
    let Ok(body) = std::fs::read(&path) else {
        return;
    };
    let mut status: serde_json::Value = serde_json::from_slice(&body).expect("status json");
    if status["state"] == "running" {
        status["lease_expires_at"] = "2000-01-01T00:00:00Z".into();
        std::fs::write(&path, serde_json::to_vec(&status).expect("json")).expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_killed_at_any_moment_leaves_the_registry_whole_and_a_rerun_finishes() {
    let onnx = seed_dir().join("model.onnx");
    let onnx = onnx.to_str().expect("utf-8");
    let args = [
        "push",
        "seed",
        onnx,
        "--alias",
        "production",
        "--reason",
        "kill test",
    ];
    let clean = tempfile::tempdir().expect("dir");
    let took = finish(clean.path(), &args);
    let mut killed = 0;
    for i in 1..=KILLS {
        let dir = tempfile::tempdir().expect("dir");
        killed += u32::from(kill_after(dir.path(), &args, took * i / KILLS));
        let store = store_at(dir.path());
        check_model(&store, "seed")
            .await
            .unwrap_or_else(|e| panic!("killed at {i}/{KILLS}: {e}"));
        finish(dir.path(), &args);
        let state = check_model(&store, "seed").await.expect("after the rerun");
        let latest = *state.versions.last().expect("a version");
        assert_eq!(state.aliases["production"], latest, "killed at {i}/{KILLS}");
    }
    eprintln!("push: {killed} of {KILLS} runs killed (a clean run took {took:?})");
    assert!(killed > 0, "no run was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_killed_at_any_moment_ends_with_one_version_after_a_rerun() {
    let work = tempfile::tempdir().expect("dir");
    let dataset = work.path().join("r.csv");
    let spec = work.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"job_id": "killed", "model": "killed", "dataset": {"key": "datasets/r.csv", "target": "y"},
            "architecture": {"hidden": [16]}, "training": {"epochs": 6, "batch_size": 32},
            "promotion": {"alias": "production"}}"#,
    )
    .expect("spec");
    let (dataset, spec) = (
        dataset.to_str().expect("utf-8").to_string(),
        spec.to_str().expect("utf-8").to_string(),
    );
    let clean = tempfile::tempdir().expect("dir");
    finish(
        clean.path(),
        &[
            "generate-dataset",
            "regression",
            &dataset,
            "--rows",
            "3000",
            "--features",
            "20",
        ],
    );
    let args = ["train", &spec, "--dataset", &dataset];
    let took = finish(clean.path(), &args);
    let mut killed = 0;
    for i in 1..=KILLS {
        let dir = tempfile::tempdir().expect("dir");
        killed += u32::from(kill_after(dir.path(), &args, took * i / KILLS));
        let store = store_at(dir.path());
        check_model(&store, "killed")
            .await
            .unwrap_or_else(|e| panic!("killed at {i}/{KILLS}: {e}"));
        expire_lease(dir.path(), "killed");
        finish(dir.path(), &args);
        let state = check_model(&store, "killed")
            .await
            .expect("after the rerun");
        let versions = &state.versions_by_job["killed"];
        assert_eq!(versions.len(), 1, "killed at {i}/{KILLS}: {versions:?}");
        assert_eq!(state.aliases["production"], versions[0]);
    }
    eprintln!("train: {killed} of {KILLS} runs killed (a clean run took {took:?})");
    assert!(killed > 0, "no run was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_killed_at_any_moment_shows_no_partial_output_and_a_rerun_finishes() {
    let work = tempfile::tempdir().expect("dir");
    // 2,000 rows of the seed's 1,000 features: long enough to be killed mid-file.
    let reference = seed_reference();
    let mut csv = (0..1000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for r in 0..2000 {
        let row = &reference.inputs[r % reference.inputs.len()];
        csv.push('\n');
        csv.push_str(
            &row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let input = work.path().join("rows.csv");
    std::fs::write(&input, csv).expect("write");
    let input = input.to_str().expect("utf-8").to_string();
    let onnx = seed_dir().join("model.onnx");
    let onnx = onnx.to_str().expect("utf-8").to_string();
    let store = tempfile::tempdir().expect("dir");
    finish(store.path(), &["push", "seed", &onnx]);
    let expected_out = work.path().join("clean.csv");
    let took = finish(
        store.path(),
        &[
            "score",
            "seed",
            &input,
            expected_out.to_str().expect("utf-8"),
        ],
    );
    let expected = std::fs::read(&expected_out).expect("clean output");
    let expected_errors =
        std::fs::read(work.path().join("clean.csv.errors.jsonl")).expect("clean errors");
    let mut killed = 0;
    for i in 1..=KILLS {
        let out = work.path().join(format!("out-{i}.csv"));
        let out_s = out.to_str().expect("utf-8").to_string();
        let args = ["score", "seed", &input, &out_s];
        killed += u32::from(kill_after(store.path(), &args, took * i / KILLS));
        let sibling = |suffix: &str| format!("{out_s}{suffix}");
        // Whatever is on view is whole: the output, if there, is the clean run's; a report
        // vouches for both outputs.
        if let Ok(seen) = std::fs::read(&out) {
            assert_eq!(seen, expected, "killed at {i}/{KILLS}: a partial output");
        }
        if Path::new(&sibling(".report.json")).exists() {
            assert_eq!(std::fs::read(&out).expect("output"), expected);
            assert_eq!(
                std::fs::read(sibling(".errors.jsonl")).expect("errors"),
                expected_errors
            );
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(sibling(".report.json")).expect("report"))
                    .expect("the report is whole JSON");
            assert_eq!(report["rows_read"], 2000);
        }
        finish(store.path(), &args);
        assert_eq!(std::fs::read(&out).expect("output"), expected);
        assert!(Path::new(&sibling(".report.json")).exists());
    }
    eprintln!("score: {killed} of {KILLS} runs killed (a clean run took {took:?})");
    assert!(killed > 0, "no run was killed");
}
