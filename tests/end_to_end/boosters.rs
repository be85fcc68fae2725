//! XGBoost and LightGBM boosters pushed as their own files, loaded back from the registry and
//! served through `LoadedModel`, as every request and batch row is: the answers of the libraries
//! themselves (NaN rows included, which these models take as missing values), the feature names
//! from the file in the manifest, and the pickle a scikit-learn user has refused with the command
//! that exports it.

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelFormat, ModelName};
use maas_engine::{Tensor, TensorData};
use maas_models::{PushRequest, load, push};
use maas_registry::{Registry, VersionSelector};
use maas_store::{LocalFsStore, ObjectStore};
use maas_tests::fixtures::{TabularReference, tabular_file, tabular_reference};

fn request(model: &str, file_name: &str, bytes: Vec<u8>) -> PushRequest {
    PushRequest {
        model: ModelName::new(model).expect("valid"),
        file_name: file_name.into(),
        bytes: Bytes::from(bytes),
        template: ManifestTemplate::default(),
        actor: "tester".into(),
        alias: None,
        reason: None,
    }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: value {i}: {g} vs {w}"
        );
    }
}

/// Pushes `file` of fixture `name`, loads it back and checks every output against the library.
async fn push_load_and_compare(registry: &Registry, name: &str, file: &str, format: ModelFormat) {
    let reference: TabularReference = tabular_reference(name);
    let pushed = push(registry, request(name, file, tabular_file(name, file)))
        .await
        .unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
    let manifest = &pushed.manifest;
    assert_eq!(manifest.format, format, "{name}/{file}");
    assert_eq!(
        manifest.features.as_ref(),
        Some(&reference.features),
        "{name}: features"
    );
    assert!(manifest.allow_non_finite, "{name}: NaN is a missing value");
    let model = ModelName::new(name).expect("name");
    let loaded = load(
        registry,
        &model,
        &VersionSelector::Version(manifest.version),
    )
    .await
    .expect("loads");
    assert_eq!(loaded.executor(), "trees");
    let rows = reference.rows();
    let input = Tensor::new(
        "input",
        vec![rows, reference.features.len()],
        TensorData::F32(reference.inputs.clone()),
    )
    .expect("tensor");
    let outputs = loaded.predict(vec![input]).expect("predicts");
    match &reference.probabilities {
        Some(probabilities) => {
            assert_eq!(outputs.len(), 2, "{name}: label and probabilities");
            assert_eq!(outputs[0].name, "label");
            let TensorData::I64(labels) = &outputs[0].data else {
                panic!("{name}: INT64 labels");
            };
            let want: Vec<i64> = reference.labels.iter().map(|&l| l as i64).collect();
            assert_eq!(labels, &want, "{name}: labels");
            assert_eq!(outputs[1].name, "probabilities");
            assert_close(&outputs[1].data.to_f32_vec(), probabilities, name);
        }
        None => {
            assert_eq!(outputs.len(), 1);
            assert_close(&outputs[0].data.to_f32_vec(), &reference.predictions, name);
        }
    }
}

#[tokio::test]
async fn boosters_pushed_as_their_own_files_answer_as_their_libraries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    let registry = Registry::new(store);
    for name in ["xgboost-regression", "xgboost-binary", "xgboost-multiclass"] {
        push_load_and_compare(&registry, name, "model.json", ModelFormat::XgboostJson).await;
        push_load_and_compare(&registry, name, "model.ubj", ModelFormat::XgboostUbj).await;
    }
    for name in [
        "lightgbm-regression",
        "lightgbm-binary",
        "lightgbm-multiclass",
    ] {
        push_load_and_compare(&registry, name, "model.txt", ModelFormat::LightgbmText).await;
    }
}

#[tokio::test]
async fn damaged_boosters_and_scikit_learn_pickles_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    let registry = Registry::new(store.clone());
    let json = tabular_file("xgboost-binary", "model.json");
    let text = tabular_file("lightgbm-binary", "model.txt");
    let ubj = tabular_file("xgboost-binary", "model.ubj");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("model.json", json[..json.len() / 2].to_vec(), &["xgboost"]),
        ("model.txt", text[..text.len() / 2].to_vec(), &["truncated"]),
        ("model.ubj", ubj[..ubj.len() - 9].to_vec(), &["ubjson"]),
        (
            "model.json",
            String::from_utf8(json.clone())
                .expect("utf-8")
                .replace("binary:logistic", "binary:hinge")
                .into_bytes(),
            &["objective \"binary:hinge\"", "supported"],
        ),
        (
            "model.joblib",
            tabular_file("sklearn-scaler-logistic-binary", "model.joblib"),
            &["pickle", "skl2onnx", "to_onnx"],
        ),
    ];
    for (file, bytes, expected) in cases {
        let err = push(&registry, request("refused", file, bytes))
            .await
            .expect_err("refused")
            .to_string();
        for fragment in expected {
            assert!(
                err.to_lowercase().contains(&fragment.to_lowercase()),
                "{file}: {err:?} lacks {fragment:?}"
            );
        }
    }
    assert!(
        store.list("").await.expect("list").is_empty(),
        "nothing written"
    );
}
