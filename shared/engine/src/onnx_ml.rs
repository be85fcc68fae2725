//! The `ai.onnx.ml` operators that tract's parser lacks or answers differently from
//! onnxruntime, registered into the parser (tract looks operators up by name), so they run in
//! the same graph as every other operator.
//!
//! - `TreeEnsembleRegressor` and `TreeEnsembleClassifier` run on `maas-trees`, the engine the
//!   XGBoost and LightGBM files use: tract has no regressor, and its classifier refuses the
//!   `PROBIT` and `SOFTMAX_ZERO` transforms and answers binary models (one scored class, what
//!   every exporter writes for two classes) differently from onnxruntime.
//! - `Scaler`, `Imputer` and `Binarizer` (scikit-learn's `StandardScaler`, `SimpleImputer`,
//!   `Binarizer`), which tract lacks: one element-wise pass each ([`FeatureMap`]).
//! - `ZipMap` (the last step of skl2onnx's classifiers by default) turns the probabilities into a
//!   list of `{label: probability}` maps, a type tract doesn't have (and won't: sonos/tract#1262)
//!   and the Open Inference Protocol can't carry. [`serve_zipmap_inputs`] replaces it by the
//!   identity before parsing: the output of that name is the probabilities tensor, one column
//!   per class in the order of the classifier's labels, so users need not re-export with
//!   `zipmap=False`.

use std::sync::Arc;

use maas_trees::{Aggregate, ClassLabels, PostTransform, Task, TreeModel, onnx::TreeAttributes};
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// tract's ONNX parser with the operators of this module.
pub(crate) fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    register(&mut onnx.op_register);
    onnx
}

fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleRegressor", tree_ensemble_regressor);
    register.insert("TreeEnsembleClassifier", tree_ensemble_classifier);
    register.insert("Scaler", scaler);
    register.insert("Imputer", imputer);
    register.insert("Binarizer", binarizer);
    register.insert("TreeEnsemble", tree_ensemble_v5);
    register.insert("OneHotEncoder", crate::onnx_ml_encode::one_hot_encoder);
    register.insert("LabelEncoder", crate::onnx_ml_encode::label_encoder);
}

/// The classes of a graph ending in a classifier (`TreeEnsembleClassifier`,
/// `LinearClassifier`, `SVMClassifier`), from the node's `classlabels_*`; `None` when it has
/// none, or classifiers that disagree on their classes.
pub(crate) fn graph_classes(
    graph: &tract_onnx::pb::GraphProto,
) -> Option<Vec<crate::answer::ClassLabel>> {
    use crate::answer::ClassLabel;
    let mut found: Option<Vec<ClassLabel>> = None;
    for node in graph.node.iter().filter(|n| {
        n.domain == "ai.onnx.ml"
            && matches!(
                n.op_type.as_str(),
                "TreeEnsembleClassifier" | "LinearClassifier" | "SVMClassifier"
            )
    }) {
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let classes: Vec<ClassLabel> = match (
            attr("classlabels_int64s"),
            attr("classlabels_strings"),
            attr("classlabels_ints"),
        ) {
            (Some(a), _, _) | (None, None, Some(a)) => {
                a.ints.iter().copied().map(ClassLabel::Int).collect()
            }
            (None, Some(a), _) => a
                .strings
                .iter()
                .map(|s| ClassLabel::Text(String::from_utf8_lossy(s).into_owned()))
                .collect(),
            (None, None, None) => return None,
        };
        match &found {
            Some(seen) if *seen != classes => return None,
            _ => found = Some(classes),
        }
    }
    found
}

/// Where a classifier with `classes` puts its answer among the graph's `outputs`: the label
/// as the output of one value per row (`INT64` or `BYTES`), the probabilities as the `FP32`
/// output with one column per class (or one, for two classes).
pub(crate) fn classifier_outputs(
    classes: Vec<crate::answer::ClassLabel>,
    outputs: &[maas_core::TensorSpec],
) -> Option<crate::answer::ClassifierOutputs> {
    use maas_core::DataType;
    let label = outputs.iter().position(|o| {
        matches!(o.datatype, DataType::Int64 | DataType::Bytes)
            && (o.shape.len() == 1 || (o.shape.len() == 2 && o.shape[1] == 1))
    });
    let probabilities = outputs.iter().position(|o| {
        o.datatype == DataType::Fp32
            && o.shape.len() == 2
            && (o.shape[1] == classes.len() as i64 || (o.shape[1] == 1 && classes.len() == 2))
    })?;
    Some(crate::answer::ClassifierOutputs {
        classes,
        label,
        probabilities,
    })
}

/// tract's `LinearClassifier` can't label with strings (it builds a default string label from
/// `Zero`, which strings lack). Each such node is rewritten before parsing to label by position
/// (`classlabels_ints` 0, 1, …), followed by a `LabelEncoder` from position to string under
/// the original output name.
pub(crate) fn label_linear_classifiers_by_position(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{AttributeProto, NodeProto, attribute_proto::AttributeType};
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut added = Vec::new();
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.domain == "ai.onnx.ml" && n.op_type == "LinearClassifier")
    {
        let Some(at) = node
            .attribute
            .iter()
            .position(|a| a.name == "classlabels_strings")
        else {
            continue;
        };
        let Some(label_output) = node.output.first().cloned() else {
            continue;
        };
        let strings = node.attribute.remove(at).strings;
        let positions: Vec<i64> = (0..strings.len() as i64).collect();
        node.attribute.push(AttributeProto {
            name: "classlabels_ints".into(),
            r#type: AttributeType::Ints as i32,
            ints: positions.clone(),
            ..AttributeProto::default()
        });
        let by_position = format!("{label_output}.position");
        node.output[0] = by_position.clone();
        let label_node = format!("{label_output}.position_to_label");
        added.push(NodeProto {
            name: label_node,
            op_type: "LabelEncoder".into(),
            domain: "ai.onnx.ml".into(),
            input: vec![by_position],
            output: vec![label_output],
            attribute: vec![
                AttributeProto {
                    name: "keys_int64s".into(),
                    r#type: AttributeType::Ints as i32,
                    ints: positions,
                    ..AttributeProto::default()
                },
                AttributeProto {
                    name: "values_strings".into(),
                    r#type: AttributeType::Strings as i32,
                    strings,
                    ..AttributeProto::default()
                },
                AttributeProto {
                    name: "default_string".into(),
                    r#type: AttributeType::String as i32,
                    s: Vec::new(),
                    ..AttributeProto::default()
                },
            ],
            ..NodeProto::default()
        });
    }
    // Nodes are in topological order; each new node follows its classifier, so at the end is fine.
    graph.node.extend(added);
}

/// How to export a model without `ops` (names as [`crate::EngineError::UnsupportedOperators`]
/// gives them): the exporter option that avoids each, where there is one.
pub(crate) fn export_advice(ops: &[String]) -> String {
    let mut advice: Vec<&str> = Vec::new();
    for line in ops.iter().map(|op| match op.as_str() {
            "ai.onnx.ml.SVMClassifier" | "ai.onnx.ml.SVMRegressor" => {
                "maas has no support-vector kernels: export a linear model (LinearSVC / LinearSVR and LogisticRegression export as LinearClassifier / LinearRegressor) or a tree ensemble instead"
            }
            "ai.onnx.ml.DictVectorizer" | "ai.onnx.ml.CastMap" => {
                "export the model from a float array rather than dicts or a DataFrame of mixed columns (skl2onnx: to_onnx(model, X[:1].astype(numpy.float32)), or one FloatTensorType / Int64TensorType per column in initial_types)"
            }
            "StringNormalizer" | "TfIdfVectorizer" | "Tokenizer" | "RegexFullMatch" | "StringSplit" | "StringConcat" => {
                "maas serves numeric features only: encode text before the model and export from the numeric matrix"
            }
            _ => {
                "re-export the model without them: a lower opset (skl2onnx and onnxmltools: target_opset={'': 17, 'ai.onnx.ml': 3}; torch.onnx.export: opset_version=17) or simpler layers"
            }
        }) {
        if !advice.contains(&line) {
            advice.push(line);
        }
    }
    advice.join("; ")
}

/// `FeatureVectorizer` (what skl2onnx writes to join the one-column inputs of a model exported
/// from a DataFrame) is the concatenation of its inputs as floats along the feature axis; each
/// is rewritten before parsing into a `Cast` per input and a `Concat`, which tract runs. An
/// input whose width differs from its `inputdimensions` entry (onnxruntime pads or cuts it)
/// keeps its width and the graph fails to build, as it would fail to serve.
pub(crate) fn concat_feature_vectors(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{AttributeProto, NodeProto, attribute_proto::AttributeType};
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    if !graph
        .node
        .iter()
        .any(|n| n.domain == "ai.onnx.ml" && n.op_type == "FeatureVectorizer")
    {
        return;
    }
    let int_attribute = |name: &str, value: i64| AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..AttributeProto::default()
    };
    let mut nodes = Vec::with_capacity(graph.node.len() + 4);
    for node in std::mem::take(&mut graph.node) {
        if node.domain != "ai.onnx.ml" || node.op_type != "FeatureVectorizer" {
            nodes.push(node);
            continue;
        }
        let Some(output) = node.output.first().cloned() else {
            nodes.push(node);
            continue;
        };
        let mut floats = Vec::with_capacity(node.input.len());
        for (i, input) in node.input.iter().enumerate() {
            let cast = format!("{output}.input{i}.float");
            nodes.push(NodeProto {
                name: cast.clone(),
                op_type: "Cast".into(),
                input: vec![input.clone()],
                output: vec![cast.clone()],
                // TensorProto.DataType FLOAT
                attribute: vec![int_attribute("to", 1)],
                ..NodeProto::default()
            });
            floats.push(cast);
        }
        nodes.push(NodeProto {
            name: format!("{output}.concat"),
            op_type: "Concat".into(),
            input: floats,
            output: vec![output],
            attribute: vec![int_attribute("axis", -1)],
            ..NodeProto::default()
        });
    }
    graph.node = nodes;
}

/// Replaces every `ZipMap` of the main graph by the identity: its output, under the same name,
/// is the probabilities tensor it was given (`FP32 [rows, classes]`).
pub(crate) fn serve_zipmap_inputs(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{tensor_proto::DataType, type_proto};
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut replaced = Vec::new();
    for node in graph.node.iter_mut().filter(|n| n.op_type == "ZipMap") {
        node.op_type = "Identity".into();
        node.domain = String::new();
        node.attribute.clear();
        replaced.extend(node.output.iter().cloned());
    }
    if replaced.is_empty() {
        return;
    }
    // The declared type was a sequence of maps; the value is now a float tensor.
    graph.value_info.retain(|v| !replaced.contains(&v.name));
    for output in graph
        .output
        .iter_mut()
        .filter(|o| replaced.contains(&o.name))
    {
        output.r#type = Some(tract_onnx::pb::TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: None,
            })),
        });
    }
}

/// A float-list attribute, or its `_as_tensor` form (ai.onnx.ml 3: doubles).
fn floats(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    if let Some(values) = node.get_attr_opt_vec::<f32>(name)? {
        return Ok(Some(values.into_iter().map(f64::from).collect()));
    }
    let tensor_name = format!("{name}_as_tensor");
    match node.get_attr_opt::<&tract_onnx::pb::TensorProto>(&tensor_name)? {
        Some(proto) => {
            let tensor =
                tract_onnx::tensor::load_tensor(&*ctx.framework.provider, proto, ctx.model_dir)?;
            let tensor = tensor.cast_to::<f64>()?;
            Ok(Some(tensor.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
        }
        None => Ok(None),
    }
}

fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

/// The attributes both tree operators share; `leaf` is `target` or `class`.
fn tree_attributes(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf: &str,
) -> TractResult<TreeAttributes> {
    let post_transform = match node.get_attr_opt::<&str>("post_transform")? {
        None => PostTransform::None,
        Some(name) => PostTransform::from_onnx(name)
            .ok_or_else(|| format_err!("unknown post_transform {name:?}"))?,
    };
    Ok(TreeAttributes {
        nodes_treeids: ints(node, "nodes_treeids")?,
        nodes_nodeids: ints(node, "nodes_nodeids")?,
        nodes_featureids: ints(node, "nodes_featureids")?,
        nodes_modes: node
            .get_attr_opt_vec::<String>("nodes_modes")?
            .unwrap_or_default(),
        nodes_values: floats(ctx, node, "nodes_values")?.unwrap_or_default(),
        nodes_truenodeids: ints(node, "nodes_truenodeids")?,
        nodes_falsenodeids: ints(node, "nodes_falsenodeids")?,
        nodes_missing_value_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_treeids: ints(node, &format!("{leaf}_treeids"))?,
        leaf_nodeids: ints(node, &format!("{leaf}_nodeids"))?,
        leaf_targetids: ints(node, &format!("{leaf}_ids"))?,
        leaf_weights: floats(ctx, node, &format!("{leaf}_weights"))?.unwrap_or_default(),
        base_values: floats(ctx, node, "base_values")?.unwrap_or_default(),
        post_transform,
    })
}

/// Features a tree operator reads: one past the highest feature any node splits on (the input
/// may be wider; the rest is not read).
fn features_read(attributes: &TreeAttributes) -> usize {
    attributes
        .nodes_featureids
        .iter()
        .filter_map(|&f| usize::try_from(f).ok())
        .max()
        .map_or(1, |f| f + 1)
}

fn tree_ensemble_regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attributes = tree_attributes(ctx, node, "target")?;
    let n_targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1);
    let n_targets = usize::try_from(n_targets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format_err!("n_targets {n_targets} is not positive"))?;
    let aggregate = match node.get_attr_opt::<&str>("aggregate_function")? {
        None => Aggregate::Sum,
        Some(name) => maas_trees::onnx::aggregate_from_onnx(name)
            .ok_or_else(|| format_err!("unknown aggregate_function {name:?}"))?,
    };
    let model = maas_trees::onnx::regressor(
        &attributes,
        n_targets,
        aggregate,
        features_read(&attributes),
    )
    .map_err(|e| format_err!("{e}"))?;
    Ok((expand(TreeEnsemble::new(model)), vec![]))
}

/// ai.onnx.ml opset 5's `TreeEnsemble`: one `FP32 [rows, n_targets]` output.
fn tree_ensemble_v5(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tensor = |name: &str| -> TractResult<Option<Tensor>> {
        match node.get_attr_opt::<&tract_onnx::pb::TensorProto>(name)? {
            Some(proto) => Ok(Some(tract_onnx::tensor::load_tensor(
                &*ctx.framework.provider,
                proto,
                ctx.model_dir,
            )?)),
            None => Ok(None),
        }
    };
    let required = |name: &str| -> TractResult<Tensor> {
        tensor(name)?.ok_or_else(|| format_err!("TreeEnsemble without {name}"))
    };
    let doubles = |t: Tensor| -> TractResult<Vec<f64>> {
        Ok(t.cast_to::<f64>()?
            .try_as_plain_ram()?
            .as_slice::<f64>()?
            .to_vec())
    };
    if tensor("membership_values")?.is_some() {
        bail!(
            "TreeEnsemble splits on set membership (membership_values) are not supported; export with the older TreeEnsembleRegressor / TreeEnsembleClassifier (ai.onnx.ml opset 3)"
        );
    }
    let modes = required("nodes_modes")?;
    let attributes = maas_trees::onnx::TreeEnsembleV5 {
        tree_roots: ints(node, "tree_roots")?,
        nodes_featureids: ints(node, "nodes_featureids")?,
        nodes_modes: modes
            .cast_to::<u8>()?
            .try_as_plain_ram()?
            .as_slice::<u8>()?
            .to_vec(),
        nodes_splits: doubles(required("nodes_splits")?)?,
        nodes_truenodeids: ints(node, "nodes_truenodeids")?,
        nodes_trueleafs: ints(node, "nodes_trueleafs")?,
        nodes_falsenodeids: ints(node, "nodes_falsenodeids")?,
        nodes_falseleafs: ints(node, "nodes_falseleafs")?,
        nodes_missing_value_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_targetids: ints(node, "leaf_targetids")?,
        leaf_weights: doubles(required("leaf_weights")?)?,
        n_targets: node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1),
        aggregate_function: node.get_attr_opt::<i64>("aggregate_function")?.unwrap_or(1),
        post_transform: node.get_attr_opt::<i64>("post_transform")?.unwrap_or(0),
    };
    let n_features = attributes
        .nodes_featureids
        .iter()
        .filter_map(|&f| usize::try_from(f).ok())
        .max()
        .map_or(1, |f| f + 1);
    let model = maas_trees::onnx::tree_ensemble_v5(&attributes, n_features)
        .map_err(|e| format_err!("{e}"))?;
    Ok((expand(TreeEnsemble::new(model)), vec![]))
}

fn tree_ensemble_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attributes = tree_attributes(ctx, node, "class")?;
    let labels = match (
        node.get_attr_opt_vec::<i64>("classlabels_int64s")?,
        node.get_attr_opt_vec::<String>("classlabels_strings")?,
    ) {
        (Some(ints), None) => ClassLabels::Int(ints),
        (None, Some(strings)) => ClassLabels::Str(strings),
        _ => bail!(
            "a TreeEnsembleClassifier needs exactly one of classlabels_int64s and classlabels_strings"
        ),
    };
    let model = maas_trees::onnx::classifier(&attributes, labels, features_read(&attributes))
        .map_err(|e| format_err!("{e}"))?;
    Ok((expand(TreeEnsemble::new(model)), vec![]))
}

/// A tree operator: at parse time an expansion that fixes the outputs' types and shapes, wired
/// as one typed node that runs the model.
#[derive(Debug, Clone)]
struct TreeEnsemble {
    model: Arc<TreeModel>,
}

impl PartialEq for TreeEnsemble {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}

impl Eq for TreeEnsemble {}

impl TreeEnsemble {
    fn new(model: TreeModel) -> Self {
        Self {
            model: Arc::new(model),
        }
    }

    /// The label tensor's type, for classifiers.
    fn label_type(&self) -> Option<DatumType> {
        match self.model.task() {
            Task::Regression => None,
            Task::Classification {
                labels: ClassLabels::Int(_),
                ..
            } => Some(DatumType::I64),
            Task::Classification {
                labels: ClassLabels::Str(_),
                ..
            } => Some(DatumType::String),
        }
    }
}

impl Expansion for TreeEnsemble {
    fn name(&self) -> StaticName {
        "TreeEnsemble".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        let width = self.model.width().to_dim();
        match self.label_type() {
            None => {
                check_output_arity(outputs, 1)?;
                s.equals(&outputs[0].datum_type, DatumType::F32)?;
                s.equals(&outputs[0].rank, 2)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[0].shape[1], width)?;
            }
            Some(label) => {
                check_output_arity(outputs, 2)?;
                s.equals(&outputs[0].datum_type, label)?;
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[1].datum_type, DatumType::F32)?;
                s.equals(&outputs[1].rank, 2)?;
                s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[1].shape[1], width)?;
            }
        }
        Ok(())
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.label_type().is_some() { 2 } else { 1 })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, TreeEnsembleOp(self.clone()), inputs)
    }
}

/// The typed node of a [`TreeEnsemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct TreeEnsembleOp(TreeEnsemble);

impl Op for TreeEnsembleOp {
    fn name(&self) -> StaticName {
        "maas.TreeEnsemble".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.cast_to::<f32>()?;
        let (rows, width) = match input.shape() {
            [rows, width] => (*rows, *width),
            [width] => (1, *width),
            other => bail!("a tree ensemble takes rows of features, not shape {other:?}"),
        };
        let model = &self.0.model;
        let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let prediction = model
            .predict_rows(values, rows, width)
            .map_err(|e| format_err!("{e}"))?;
        let scores = Tensor::from_shape(&[rows, prediction.width], &prediction.values)?;
        match (model.task(), prediction.classes) {
            (Task::Classification { labels, .. }, Some(classes)) => {
                let labels = match labels {
                    ClassLabels::Int(ids) => {
                        let chosen: Vec<i64> = classes.iter().map(|&c| ids[c]).collect();
                        Tensor::from_shape(&[rows], &chosen)?
                    }
                    ClassLabels::Str(names) => {
                        let chosen: Vec<String> =
                            classes.iter().map(|&c| names[c].clone()).collect();
                        tract_ndarray::Array1::from_vec(chosen).into_tensor()
                    }
                };
                Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
            }
            _ => Ok(tvec!(scores.into_tvalue())),
        }
    }
}

impl TypedOp for TreeEnsembleOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        let scores = f32::fact(&[rows.clone(), self.0.model.width().to_dim()]);
        Ok(match self.0.label_type() {
            None => tvec!(scores),
            Some(label) => tvec!(label.fact(&[rows]), scores),
        })
    }

    as_op!();
}

/// An element-wise map of a float feature matrix (cast to `f32` first), per feature where the
/// operator's attributes are per feature.
#[derive(Debug, Clone, PartialEq)]
enum FeatureMap {
    /// `(x − offset) · scale`.
    Scale { offset: Vec<f32>, scale: Vec<f32> },
    /// `imputed` where `x` is the replaced value (NaN: any NaN).
    Impute { imputed: Vec<f32>, replaced: f32 },
    /// `1` where `x > threshold`, else `0`.
    Binarize { threshold: f32 },
}

impl Eq for FeatureMap {}

/// The value for feature `j` of a per-feature (or single) list.
fn per_feature(values: &[f32], j: usize) -> f32 {
    if values.len() == 1 {
        values[0]
    } else {
        values[j]
    }
}

impl FeatureMap {
    fn name(&self) -> &'static str {
        match self {
            FeatureMap::Scale { .. } => "Scaler",
            FeatureMap::Impute { .. } => "Imputer",
            FeatureMap::Binarize { .. } => "Binarizer",
        }
    }

    /// The per-feature lists' length, if they have one (a single value fits any width).
    fn width(&self) -> Option<usize> {
        let len = match self {
            FeatureMap::Scale { offset, scale } => offset.len().max(scale.len()),
            FeatureMap::Impute { imputed, .. } => imputed.len(),
            FeatureMap::Binarize { .. } => 1,
        };
        (len > 1).then_some(len)
    }

    fn apply(&self, row: &mut [f32]) {
        for (j, x) in row.iter_mut().enumerate() {
            *x = match self {
                FeatureMap::Scale { offset, scale } => {
                    (*x - per_feature(offset, j)) * per_feature(scale, j)
                }
                FeatureMap::Impute { imputed, replaced } => {
                    let missing = if replaced.is_nan() {
                        x.is_nan()
                    } else {
                        *x == *replaced
                    };
                    if missing { per_feature(imputed, j) } else { *x }
                }
                FeatureMap::Binarize { threshold } => {
                    if *x > *threshold {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
        }
    }
}

fn scaler(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset = node
        .get_attr_opt_vec::<f32>("offset")?
        .unwrap_or_else(|| vec![0.0]);
    let scale = node
        .get_attr_opt_vec::<f32>("scale")?
        .unwrap_or_else(|| vec![1.0]);
    if offset.is_empty()
        || scale.is_empty()
        || (offset.len() > 1 && scale.len() > 1 && offset.len() != scale.len())
    {
        bail!(
            "Scaler: offset ({}) and scale ({}) don't fit one another",
            offset.len(),
            scale.len()
        );
    }
    Ok((expand(FeatureMap::Scale { offset, scale }), vec![]))
}

fn imputer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if let Some(op) = crate::onnx_ml_encode::int_imputer(node)? {
        return Ok((op, vec![]));
    }
    let imputed = node
        .get_attr_opt_vec::<f32>("imputed_value_floats")?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format_err!("Imputer without imputed_value_floats"))?;
    let replaced = node
        .get_attr_opt::<f32>("replaced_value_float")?
        .unwrap_or(f32::NAN);
    Ok((expand(FeatureMap::Impute { imputed, replaced }), vec![]))
}

fn binarizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((expand(FeatureMap::Binarize { threshold }), vec![]))
}

impl Expansion for FeatureMap {
    fn name(&self) -> StaticName {
        FeatureMap::name(self).into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, FeatureMapOp(self.clone()), inputs)
    }
}

/// The typed node of a [`FeatureMap`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeatureMapOp(FeatureMap);

impl Op for FeatureMapOp {
    fn name(&self) -> StaticName {
        format!("maas.{}", self.0.name()).into()
    }

    op_as_typed_op!();
}

impl EvalOp for FeatureMapOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut output = input.cast_to::<f32>()?.into_owned();
        let width = output.shape().last().copied().unwrap_or(1).max(1);
        if let Some(expected) = self.0.width()
            && expected != width
        {
            bail!(
                "{} takes {expected} features, the input has {width}",
                self.0.name()
            );
        }
        {
            let mut plain = output.try_as_plain_ram_mut()?;
            for row in plain.as_slice_mut::<f32>()?.chunks_mut(width) {
                self.0.apply(row);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FeatureMapOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}
