//! Storage faults: push, promote and alias resolution with a fault injected into every store call
//! in turn — a failure, a lost answer (the call took effect, the caller saw an error), a read cut
//! short — and after each, the registry's invariants hold and a retry completes.

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{AliasName, ManifestTemplate, ModelName, Version};
use maas_models::{PushRequest, push};
use maas_registry::{Registry, VersionSelector};
use maas_store::{MemoryStore, SharedStore};
use maas_tests::faults::{Fault, FaultyStore};
use maas_tests::fixtures::seed_file;
use maas_tests::invariants::check_model;

const FAULTS: [Fault; 3] = [Fault::Fail, Fault::LoseResponse, Fault::Truncate];

fn request(actor: &str) -> PushRequest {
    PushRequest {
        model: ModelName::new("seed").expect("name"),
        file_name: "model.onnx".into(),
        bytes: Bytes::from(seed_file("model.onnx")),
        template: ManifestTemplate::default(),
        actor: actor.into(),
        alias: Some(AliasName::new("production").expect("alias")),
        reason: Some("fault test".into()),
    }
}

/// How many store calls `op` makes on a fresh copy of the store `setup` builds.
async fn calls_of<S, F>(setup: &S, op: &F) -> usize
where
    S: AsyncFn() -> SharedStore,
    F: AsyncFn(SharedStore),
{
    let counting = FaultyStore::counting(setup().await);
    op(Arc::new(counting.clone())).await;
    counting.calls().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_a_fault_at_any_call_leaves_no_half_version_and_a_retry_succeeds() {
    let setup = async || -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
    };
    let op = async |store: SharedStore| {
        let _ = push(&Registry::new(store), request("faulty")).await;
    };
    let calls = calls_of(&setup, &op).await;
    assert!(calls >= 8, "a push makes {calls} calls");
    let mut tried = 0;
    for k in 0..calls {
        for fault in FAULTS {
            let store = setup().await;
            let faulty = FaultyStore::at_call(store.clone(), k, fault);
            let result = push(&Registry::new(Arc::new(faulty)), request("faulty")).await;
            let state = check_model(&store, "seed")
                .await
                .unwrap_or_else(|e| panic!("fault {fault:?} at call {k}: {e}"));
            if result.is_ok() {
                assert_eq!(state.versions.len(), 1, "{fault:?} at {k}");
            }
            // The retry (same request, no fault) finishes: production points at a version.
            let retried = push(&Registry::new(store.clone()), request("retry"))
                .await
                .unwrap_or_else(|e| panic!("retry after {fault:?} at {k}: {e}"));
            let state = check_model(&store, "seed")
                .await
                .unwrap_or_else(|e| panic!("after the retry ({fault:?} at {k}): {e}"));
            assert_eq!(
                state.aliases.get("production"),
                Some(&retried.manifest.version.get()),
                "{fault:?} at {k}"
            );
            tried += 1;
        }
    }
    eprintln!("push: {calls} calls, {tried} faulty runs");
}

async fn store_with_two_versions() -> SharedStore {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    push(&registry, request("setup")).await.expect("v1");
    let mut second = request("setup");
    second.alias = None;
    push(&registry, second).await.expect("v2");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_with_a_fault_at_any_call_moves_the_alias_with_its_record_or_not_at_all() {
    let model = ModelName::new("seed").expect("name");
    let production = AliasName::new("production").expect("alias");
    let v2 = Version::new(2).expect("2");
    let promote = async |store: SharedStore| {
        Registry::new(store)
            .set_alias(
                &model,
                &production,
                v2,
                "ana",
                Some("fault test".into()),
                serde_json::Value::Null,
            )
            .await
    };
    let calls = calls_of(&store_with_two_versions, &async |s| {
        promote(s).await.expect("clean promotion");
    })
    .await;
    for k in 0..calls {
        for fault in FAULTS {
            let store = store_with_two_versions().await;
            let faulty: SharedStore = Arc::new(FaultyStore::at_call(store.clone(), k, fault));
            let result = promote(faulty).await;
            let state = check_model(&store, "seed")
                .await
                .unwrap_or_else(|e| panic!("fault {fault:?} at call {k}: {e}"));
            let at = state.aliases["production"];
            assert!(at == 1 || at == 2, "{fault:?} at {k}: {at}");
            if result.is_ok() {
                assert_eq!(at, 2, "{fault:?} at {k}");
            }
            promote(store.clone())
                .await
                .unwrap_or_else(|e| panic!("retry after {fault:?} at {k}: {e}"));
            let state = check_model(&store, "seed").await.expect("after the retry");
            assert_eq!(state.aliases["production"], 2);
        }
    }
    eprintln!(
        "promote: {calls} calls, {} faulty runs",
        calls * FAULTS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_resolution_under_a_fault_errs_or_answers_right_never_wrong() {
    let store = store_with_two_versions().await;
    let model = ModelName::new("seed").expect("name");
    let selectors = [
        (VersionSelector::Default, 1),
        (VersionSelector::Alias("production".into()), 1),
        (VersionSelector::Alias("latest".into()), 2),
        (VersionSelector::Version(Version::new(2).expect("2")), 2),
    ];
    for (selector, expected) in selectors {
        let counting = FaultyStore::counting(store.clone());
        Registry::new(Arc::new(counting.clone()))
            .resolve(&model, &selector)
            .await
            .expect("clean");
        for k in 0..counting.calls().len() {
            for fault in FAULTS {
                let faulty: SharedStore = Arc::new(FaultyStore::at_call(store.clone(), k, fault));
                if let Ok(v) = Registry::new(faulty).resolve(&model, &selector).await {
                    assert_eq!(v.get(), expected, "{selector:?}, {fault:?} at {k}");
                }
            }
        }
    }
    // Nothing above wrote anything.
    assert_eq!(
        store
            .list("models/seed/aliases/")
            .await
            .expect("list")
            .len(),
        1
    );
}

/// Regression: listing models (`/v2/models`, `maas models`) listed every object under
/// `models/` — every audit record of every model — so it grew with history. It now costs the
/// same after a hundred alias moves as after none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_models_does_not_read_or_grow_with_the_audit_trail() {
    let store = store_with_two_versions().await;
    let registry = Registry::new(store.clone());
    let model = ModelName::new("seed").expect("name");
    let production = AliasName::new("production").expect("alias");
    let count_calls = async || {
        let counting = FaultyStore::counting(store.clone());
        let models = Registry::new(Arc::new(counting.clone()))
            .models()
            .await
            .expect("models");
        assert_eq!(models, std::slice::from_ref(&model));
        counting.calls()
    };
    let before = count_calls().await;
    for i in 0..100u64 {
        registry
            .set_alias(
                &model,
                &production,
                Version::new(1 + i % 2).expect("version"),
                "ana",
                None,
                serde_json::Value::Null,
            )
            .await
            .expect("move");
    }
    assert!(store.list("models/seed/audit/").await.expect("list").len() > 100);
    let after = count_calls().await;
    assert_eq!(before.len(), after.len(), "{after:?}");
    assert!(after.len() <= 3, "{after:?}");
    assert!(
        after.iter().all(|c| !c.key.contains("/audit/")),
        "{after:?}"
    );
}
