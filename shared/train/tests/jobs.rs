//! Training jobs end to end on a real store: the seed workload, binary and multiclass tasks,
//! resumption from a checkpoint with the same result as an uninterrupted run, the promotion
//! policy and its audit records, deadlines, and bad specs and datasets leaving no version.

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{AuditAction, ModelName, Postprocess};
use maas_engine::LoadedModel;
use maas_registry::{Registry, VersionSelector};
use maas_store::{LocalFsStore, PutCondition, SharedStore};
use maas_train::synthetic::{self, Target};
use maas_train::{JobOutcome, JobSpec, JobState, RunOptions, TrainingJob};
use serde_json::{Value, json};

async fn store() -> (tempfile::TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: SharedStore = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    (dir, store)
}

async fn upload(store: &SharedStore, key: &str, body: String) {
    store
        .put(key, Bytes::from(body), PutCondition::None)
        .await
        .expect("upload");
}

fn spec(doc: Value) -> JobSpec {
    serde_json::from_value(doc).expect("spec")
}

fn options() -> RunOptions<'static> {
    RunOptions {
        actor: "test".into(),
        ..RunOptions::default()
    }
}

async fn succeed(job: &TrainingJob, spec: JobSpec) -> (maas_train::JobStatus, maas_core::Manifest) {
    match job.run(spec, options()).await.expect("job runs") {
        JobOutcome::Succeeded { status, manifest } => (status, *manifest),
        other => panic!("expected success, got {other:?}"),
    }
}

fn metric(m: &maas_core::Manifest, name: &str) -> f64 {
    m.metrics[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} in {:?}", m.metrics))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workload_trains_a_version_that_beats_the_mean_and_is_served() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/seed.csv",
        synthetic::csv(Target::Regression, 1500, 1000, 1),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    // The README's seed spec: MLP 1000→500→100→1, ReLU, MSE, Adam at lr 0.001.
    let (status, manifest) = succeed(
        &job,
        spec(json!({
            "job_id": "seed-1",
            "model": "seed-trained",
            "dataset": {"key": "datasets/seed.csv", "target": "y"},
            "training": {"epochs": 4, "batch_size": 64}
        })),
    )
    .await;
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.history.len(), 4);
    let (mse, baseline) = (
        metric(&manifest, "val_mse"),
        metric(&manifest, "val_mse_baseline"),
    );
    assert!(
        mse < 0.5 * baseline,
        "val MSE {mse} vs predicting the mean {baseline}"
    );
    assert!(metric(&manifest, "val_r2") > 0.5);
    assert!(manifest.artifacts.contains_key("model.onnx"));
    assert!(manifest.artifacts.contains_key("model.safetensors"));
    let maas_core::Lineage::Trained {
        dataset_key,
        rows,
        spec,
        ..
    } = &manifest.lineage
    else {
        panic!("trained lineage");
    };
    assert_eq!((dataset_key.as_str(), *rows), ("datasets/seed.csv", 1500));
    assert_eq!(spec["architecture"]["hidden"], json!([500, 100]));
    assert_eq!(spec["training"]["optimizer"], "adam");

    // The served version (tract, from the ONNX export) and the candle engine on the safetensors
    // weights give the same predictions.
    let registry = Registry::new(store.clone());
    let model = ModelName::new("seed-trained").expect("name");
    let served = maas_models::load(&registry, &model, &VersionSelector::Default)
        .await
        .expect("loads");
    let rows: Vec<f32> = (0..3000)
        .map(|i| ((i * 37) % 200) as f32 / 100.0 - 1.0)
        .collect();
    let onnx = served
        .predict_rows(rows.clone(), 3)
        .expect("tract predicts");
    let mut candle_manifest = manifest.clone();
    candle_manifest.format = maas_core::ModelFormat::Safetensors;
    let weights = registry
        .artifact(&manifest, "model.safetensors")
        .await
        .expect("weights");
    let candle = LoadedModel::from_artifact(candle_manifest, &weights)
        .expect("candle loads")
        .predict_rows(rows, 3)
        .expect("candle predicts");
    for (a, b) in onnx.iter().flatten().zip(candle.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "tract {a} vs candle {b}");
    }
    // The job's checkpoint is gone; its status says which version it wrote.
    assert!(
        store
            .head("jobs/seed-1/checkpoint/state.safetensors")
            .await
            .is_err()
    );
    let status = job.status("seed-1").await.expect("status").expect("exists");
    assert_eq!(status.version, Some(manifest.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_multiclass_jobs_learn_and_serve_labels() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/binary.csv",
        synthetic::csv(Target::Binary, 2000, 8, 2),
    )
    .await;
    upload(
        &store,
        "datasets/colours.csv",
        synthetic::csv(Target::Multiclass, 3000, 8, 3),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let (_, binary) = succeed(
        &job,
        spec(json!({
            "model": "churn", "task": "binary",
            "dataset": {"key": "datasets/binary.csv", "target": "y"},
            "architecture": {"hidden": [32]},
            "training": {"epochs": 15, "optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.01, "standardize": true}
        })),
    )
    .await;
    assert!(
        metric(&binary, "val_accuracy") > 0.9,
        "{:?}",
        binary.metrics
    );
    assert!(metric(&binary, "val_auc") > 0.95, "{:?}", binary.metrics);
    assert_eq!(
        binary.postprocess,
        Postprocess::Sigmoid {
            labels: Some(vec!["no".into(), "yes".into()])
        }
    );
    assert!(matches!(
        binary.preprocess,
        maas_core::Preprocess::Standardize { .. }
    ));

    let (_, multi) = succeed(
        &job,
        spec(json!({
            "model": "colours", "task": "multiclass",
            "dataset": {"key": "datasets/colours.csv", "target": "y"},
            "architecture": {"hidden": [32], "activation": "tanh"},
            "training": {"epochs": 15, "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 32}
        })),
    )
    .await;
    assert!(metric(&multi, "val_accuracy") > 0.85, "{:?}", multi.metrics);
    assert_eq!(
        multi.postprocess,
        Postprocess::Softmax {
            labels: Some(vec!["blue".into(), "green".into(), "red".into()])
        }
    );
    let loaded = maas_models::load(
        &Registry::new(store.clone()),
        &ModelName::new("colours").expect("name"),
        &VersionSelector::Default,
    )
    .await
    .expect("loads");
    let probs = loaded.predict_rows(vec![0.5; 8], 1).expect("predicts");
    assert_eq!(probs[0].len(), 3);
    assert!((probs[0].iter().sum::<f32>() - 1.0).abs() < 1e-4);
    let input = maas_engine::Tensor::new(
        loaded.inputs()[0].name.clone(),
        vec![1, 8],
        maas_engine::TensorData::F32(vec![0.5; 8]),
    )
    .expect("tensor");
    let answers = loaded.answer(vec![input], 1).expect("answers");
    let classified = answers.classified().expect("a classifier's answer");
    assert_eq!(
        classified.classes,
        ["blue", "green", "red"].map(|c| maas_engine::ClassLabel::Text(c.into()))
    );
    assert!(classified.classes.contains(&classified.labels[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_mid_way_resumes_to_the_same_weights_as_an_uninterrupted_run() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/r.csv",
        synthetic::csv(Target::Regression, 600, 20, 4),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let doc = |id: &str| {
        spec(json!({
            "job_id": id, "model": "resumed",
            "dataset": {"key": "datasets/r.csv", "target": "y"},
            "architecture": {"hidden": [16, 8], "dropout": 0.1},
            "training": {"epochs": 5, "batch_size": 32, "seed": 9}
        }))
    };
    let (_, straight) = succeed(&job, doc("straight")).await;

    // Stopped after 2 epochs (as a deadline or a crash would), then run again with the same id.
    let paused = job
        .run(
            doc("interrupted"),
            RunOptions {
                actor: "test".into(),
                max_epochs_this_run: Some(2),
                ..RunOptions::default()
            },
        )
        .await
        .expect("runs");
    let JobOutcome::Paused(status) = paused else {
        panic!("paused expected");
    };
    assert_eq!((status.state, status.epoch), (JobState::Paused, 2));
    store
        .head("jobs/interrupted/checkpoint/state.safetensors")
        .await
        .expect("checkpoint written");
    assert_eq!(
        Registry::new(store.clone())
            .complete_versions(&ModelName::new("resumed").expect("name"))
            .await
            .expect("versions")
            .len(),
        1,
        "a paused job writes no version"
    );
    let (status, resumed) = succeed(&job, doc("interrupted")).await;
    assert_eq!(status.history.len(), 5);
    assert_eq!(
        straight.artifacts["model.safetensors"].sha256,
        resumed.artifacts["model.safetensors"].sha256,
        "same spec and data give the same weights, bit for bit"
    );
    // Running a finished job again returns its version and trains nothing.
    let (_, again) = succeed(&job, doc("interrupted")).await;
    assert_eq!(again.version, resumed.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promotion_policy_moves_the_alias_only_for_a_better_version_and_records_both() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/r.csv",
        synthetic::csv(Target::Regression, 800, 10, 5),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let doc = |epochs: usize, lr: f64| {
        spec(json!({
            "model": "policy",
            "dataset": {"key": "datasets/r.csv", "target": "y"},
            "architecture": {"hidden": [16]},
            "training": {"epochs": epochs, "learning_rate": lr, "batch_size": 32},
            "promotion": {"alias": "production", "min_improvement": 0.001}
        }))
    };
    let (first_status, first) = succeed(&job, doc(20, 0.01)).await;
    assert!(first_status.promotion.as_ref().expect("decision").promoted);
    // A barely trained candidate does not beat it.
    let (second_status, second) = succeed(&job, doc(1, 0.0001)).await;
    let decision = second_status.promotion.expect("decision");
    assert!(!decision.promoted, "{decision:?}");
    let registry = Registry::new(store.clone());
    let model = ModelName::new("policy").expect("name");
    let alias = maas_core::AliasName::new("production").expect("alias");
    assert_eq!(
        registry
            .alias(&model, &alias)
            .await
            .expect("alias")
            .map(|a| a.version),
        Some(first.version)
    );
    let log = registry.audit_log(&model).await.expect("audit");
    let declined = log
        .iter()
        .find(|r| matches!(r.action, AuditAction::PromotionDeclined { .. }))
        .expect("the declined promotion is recorded");
    assert_eq!(
        declined.details["candidate"]["version"],
        json!(second.version)
    );
    assert!(declined.details["candidate"]["value"].is_f64());
    assert!(declined.details["current"]["value"].is_f64());
    assert!(
        declined
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("does not beat")
    );
    assert!(
        log.iter()
            .any(|r| matches!(r.action, AuditAction::AliasMoved { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_and_datasets_fail_clearly_and_leave_no_version() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/bad.csv",
        "a,b,y\n1,2,3\n1,,3\nx,2,3\n2,3,5\n3,4,7\n".into(),
    )
    .await;
    upload(
        &store,
        "datasets/ok.csv",
        synthetic::csv(Target::Regression, 50, 3, 6),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let fails = |doc: Value| {
        let job = job.clone();
        async move {
            job.run(spec(doc), options())
                .await
                .expect_err("must fail")
                .to_string()
        }
    };
    let err = fails(json!({"job_id": "bad-data", "model": "m", "dataset": {"key": "datasets/bad.csv", "target": "y"}})).await;
    assert!(err.contains("line 3, column \"b\": missing value"), "{err}");
    assert!(err.contains("bad_rows"), "{err}");
    let status = job
        .status("bad-data")
        .await
        .expect("status")
        .expect("exists");
    assert_eq!(status.state, JobState::Failed);
    assert!(status.reason.expect("reason").contains("missing value"));

    let err =
        fails(json!({"model": "m", "dataset": {"key": "datasets/missing.csv", "target": "y"}}))
            .await;
    assert!(err.contains("no dataset at"), "{err}");
    let err =
        fails(json!({"model": "m", "dataset": {"key": "datasets/ok.csv", "target": "price"}}))
            .await;
    assert!(err.contains("target column \"price\""), "{err}");
    let err = fails(json!({"model": "m", "dataset": {"key": "datasets/ok.csv", "target": "y"}, "training": {"learning_rate": 1e6, "epochs": 3}})).await;
    assert!(
        err.contains("diverged") || err.contains("not finite"),
        "{err}"
    );
    let err =
        fails(json!({"model": "m", "dataset": {"key": "../etc/passwd", "target": "y"}})).await;
    assert!(err.contains("dataset.key"), "{err}");
    assert!(
        Registry::new(store.clone())
            .models()
            .await
            .expect("models")
            .is_empty(),
        "no version was written"
    );
    // Dropping bad rows instead trains on the rest.
    let (_, m) = succeed(
        &job,
        spec(json!({"model": "m", "dataset": {"key": "datasets/bad.csv", "target": "y", "bad_rows": "drop"}, "architecture": {"hidden": [4]}, "training": {"epochs": 1, "validation_fraction": 0.5}})),
    )
    .await;
    assert_eq!(m.metrics["rows_dropped"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_too_close_pauses_before_the_first_epoch() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/ok.csv",
        synthetic::csv(Target::Regression, 50, 3, 7),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let outcome = job
        .run(
            spec(json!({"job_id": "late", "model": "m", "dataset": {"key": "datasets/ok.csv", "target": "y"}})),
            RunOptions {
                actor: "test".into(),
                deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(5)),
                ..RunOptions::default()
            },
        )
        .await
        .expect("runs");
    let JobOutcome::Paused(status) = outcome else {
        panic!("paused expected");
    };
    assert_eq!((status.state, status.epoch), (JobState::Paused, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_job_write_one_version_and_a_dead_runner_is_taken_over() {
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/r.csv",
        synthetic::csv(Target::Regression, 600, 10, 8),
    )
    .await;
    let job = TrainingJob::new(store.clone());
    let doc = |id: &str| {
        spec(json!({
            "job_id": id,
            "model": "once",
            "dataset": {"key": "datasets/r.csv", "target": "y"},
            "architecture": {"hidden": [16]},
            "training": {"epochs": 3, "batch_size": 32}
        }))
    };
    // Two runs of the same job at once (a redelivered event, a retried invocation): one holds
    // the lease and trains; the other finds it held and does nothing.
    let (a, b) = tokio::join!(
        job.run(doc("dup"), options()),
        job.run(doc("dup"), options())
    );
    let outcomes = [a.expect("first run"), b.expect("second run")];
    let succeeded = outcomes
        .iter()
        .filter(|o| matches!(o, JobOutcome::Succeeded { .. }))
        .count();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, JobOutcome::Busy(_)))
        .count();
    assert_eq!((succeeded, busy), (1, 1), "{outcomes:?}");
    let model = ModelName::new("once").expect("name");
    let registry = Registry::new(store.clone());
    assert_eq!(
        registry.complete_versions(&model).await.expect("v").len(),
        1
    );

    // A runner that died mid-job leaves status `running` with a lease that runs out; until
    // then a new run leaves it alone, afterwards it takes over and finishes from the checkpoint.
    let paused = job
        .run(
            doc("dead"),
            RunOptions {
                actor: "test".into(),
                max_epochs_this_run: Some(1),
                ..RunOptions::default()
            },
        )
        .await
        .expect("runs");
    let JobOutcome::Paused(mut status) = paused else {
        panic!("paused expected");
    };
    let now = time::OffsetDateTime::now_utc();
    status.state = JobState::Running;
    status.lease_expires_at = Some(now + time::Duration::minutes(5));
    upload(
        &store,
        "jobs/dead/status.json",
        serde_json::to_string(&status).expect("json"),
    )
    .await;
    let held = job.run(doc("dead"), options()).await.expect("runs");
    assert!(matches!(held, JobOutcome::Busy(_)), "{held:?}");
    status.lease_expires_at = Some(now - time::Duration::seconds(1));
    upload(
        &store,
        "jobs/dead/status.json",
        serde_json::to_string(&status).expect("json"),
    )
    .await;
    let (done, manifest) = succeed(&job, doc("dead")).await;
    assert_eq!(done.history.len(), 3);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(manifest.version.get(), 2);
}

/// Reruns a job the way Lambda's retries and a later invocation would: a run that finds the
/// job's lease held by a runner that died is let through once the lease has run out (here:
/// moved into the past, as time would).
async fn rerun_until_done(
    store: &SharedStore,
    job: &TrainingJob,
    doc: JobSpec,
) -> (maas_train::JobStatus, maas_core::Manifest) {
    for _ in 0..3 {
        match job
            .run(doc.clone(), options())
            .await
            .expect("the rerun runs")
        {
            JobOutcome::Succeeded { status, manifest } => return (status, *manifest),
            JobOutcome::Busy(mut status) => {
                status.lease_expires_at =
                    Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(1));
                let id = status.job_id.clone();
                upload(
                    store,
                    &format!("jobs/{id}/status.json"),
                    serde_json::to_string(&status).expect("json"),
                )
                .await;
            }
            JobOutcome::Paused(_) => {}
        }
    }
    panic!("the job did not finish in three reruns");
}

/// Regression: a promotion that failed after the version was written marked the job failed, and
/// the retry resumed the final checkpoint and wrote a second version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_promotion_and_its_retry_leave_one_version() {
    use maas_tests::faults::{Call, Fault, FaultyStore, Op};
    let (_dir, store) = store().await;
    upload(
        &store,
        "datasets/r.csv",
        synthetic::csv(Target::Regression, 300, 6, 2),
    )
    .await;
    let doc = spec(json!({
        "job_id": "promo-fails",
        "model": "once",
        "dataset": {"key": "datasets/r.csv", "target": "y"},
        "architecture": {"hidden": [8]},
        "training": {"epochs": 2, "batch_size": 32},
        "promotion": {"alias": "production"}
    }));
    // GIVEN a store that refuses the alias write
    let faulty = FaultyStore::new(
        store.clone(),
        Arc::new(|call: Call| {
            let hit = call.op == Op::Put && call.key.ends_with("aliases/production.json");
            Box::pin(async move { hit.then_some(Fault::Fail) })
        }),
    );
    let failed = TrainingJob::new(Arc::new(faulty))
        .run(doc.clone(), options())
        .await;
    assert!(failed.is_err(), "{failed:?}");
    let job = TrainingJob::new(store.clone());
    let status = job
        .status("promo-fails")
        .await
        .expect("status")
        .expect("exists");
    assert_eq!(status.state, JobState::Failed);
    let written = status
        .version
        .expect("the version is recorded in the failed status");
    // WHEN the job runs again
    let (done, manifest) = rerun_until_done(&store, &job, doc).await;
    // THEN it finishes with the same version, promoted, and no second one
    assert_eq!(manifest.version, written);
    assert_eq!(done.version, Some(written));
    assert!(done.promotion.expect("decision").promoted);
    let state = maas_tests::invariants::check_model(&store, "once")
        .await
        .expect("invariants");
    assert_eq!(state.versions, vec![written.get()]);
    assert_eq!(state.aliases["production"], written.get());
}

/// Storage faults through a whole job: a fault at every write in turn (the write fails, or
/// takes effect with its answer lost), then reruns. After each: one version per job, nothing
/// half-written, every version and alias move recorded, and the reruns finish the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_fault_at_any_write_ends_with_exactly_one_version() {
    use maas_tests::faults::{Fault, FaultyStore};
    let dataset = synthetic::csv(Target::Regression, 200, 5, 3);
    let doc = spec(json!({
        "job_id": "faulty",
        "model": "faulty",
        "dataset": {"key": "datasets/r.csv", "target": "y"},
        "architecture": {"hidden": [4]},
        "training": {"epochs": 2, "batch_size": 64},
        "promotion": {"alias": "production"}
    }));
    let counting = {
        let (_dir, store) = store().await;
        upload(&store, "datasets/r.csv", dataset.clone()).await;
        let counting = FaultyStore::counting(store.clone());
        succeed(&TrainingJob::new(Arc::new(counting.clone())), doc.clone()).await;
        counting.write_count()
    };
    assert!(counting >= 10, "a job makes {counting} writes");
    for k in 0..counting {
        for fault in [Fault::Fail, Fault::LoseResponse] {
            let (_dir, store) = store().await;
            upload(&store, "datasets/r.csv", dataset.clone()).await;
            let faulty = FaultyStore::at_write(store.clone(), k, fault);
            let first = TrainingJob::new(Arc::new(faulty))
                .run(doc.clone(), options())
                .await;
            maas_tests::invariants::check_model(&store, "faulty")
                .await
                .unwrap_or_else(|e| panic!("{fault:?} at write {k}: {e}"));
            let job = TrainingJob::new(store.clone());
            let (status, manifest) = rerun_until_done(&store, &job, doc.clone()).await;
            if let Ok(JobOutcome::Succeeded { manifest: m, .. }) = &first {
                assert_eq!(m.version, manifest.version, "{fault:?} at write {k}");
            }
            let state = maas_tests::invariants::check_model(&store, "faulty")
                .await
                .unwrap_or_else(|e| panic!("after the rerun ({fault:?} at write {k}): {e}"));
            assert_eq!(
                state.versions_by_job.get("faulty"),
                Some(&vec![manifest.version.get()]),
                "{fault:?} at write {k}"
            );
            assert_eq!(status.state, JobState::Succeeded);
            assert_eq!(
                state.aliases.get("production"),
                Some(&manifest.version.get()),
                "{fault:?} at write {k}"
            );
        }
    }
    eprintln!("training: {counting} writes, {} faulty runs", counting * 2);
}
