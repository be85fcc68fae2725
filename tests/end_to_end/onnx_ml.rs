//! ONNX tree ensembles as the real exporters write them (skl2onnx, onnxmltools for XGBoost and
//! LightGBM), with their ZipMap, pushed, loaded back and served: every output against
//! onnxruntime's, NaN rows included; and every post transform and aggregate function on the same
//! trees (fixtures `onnx-*`, onnxruntime's outputs).

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_engine::{Tensor, TensorData};
use maas_models::{PushRequest, load, push};
use maas_registry::{Registry, VersionSelector};
use maas_store::LocalFsStore;
use maas_tests::fixtures::{strings, tabular_file, tabular_reference};

/// The tree-ensemble fixtures, by the exporter that made them.
const TREE_FIXTURES: &[&str] = &[
    "xgboost-regression",
    "xgboost-binary",
    "xgboost-multiclass",
    "lightgbm-regression",
    "lightgbm-binary",
    "lightgbm-multiclass",
    "sklearn-random-forest-regressor",
    "sklearn-random-forest-classifier",
    "sklearn-random-forest-binary",
    "sklearn-gradient-boosting-regressor",
    "sklearn-gradient-boosting-binary",
    "sklearn-gradient-boosting-multiclass",
    "sklearn-decision-tree-binary",
    "onnx-classifier-softmax",
    "onnx-classifier-softmax_zero",
    "onnx-classifier-logistic",
    "onnx-classifier-probit",
    "onnx-regressor-average",
    "onnx-regressor-min",
    "onnx-regressor-max",
    "onnx-regressor-probit",
    "onnx-regressor-as-tensor",
    "onnx-tree-ensemble-v5",
];

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: value {i}: {g} vs onnxruntime's {w}"
        );
    }
}

/// scikit-learn pipelines of preprocessing and linear models, through skl2onnx.
const PIPELINE_FIXTURES: &[&str] = &[
    "sklearn-scaler-logistic-binary",
    "sklearn-imputer-linear",
    "sklearn-normalizer-binarizer-logistic",
    "sklearn-onehot-logistic",
    "sklearn-scaler-logistic-multiclass",
];

#[tokio::test]
async fn exported_tree_ensembles_answer_as_onnxruntime_does() {
    compare_with_onnxruntime(TREE_FIXTURES, true).await;
}

#[tokio::test]
async fn exported_pipelines_answer_as_onnxruntime_does() {
    compare_with_onnxruntime(PIPELINE_FIXTURES, false).await;
}

/// Pushes each fixture's `model.onnx`, loads it back and compares every output with
/// onnxruntime's; `missing_values`: the graph takes NaN (the manifest must let it through).
async fn compare_with_onnxruntime(fixtures: &[&str], missing_values: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = Registry::new(Arc::new(LocalFsStore::open(dir.path()).expect("store")));
    for name in fixtures {
        let reference = tabular_reference(name);
        let loaded = pushed(&registry, name).await;
        if missing_values {
            assert!(
                loaded.manifest().allow_non_finite,
                "{name}: tree ensembles take NaN as missing"
            );
        }
        let input = &loaded.inputs()[0];
        let width = reference.features.len();
        let outputs = loaded
            .predict(vec![
                Tensor::new(
                    input.name.clone(),
                    vec![reference.rows(), width],
                    TensorData::F32(reference.inputs.clone()),
                )
                .expect("tensor"),
            ])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            outputs.len(),
            reference.onnxruntime.len(),
            "{name}: every output the graph declares"
        );
        for (output_name, want) in &reference.onnxruntime {
            let got = outputs
                .iter()
                .find(|t| &t.name == output_name)
                .unwrap_or_else(|| panic!("{name}: no output {output_name}"));
            let values: Vec<f64> = match &got.data {
                TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
                TensorData::Bytes(labels) => {
                    let want = strings(&reference.raw["onnxruntime"][output_name]);
                    assert_eq!(labels, &want, "{name}/{output_name}: string labels");
                    continue;
                }
                other => other.to_f32_vec().into_iter().map(f64::from).collect(),
            };
            assert_close(&values, want, &format!("{name}/{output_name}"));
        }
    }
}

async fn pushed(registry: &Registry, name: &str) -> maas_engine::LoadedModel {
    let model = ModelName::new(name).expect("name");
    push(
        registry,
        PushRequest {
            model: model.clone(),
            file_name: "model.onnx".into(),
            bytes: Bytes::from(tabular_file(name, "model.onnx")),
            template: ManifestTemplate::default(),
            actor: "tester".into(),
            alias: None,
            reason: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    load(registry, &model, &VersionSelector::Default)
        .await
        .expect("loads")
}

fn onnxruntime_output<'a>(
    reference: &'a maas_tests::fixtures::TabularReference,
    output: &str,
) -> &'a [f64] {
    &reference
        .onnxruntime
        .iter()
        .find(|(name, _)| name == output)
        .unwrap_or_else(|| panic!("onnxruntime output {output}"))
        .1
}

/// An integer `Imputer`, a `LabelEncoder` and a `OneHotEncoder` on integer codes (unknown codes
/// included), against onnxruntime.
#[tokio::test]
async fn integer_encoders_answer_as_onnxruntime_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = Registry::new(Arc::new(LocalFsStore::open(dir.path()).expect("store")));
    let model = pushed(&registry, "onnx-encoders").await;
    let reference = tabular_reference("onnx-encoders");
    let codes: Vec<i64> = reference.inputs.iter().map(|&c| c as i64).collect();
    let rows = codes.len();
    let outputs = model
        .predict(vec![
            Tensor::new("code", vec![rows, 1], TensorData::I64(codes)).expect("tensor"),
        ])
        .expect("predicts");
    for output in ["imputed", "score", "onehot"] {
        let got = outputs
            .iter()
            .find(|t| t.name == output)
            .unwrap_or_else(|| panic!("output {output}"));
        let values: Vec<f64> = match &got.data {
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            other => other.to_f32_vec().into_iter().map(f64::from).collect(),
        };
        assert_close(&values, onnxruntime_output(&reference, output), output);
    }
}

/// A pipeline exported with one input per column (three FP32 columns, an INT64 plan id that
/// is one-hot encoded, an unseen plan in the probe) answers as onnxruntime does, string labels
/// included.
#[tokio::test]
async fn a_graph_with_several_inputs_answers_as_onnxruntime_does() {
    compare_one_input_per_column(
        "sklearn-several-inputs",
        &[
            ("tenure", false),
            ("spend", false),
            ("calls", false),
            ("plan", true),
        ],
    )
    .await;
}

/// A pipeline fitted on a DataFrame and exported from it as skl2onnx does by default: one input
/// per column, joined by a `FeatureVectorizer`.
#[tokio::test]
async fn a_pipeline_exported_from_a_dataframe_answers_as_onnxruntime_does() {
    compare_one_input_per_column(
        "sklearn-dataframe-pipeline",
        &[("tenure", false), ("spend", false), ("calls", true)],
    )
    .await;
}

/// Pushes `fixture`, feeds each of `columns` (name, integer?) as its own `[rows, 1]` input, in
/// reverse order (inputs are matched by name), and compares labels, classes and
/// probabilities with onnxruntime's and the library's.
async fn compare_one_input_per_column(fixture: &str, columns: &[(&str, bool)]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = Registry::new(Arc::new(LocalFsStore::open(dir.path()).expect("store")));
    let model = pushed(&registry, fixture).await;
    let reference = tabular_reference(fixture);
    let rows = reference.rows();
    let width = columns.len();
    let mut inputs: Vec<Tensor> = columns
        .iter()
        .enumerate()
        .map(|(j, (name, integer))| {
            let values = (0..rows).map(|r| reference.inputs[r * width + j]);
            let data = if *integer {
                TensorData::I64(values.map(|v| v as i64).collect())
            } else {
                TensorData::F32(values.collect())
            };
            Tensor::new(*name, vec![rows, 1], data).expect("tensor")
        })
        .collect();
    inputs.reverse();
    let answers = model.answer(inputs, rows).expect("answers");
    let classified = answers.classified().expect("a classifier");
    let labels: Vec<String> = classified.labels.iter().map(ToString::to_string).collect();
    assert_eq!(
        labels,
        strings(&reference.raw["onnxruntime"]["output_label"])
    );
    assert_eq!(labels, strings(&reference.raw["library"]["labels"]));
    let classes: Vec<String> = classified.classes.iter().map(ToString::to_string).collect();
    assert_eq!(classes, strings(&reference.raw["library"]["classes"]));
    let probabilities: Vec<f64> = classified
        .probabilities
        .iter()
        .map(|&p| f64::from(p))
        .collect();
    assert_close(
        &probabilities,
        onnxruntime_output(&reference, "output_probability"),
        &format!("{fixture}: probabilities"),
    );
}
