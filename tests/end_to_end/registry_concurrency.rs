//! Concurrent pushes and promotions never collide: against the local store, and against S3
//! (moto, which arbitrates conditional writes like S3 does).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use maas_core::{AliasName, AuditAction, ManifestTemplate, ModelName, Version};
use maas_models::{PushRequest, push};
use maas_registry::Registry;
use maas_store::{LocalFsStore, SharedStore};
use maas_tests::MotoServer;
use maas_tests::fixtures::seed_file;

const WRITERS: usize = 8;

async fn concurrent_pushes_get_distinct_versions(store: SharedStore) {
    let registry = Registry::new(store);
    let model = ModelName::new("seed").expect("valid");
    let onnx = Bytes::from(seed_file("model.onnx"));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let registry = registry.clone();
        let model = model.clone();
        let onnx = onnx.clone();
        tasks.push(tokio::spawn(async move {
            push(
                &registry,
                PushRequest {
                    model,
                    file_name: "model.onnx".into(),
                    bytes: onnx,
                    template: ManifestTemplate::default(),
                    actor: format!("writer-{w}"),
                    alias: None,
                    reason: None,
                },
            )
            .await
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        let outcome = task.await.expect("task").expect("push");
        assert!(
            versions.insert(outcome.manifest.version),
            "duplicate version"
        );
    }
    let expected: BTreeSet<Version> = (1..=WRITERS as u64)
        .map(|v| Version::new(v).expect("positive"))
        .collect();
    assert_eq!(versions, expected, "versions 1..={WRITERS}, each once");
    assert_eq!(
        registry
            .complete_versions(&model)
            .await
            .expect("list")
            .len(),
        WRITERS
    );
    // Each version's manifest names the writer that created it, and its artifact verifies.
    for v in &versions {
        let manifest = registry.manifest(&model, *v).await.expect("manifest");
        assert!(manifest.created_by.starts_with("writer-"));
        registry
            .artifact(&manifest, "model.onnx")
            .await
            .expect("artifact checksum");
    }

    // Concurrent promotions: every move is recorded, none lost, and the alias ends on a real version.
    let alias = AliasName::new("production").expect("valid");
    let mut tasks = Vec::new();
    for v in versions.iter().copied() {
        let registry = registry.clone();
        let model = model.clone();
        let alias = alias.clone();
        tasks.push(tokio::spawn(async move {
            registry
                .set_alias(
                    &model,
                    &alias,
                    v,
                    "promoter",
                    Some(format!("to {v}")),
                    serde_json::Value::Null,
                )
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("promotion");
    }
    let log = registry.audit_log(&model).await.expect("audit");
    // Every move writes its record first; a writer that lost the race leaves its record marked
    // not applied. The applied ones are the moves that happened.
    let moves: Vec<(Option<Version>, Version)> = log
        .iter()
        .filter(|r| r.applied == Some(true))
        .filter_map(|r| match &r.action {
            AuditAction::AliasMoved { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    let trail: Vec<String> = log
        .iter()
        .filter_map(|r| match &r.action {
            AuditAction::AliasMoved {
                from, to, replaces, ..
            } => Some(format!(
                "{} {:?}->{} replaces {:?} applied {:?}",
                r.id, from, to, replaces, r.applied
            )),
            _ => None,
        })
        .collect();
    let current = registry.alias(&model, &alias).await.expect("alias");
    assert_eq!(
        moves.len(),
        WRITERS,
        "one applied move per promotion; alias {current:?}, trail {trail:#?}"
    );
    // The moves form one chain: each starts where another ended (CAS lost no update).
    let froms: BTreeSet<Option<Version>> = moves.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        froms.len(),
        WRITERS,
        "no two moves started from the same state"
    );
    let final_version = registry
        .alias(&model, &alias)
        .await
        .expect("alias")
        .expect("exists")
        .version;
    // The alias ends where the last move in the chain went: the one target no move started from.
    let dangling: Vec<Version> = moves
        .iter()
        .map(|(_, to)| *to)
        .filter(|to| !froms.contains(&Some(*to)))
        .collect();
    assert_eq!(dangling, vec![final_version]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_concurrent_pushes_and_promotions() {
    let dir = tempfile::tempdir().expect("temp dir");
    concurrent_pushes_get_distinct_versions(Arc::new(
        LocalFsStore::open(dir.path()).expect("store"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_pushes_and_promotions() {
    let moto = MotoServer::start("registry").await;
    concurrent_pushes_get_distinct_versions(moto.store("maas")).await;
}
