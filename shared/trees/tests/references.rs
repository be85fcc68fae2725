//! Every native booster fixture (made by XGBoost and LightGBM themselves; see
//! `tests/fixtures/tabular/make_fixtures.py`) against the library's own predictions, NaN rows
//! included.

use maas_trees::{Task, TreeModel};
use serde_json::Value;

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tabular")
        .join(name)
}

fn reference(name: &str) -> Value {
    let bytes = std::fs::read(fixture_dir(name).join("reference.json")).expect("reference");
    serde_json::from_slice(&bytes).expect("json")
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Null => vec![f64::NAN],
        other => vec![other.as_f64().expect("number")],
    }
}

fn inputs(doc: &Value) -> (Vec<f32>, usize) {
    let rows = doc["inputs"].as_array().expect("rows").len();
    (
        floats(&doc["inputs"])
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        rows,
    )
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tolerance = 1e-5 * w.abs().max(1.0);
        assert!(
            (f64::from(g) - w).abs() <= tolerance,
            "{what}: value {i}: {g} vs {w}"
        );
    }
}

/// Checks a model's answers on the fixture's rows against the library's.
fn check(name: &str, model: &TreeModel) {
    let doc = reference(name);
    let (x, rows) = inputs(&doc);
    let prediction = model.predict(&x, rows).expect("predicts");
    let library = &doc["library"];
    match model.task() {
        Task::Regression => {
            assert_close(&prediction.values, &floats(&library["predictions"]), name)
        }
        Task::Classification { .. } => {
            assert_close(&prediction.values, &floats(&library["probabilities"]), name);
            let labels: Vec<usize> = floats(&library["labels"])
                .iter()
                .map(|&v| v as usize)
                .collect();
            assert_eq!(
                prediction.classes.as_deref(),
                Some(&labels[..]),
                "{name}: labels"
            );
        }
    }
    let names: Vec<String> = doc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    assert_eq!(model.feature_names(), &names[..], "{name}: feature names");
}

#[test]
fn xgboost_json_and_ubjson_models_answer_as_xgboost_does() {
    for name in ["xgboost-regression", "xgboost-binary", "xgboost-multiclass"] {
        let dir = fixture_dir(name);
        let json =
            maas_trees::xgboost::from_json(&std::fs::read(dir.join("model.json")).expect("json"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, &json);
        let ubj =
            maas_trees::xgboost::from_ubjson(&std::fs::read(dir.join("model.ubj")).expect("ubj"))
                .unwrap_or_else(|e| panic!("{name} (ubj): {e}"));
        check(name, &ubj);
    }
}

#[test]
fn lightgbm_text_models_answer_as_lightgbm_does() {
    for name in [
        "lightgbm-regression",
        "lightgbm-binary",
        "lightgbm-multiclass",
    ] {
        let bytes = std::fs::read(fixture_dir(name).join("model.txt")).expect("txt");
        let model =
            maas_trees::lightgbm::from_text(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, &model);
    }
}
