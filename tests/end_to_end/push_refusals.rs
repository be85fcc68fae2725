//! Every file a push must refuse is refused with a message that says what to do, and a refused
//! push leaves the registry exactly as it was.

use std::sync::Arc;

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_models::{PushRequest, push};
use maas_registry::Registry;
use maas_store::{LocalFsStore, ObjectStore};
use maas_tests::fixtures::{onnx_with_ops, safetensors_file, seed_file};
use safetensors::Dtype;

struct Bench {
    _dir: tempfile::TempDir,
    store: Arc<LocalFsStore>,
    registry: Registry,
}

async fn bench_with_one_version() -> Bench {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(LocalFsStore::open(dir.path()).expect("store"));
    let registry = Registry::new(store.clone());
    let bench = Bench {
        _dir: dir,
        store,
        registry,
    };
    push(
        &bench.registry,
        request("seed", "model.onnx", seed_file("model.onnx")),
    )
    .await
    .expect("a good push");
    bench
}

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

async fn snapshot(store: &LocalFsStore) -> Vec<(String, u64)> {
    store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect()
}

/// GIVEN a registry with one version, WHEN `file` is pushed, THEN the push fails with a message
/// containing every `expected` fragment and the registry is byte-for-byte unchanged.
async fn assert_refused(file_name: &str, bytes: Vec<u8>, expected: &[&str]) {
    let bench = bench_with_one_version().await;
    let before = snapshot(&bench.store).await;
    let err = push(&bench.registry, request("seed", file_name, bytes))
        .await
        .expect_err("must be refused")
        .to_string();
    for fragment in expected {
        assert!(
            err.to_lowercase().contains(&fragment.to_lowercase()),
            "{file_name}: message {err:?} lacks {fragment:?}"
        );
    }
    assert_eq!(
        snapshot(&bench.store).await,
        before,
        "{file_name}: registry unchanged"
    );
}

#[tokio::test]
async fn pytorch_pickle_is_refused_and_never_unpickled() {
    assert_refused(
        "model.pt",
        seed_file("model.pt"),
        &["pickle", "export safetensors or onnx"],
    )
    .await;
    // Renaming doesn't help: the content is recognised.
    assert_refused(
        "model.onnx",
        seed_file("model.pt"),
        &["pickle", "export safetensors or onnx"],
    )
    .await;
    // A raw protocol-2+ pickle stream.
    let mut raw = vec![0x80, 0x04, 0x95];
    raw.extend_from_slice(&[0u8; 64]);
    assert_refused("weights.bin", raw, &["pickle"]).await;
}

#[tokio::test]
async fn unsupported_onnx_operators_are_named() {
    assert_refused(
        "det.onnx",
        onnx_with_ops(&["Det", "Unique", "Relu"]),
        &["Det", "Unique", "re-export"],
    )
    .await;
}

/// A tabular fixture's graph with `change` applied to it.
fn edited_fixture(fixture: &str, change: impl FnOnce(&mut tract_onnx::pb::GraphProto)) -> Vec<u8> {
    let bytes = maas_tests::fixtures::tabular_file(fixture, "model.onnx");
    let mut model: tract_onnx::pb::ModelProto =
        prost::Message::decode(&bytes[..]).expect("fixture decodes");
    change(model.graph.as_mut().expect("graph"));
    prost::Message::encode_to_vec(&model)
}

#[tokio::test]
async fn unsupported_onnx_ml_operators_are_named_with_the_export_that_avoids_them() {
    let svm = edited_fixture("onnx-encoders", |graph| {
        graph.node[1].op_type = "SVMClassifier".into();
    });
    assert_refused(
        "svm.onnx",
        svm,
        &["ai.onnx.ml.SVMClassifier", "LinearSVC", "tree ensemble"],
    )
    .await;
    let dicts = edited_fixture("onnx-encoders", |graph| {
        graph.node[1].op_type = "DictVectorizer".into();
    });
    assert_refused(
        "dicts.onnx",
        dicts,
        &["ai.onnx.ml.DictVectorizer", "float array", "initial_types"],
    )
    .await;
    // An opset-5 TreeEnsemble splitting on set membership.
    let member = edited_fixture("onnx-tree-ensemble-v5", |graph| {
        let node = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "TreeEnsemble")
            .expect("TreeEnsemble");
        let modes = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "nodes_modes")
            .and_then(|a| a.t.as_mut())
            .expect("nodes_modes tensor");
        modes.raw_data[0] = 6;
    });
    assert_refused(
        "member.onnx",
        member,
        &["set membership", "TreeEnsembleRegressor", "opset 3"],
    )
    .await;
}

#[tokio::test]
async fn truncated_files_are_refused() {
    let onnx = seed_file("model.onnx");
    assert_refused(
        "model.onnx",
        onnx[..onnx.len() / 2].to_vec(),
        &["truncated", "export it again"],
    )
    .await;
    let st = seed_file("model.safetensors");
    assert_refused(
        "model.safetensors",
        st[..st.len() - 100].to_vec(),
        &["truncated"],
    )
    .await;
    assert_refused("model.safetensors", st[..40].to_vec(), &["truncated"]).await;
    assert_refused("empty.onnx", Vec::new(), &["empty"]).await;
}

#[tokio::test]
async fn corrupted_files_are_refused() {
    let mut st = seed_file("model.safetensors");
    st[9..14].copy_from_slice(b"\x00\xff\x00\xff\x00");
    assert_refused("model.safetensors", st, &["corrupted"]).await;
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_refused(
        "noise.bin",
        noise,
        &["neither an onnx model nor a safetensors file"],
    )
    .await;
}

#[tokio::test]
async fn safetensors_whose_shapes_do_not_chain_are_refused() {
    let file = safetensors_file(&[
        ("layer1.weight", Dtype::F32, vec![8, 4]),
        ("layer1.bias", Dtype::F32, vec![8]),
        ("layer2.weight", Dtype::F32, vec![1, 7]),
        ("layer2.bias", Dtype::F32, vec![1]),
    ]);
    assert_refused(
        "bad.safetensors",
        file,
        &["don't chain", "layer1", "layer2"],
    )
    .await;
    let bad_bias = safetensors_file(&[
        ("fc.weight", Dtype::F32, vec![3, 4]),
        ("fc.bias", Dtype::F32, vec![4]),
    ]);
    assert_refused("bias.safetensors", bad_bias, &["fc.bias"]).await;
    let extra = safetensors_file(&[
        ("fc.weight", Dtype::F32, vec![3, 4]),
        ("bn.running_mean", Dtype::F32, vec![3]),
    ]);
    assert_refused("bn.safetensors", extra, &["bn.running_mean", "--manifest"]).await;
}

#[tokio::test]
async fn unknown_dtypes_are_refused() {
    let file = safetensors_file(&[
        ("fc.weight", Dtype::I64, vec![3, 4]),
        ("fc.bias", Dtype::F32, vec![3]),
    ]);
    assert_refused("int.safetensors", file, &["dtype", "I64", "F32"]).await;
}

#[tokio::test]
async fn bad_model_names_are_refused_before_any_key_is_built() {
    for bad in ["../x", "", "Seed", &"a".repeat(65), "a/b"] {
        let err = ModelName::new(bad).expect_err(bad).to_string();
        assert!(err.contains("invalid model name"), "{bad:?}: {err}");
    }
}

/// Regression: a manifest could override the model's inputs with shapes that contradict it,
/// and serving sized buffers from them. Every contradicting override is refused at push.
#[tokio::test]
async fn manifest_overrides_that_contradict_the_model_are_refused() {
    use maas_core::{DataType, TensorSpec};
    let spec = |name: &str, datatype: DataType, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    let bench = bench_with_one_version().await;
    let before = snapshot(&bench.store).await;
    type Override = (&'static str, Vec<TensorSpec>, Option<Vec<TensorSpec>>);
    let contradictions: Vec<Override> = vec![
        (
            "width",
            vec![spec("input", DataType::Fp32, &[-1, 999])],
            None,
        ),
        (
            "huge width",
            vec![spec("input", DataType::Fp32, &[-1, i64::MAX / 2, 4])],
            None,
        ),
        (
            "rank",
            vec![spec("input", DataType::Fp32, &[-1, 10, 100])],
            None,
        ),
        (
            "type",
            vec![spec("input", DataType::Int64, &[-1, 1000])],
            None,
        ),
        ("count", vec![], None),
        (
            "zero dimension",
            vec![spec("input", DataType::Fp32, &[-1, 0])],
            None,
        ),
        (
            "output width",
            vec![spec("input", DataType::Fp32, &[-1, 1000])],
            Some(vec![spec("output", DataType::Fp32, &[-1, 7])]),
        ),
    ];
    for (what, inputs, outputs) in contradictions {
        let mut req = request("seed", "model.onnx", seed_file("model.onnx"));
        req.template.inputs = Some(inputs);
        req.template.outputs = outputs;
        let err = push(&bench.registry, req)
            .await
            .expect_err(what)
            .to_string();
        assert!(err.contains("contradict the model"), "{what}: {err}");
    }
    assert_eq!(snapshot(&bench.store).await, before, "nothing written");
    // An override that agrees (new names, the batch dimension left open) is accepted.
    let mut req = request("seed", "model.onnx", seed_file("model.onnx"));
    req.template.inputs = Some(vec![spec("features", DataType::Fp32, &[-1, 1000])]);
    push(&bench.registry, req)
        .await
        .expect("a consistent override");
}
