//! Loading versions back from the registry: a changed artifact never serves, whatever the engine
//! makes of its bytes; an intact one predicts what PyTorch predicted.

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_engine::LoadedModel;
use maas_models::{ModelsError, PushRequest, load, push};
use maas_registry::{Registry, RegistryError, VersionSelector};
use maas_store::{MemoryStore, ObjectStore, PutCondition};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seed-mlp")
        .join(name);
    std::fs::read(path).expect("seed fixture")
}

/// PyTorch's inputs (8 × 1000) and outputs for the seed model.
fn reference() -> (Vec<f32>, Vec<f32>) {
    let doc: serde_json::Value =
        serde_json::from_slice(&fixture("reference.json")).expect("reference json");
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .flat_map(|x| match x.as_array() {
                Some(row) => row
                    .iter()
                    .map(|v| v.as_f64().expect("number") as f32)
                    .collect(),
                None => vec![x.as_f64().expect("number") as f32],
            })
            .collect()
    };
    (floats(&doc["inputs"]), floats(&doc["outputs"]))
}

fn request(model: &str, bytes: &[u8]) -> PushRequest {
    PushRequest {
        model: ModelName::new(model).expect("name"),
        file_name: "model.onnx".into(),
        bytes: Bytes::from(bytes.to_vec()),
        template: ManifestTemplate::default(),
        actor: "test".into(),
        alias: None,
        reason: None,
    }
}

/// A version whose artifact changed after the push, in ways that still parse (one weight) and
/// that don't (truncated), with the engine building from the bytes while the checksum is
/// computed beside it.
#[tokio::test]
async fn a_load_reports_a_corrupted_artifact_even_though_the_build_ran_beside_the_check() {
    let store = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    let bytes = fixture("model.onnx");
    for name in ["flipped", "truncated", "intact"] {
        push(&registry, request(name, &bytes)).await.expect("push");
    }
    let manifest = registry
        .manifest(
            &ModelName::new("intact").expect("name"),
            maas_core::Version::FIRST,
        )
        .await
        .expect("manifest");
    let mut flipped = bytes.clone();
    // The middle of the file is the first layer's weights (2 of its 2.2 MB): it still parses.
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    assert!(LoadedModel::from_artifact(manifest, &flipped).is_ok());
    let truncated = bytes[..bytes.len() / 4].to_vec();
    for (name, body) in [("flipped", flipped), ("truncated", truncated)] {
        store
            .put(
                &format!("models/{name}/versions/1/model.onnx"),
                Bytes::from(body),
                PutCondition::None,
            )
            .await
            .expect("overwrite");
        let model = ModelName::new(name).expect("name");
        let err = load(&registry, &model, &VersionSelector::Default)
            .await
            .expect_err("a changed artifact must not load");
        assert!(
            matches!(
                err,
                ModelsError::Registry(RegistryError::CorruptArtifact { .. })
            ),
            "{name}: {err}"
        );
    }
    let model = ModelName::new("intact").expect("name");
    let loaded = load(&registry, &model, &VersionSelector::Default)
        .await
        .expect("loads");
    assert!(
        loaded.timings().fetch_ms > 0.0,
        "the fetch time is recorded"
    );
    let (inputs, outputs) = reference();
    let got: Vec<f32> = loaded
        .predict_rows(inputs, 8)
        .expect("predicts")
        .into_iter()
        .map(|row| row[0])
        .collect();
    assert_eq!(got.len(), outputs.len());
    for (i, (g, w)) in got.iter().zip(&outputs).enumerate() {
        assert!((g - w).abs() <= 1e-4, "row {i}: {g} vs {w}");
    }
}

/// A push that the engine refuses writes nothing; an unknown model is the registry's not-found.
#[tokio::test]
async fn a_refused_push_writes_nothing_and_unknown_models_are_not_found() {
    let store = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    let err = push(&registry, request("broken", b"not a model at all"))
        .await
        .expect_err("refused");
    assert!(matches!(err, ModelsError::Engine(_)), "{err}");
    assert!(store.list("").await.expect("list").is_empty());
    let err = load(
        &registry,
        &ModelName::new("absent").expect("name"),
        &VersionSelector::Default,
    )
    .await
    .expect_err("absent");
    assert!(
        matches!(
            err,
            ModelsError::Registry(RegistryError::ModelNotFound { .. })
        ),
        "{err}"
    );
}
