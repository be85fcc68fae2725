//! Both engines reproduce PyTorch on the seed fixture: the same MLP as ONNX (tract) and as
//! safetensors (candle), against PyTorch's own float32 outputs, within 1e-4.

use std::collections::BTreeMap;

use maas_core::{Activation, Architecture, ManifestTemplate, ModelFormat};
use maas_engine::{LoadedModel, Tensor, TensorData, inspect};
use maas_tests::fixtures::{
    assert_matches_reference, onnx_graph, seed_file, seed_reference, seed_safetensors_renamed,
};

const TOLERANCE: f32 = 1e-4;

/// Inspects a file like `maas push` does and builds the engine serving would build.
fn load(file_name: &str, bytes: &[u8]) -> LoadedModel {
    let template = ManifestTemplate::default();
    let inspected = inspect(file_name, bytes, &template).expect("the fixture is servable");
    let manifest = maas_core::Manifest {
        manifest_version: maas_core::FORMAT_VERSION,
        name: maas_core::ModelName::new("seed").expect("valid"),
        version: maas_core::Version::FIRST,
        format: inspected.format,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        created_by: "test".into(),
        artifacts: BTreeMap::new(),
        inputs: inspected.inputs,
        outputs: inspected.outputs,
        features: None,
        architecture: inspected.architecture,
        preprocess: Default::default(),
        postprocess: Default::default(),
        allow_non_finite: false,
        card: Default::default(),
        lineage: maas_core::Lineage::Pushed {
            file_name: file_name.into(),
            sha256: String::new(),
            parent_version: None,
            code_version: "test".into(),
        },
        metrics: BTreeMap::new(),
    };
    LoadedModel::from_artifact(manifest, bytes).expect("engine builds")
}

fn reference_batch() -> (Vec<f32>, usize) {
    let reference = seed_reference();
    let rows = reference.inputs.len();
    (reference.inputs.into_iter().flatten().collect(), rows)
}

fn predict_all(model: &LoadedModel) -> Vec<f32> {
    let (values, rows) = reference_batch();
    model
        .predict_rows(values, rows)
        .expect("prediction")
        .into_iter()
        .map(|row| row[0])
        .collect()
}

fn predict_one_by_one(model: &LoadedModel) -> Vec<f32> {
    seed_reference()
        .inputs
        .into_iter()
        .map(|row| model.predict_rows(row, 1).expect("single row")[0][0])
        .collect()
}

#[test]
fn onnx_through_tract_matches_pytorch() {
    let model = load("model.onnx", &seed_file("model.onnx"));
    assert_eq!(model.manifest().format, ModelFormat::Onnx);
    let input = &model.inputs()[0];
    assert_eq!(input.shape, vec![-1, 1000], "symbolic batch, 1000 features");
    assert_eq!(model.outputs()[0].shape, vec![-1, 1]);
    assert_matches_reference(&predict_all(&model), TOLERANCE);
    assert_matches_reference(&predict_one_by_one(&model), TOLERANCE);
}

#[test]
fn safetensors_through_candle_matches_pytorch_with_an_inferred_architecture() {
    let model = load("model.safetensors", &seed_file("model.safetensors"));
    let Some(Architecture::Mlp { layers, inferred }) = &model.manifest().architecture else {
        panic!("an MLP architecture is recorded");
    };
    assert!(inferred, "recorded as inferred");
    let summary: Vec<(&str, usize, usize, Activation)> = layers
        .iter()
        .map(|l| (l.name.as_str(), l.in_features, l.out_features, l.activation))
        .collect();
    assert_eq!(
        summary,
        [
            ("layer1", 1000, 500, Activation::Relu),
            ("layer2", 500, 100, Activation::Relu),
            ("layer3", 100, 1, Activation::None),
        ]
    );
    assert_matches_reference(&predict_all(&model), TOLERANCE);
    assert_matches_reference(&predict_one_by_one(&model), TOLERANCE);
}

#[test]
fn sequential_state_dict_names_load_the_same_network() {
    // nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) saves its layers as 0, 2 and 4.
    let renamed = seed_safetensors_renamed(&[("layer1", "0"), ("layer2", "2"), ("layer3", "4")]);
    let model = load("sequential.safetensors", &renamed);
    let Some(Architecture::Mlp { layers, .. }) = &model.manifest().architecture else {
        panic!("an MLP architecture is recorded");
    };
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0", "2", "4"]);
    assert_matches_reference(&predict_all(&model), TOLERANCE);
}

#[test]
fn wrong_shapes_and_non_finite_inputs_are_refused_with_the_expected_shape() {
    let model = load("model.onnx", &seed_file("model.onnx"));
    let short =
        Tensor::new("input", vec![1, 999], TensorData::F32(vec![0.0; 999])).expect("tensor");
    let err = model
        .predict(vec![short])
        .expect_err("999 features")
        .to_string();
    assert!(
        err.contains("[-1, 1000]"),
        "names the expected shape: {err}"
    );

    let mut row = vec![0.0f32; 1000];
    row[17] = f32::NAN;
    let err = model.predict_rows(row, 1).expect_err("NaN").to_string();
    assert!(err.contains("NaN") && err.contains("column 17"), "{err}");

    // Integer and double inputs are converted to the model's FP32.
    let ints = Tensor::new("input", vec![1, 1000], TensorData::I64(vec![0; 1000])).expect("tensor");
    assert!(model.predict(vec![ints]).is_ok());
}

#[test]
fn onnx_exported_with_a_fixed_batch_serves_any_batch_size() {
    // torch.onnx.export without dynamic_axes pins the batch to the example's size (here 1).
    let model = load("fixed.onnx", &onnx_graph(&["Relu"], &["1", "3"]));
    assert_eq!(
        model.inputs()[0].shape,
        vec![-1, 3],
        "the batch became symbolic"
    );
    let out = model
        .predict_rows(
            vec![
                -1.0, 2.0, -3.0, 4.0, -5.0, 6.0, 0.5, -0.5, 7.0, 1.0, 1.0, -1.0,
            ],
            4,
        )
        .expect("four rows through a batch-1 export");
    assert_eq!(
        out,
        vec![
            vec![0.0, 2.0, 0.0],
            vec![4.0, 0.0, 6.0],
            vec![0.5, 0.0, 7.0],
            vec![1.0, 1.0, 0.0]
        ]
    );
}

/// Regression: tract errors caused by the input's values (an id outside an embedding table)
/// were internal errors (HTTP 500); they are the caller's (400), and the model keeps serving.
#[test]
fn an_out_of_range_index_is_a_bad_input_not_an_engine_failure() {
    use maas_tests::fixtures::onnx_embedding;
    let model = load("embedding.onnx", &onnx_embedding());
    let ids = |values: Vec<i64>| {
        let rows = values.len() / 3;
        vec![Tensor::new("ids", vec![rows, 3], TensorData::I64(values)).expect("tensor")]
    };
    let good = model
        .predict(ids(vec![0, 1, 9, 2, 2, 2]))
        .expect("ids in range");
    assert_eq!(good[0].shape, vec![2, 3, 4]);
    for bad in [vec![0, 10, 1], vec![-11, 0, 0], vec![i64::MAX, 0, 0]] {
        let err = model
            .predict(ids(bad.clone()))
            .expect_err("an id outside the table");
        assert!(
            matches!(err, maas_engine::EngineError::InvalidInput { .. }),
            "{bad:?}: {err:?}"
        );
    }
    // The model still answers afterwards.
    model.predict(ids(vec![3, 4, 5])).expect("still serving");
}
