//! The V1 form of prediction: `POST /v1/models/{model}:predict` with `{"instances": [...]}`
//! (KServe V1, TensorFlow Serving) and TensorFlow Serving's versioned
//! `/v1/models/{model}/versions/{version}:predict`, over the same loading, limits and logging as
//! the Open Inference Protocol routes in [`crate::router`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maas_core::ModelName;
use maas_engine::{LoadedModel, Tensor, TensorData};
use maas_registry::VersionSelector;
use serde_json::{Value, json};

use crate::InferenceError;
use crate::router::{
    AliasQuery, AppState, RequestFacts, load, model_name, predict_blocking, read_body,
    selector_from_request, selector_from_segment, with_facts,
};

/// Splits `name:predict` (the V1 route's last segment).
fn target_model(target: &str) -> Result<ModelName, InferenceError> {
    match target.split_once(':') {
        Some((model, "predict")) => model_name(model),
        Some((_, verb)) => Err(InferenceError::NotFound(format!(
            "unknown V1 verb {verb:?}; use POST /v1/models/{{model}}:predict"
        ))),
        None => Err(InferenceError::NotFound(
            "use POST /v1/models/{model}:predict".into(),
        )),
    }
}

pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
) -> Result<Response, InferenceError> {
    let model = model_name(&target)?;
    let loaded = load(&state, &model, &VersionSelector::Default).await?;
    Ok(axum::Json(
        json!({"name": model, "ready": true, "version": loaded.manifest().version.to_string()}),
    )
    .into_response())
}

/// Builds the model's first input from V1 `instances`: rows as lists, or objects keyed by the
/// manifest's feature names.
fn instance_rows(loaded: &LoadedModel, instances: &[Value]) -> Result<Tensor, InferenceError> {
    let spec = loaded
        .inputs()
        .first()
        .ok_or_else(|| InferenceError::Internal("the model declares no inputs".into()))?;
    if loaded.inputs().len() != 1 {
        return Err(InferenceError::BadRequest(
            "this model takes several inputs; use the v2 infer endpoint".into(),
        ));
    }
    let width = spec.row_width();
    let features = loaded.manifest().features.as_deref();
    let mut values = Vec::with_capacity(instances.len() * width);
    for (i, instance) in instances.iter().enumerate() {
        let before = values.len();
        match instance {
            Value::Object(map) => {
                let features = features.ok_or_else(|| InferenceError::BadRequest(format!(
                    "instance {i} is an object but the model names no features; send lists of {width} numbers"
                )))?;
                for name in features {
                    let v = map.get(name).and_then(Value::as_f64).ok_or_else(|| {
                        InferenceError::BadRequest(format!(
                            "instance {i}: feature {name:?} is missing or not a number"
                        ))
                    })?;
                    values.push(v as f32);
                }
            }
            other => {
                let mut stack = vec![other];
                while let Some(v) = stack.pop() {
                    match v {
                        Value::Array(items) => stack.extend(items.iter().rev()),
                        Value::Number(n) => values.push(n.as_f64().unwrap_or(f64::NAN) as f32),
                        other => {
                            return Err(InferenceError::BadRequest(format!(
                                "instance {i} holds {other}, not a number"
                            )));
                        }
                    }
                    if values.len() - before > width {
                        break;
                    }
                }
            }
        }
        if values.len() - before != width {
            return Err(InferenceError::BadRequest(format!(
                "instance {i} has {} values but the model takes {width} per row (input {:?}, shape {})",
                values.len() - before,
                spec.name,
                spec.shape_string()
            )));
        }
    }
    let mut shape = vec![instances.len()];
    shape.extend(
        spec.shape
            .iter()
            .skip(1)
            .map(|&d| usize::try_from(d).unwrap_or(1)),
    );
    Tensor::new(spec.name.clone(), shape, TensorData::F32(values))
        .map_err(|e| InferenceError::BadRequest(e.to_string()))
}

/// One instance's prediction, serialised from `f32` so it prints in its shortest form.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum V1Prediction {
    One(f32),
    Many(Vec<f32>),
}

#[derive(serde::Serialize)]
struct V1Response {
    predictions: Vec<V1Prediction>,
    /// For classifiers whose manifest names labels: each instance's class label.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<String>>,
    model_version: String,
}

pub(crate) async fn predict(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    Query(query): Query<AliasQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let model = target.split(':').next().unwrap_or_default().to_string();
    let selector = selector_from_request(&query, &headers);
    run_predict(
        &state,
        &model,
        target_model(&target),
        selector,
        headers,
        body,
    )
    .await
}

/// `POST /v1/models/{model}/versions/{version}:predict` (TensorFlow Serving's form).
pub(crate) async fn predict_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (version, verb) = target.split_once(':').unwrap_or((target.as_str(), ""));
    let checked = target_model(&format!("{model}:{verb}"));
    let selector = selector_from_segment(version);
    run_predict(&state, &model, checked, selector, headers, body).await
}

async fn run_predict(
    state: &AppState,
    model_segment: &str,
    target: Result<ModelName, InferenceError>,
    selector: VersionSelector,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut facts = RequestFacts {
        model: model_segment.to_string(),
        ..RequestFacts::default()
    };
    let result: Result<Response, InferenceError> = async {
        let model = target?;
        let body = read_body(state, &headers, body).await?;
        // The model first: asking an unknown model anything is a 404, whatever the body.
        let loaded = load(state, &model, &selector).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            InferenceError::BadRequest(format!(
                "the body is not valid JSON ({e}); send {{\"instances\": [[...], ...]}}"
            ))
        })?;
        let instances = doc
            .get("instances")
            .or_else(|| doc.get("inputs"))
            .and_then(Value::as_array)
            .ok_or_else(|| {
                InferenceError::BadRequest("send {\"instances\": [[...], ...]}".into())
            })?;
        if instances.is_empty() {
            return Err(InferenceError::BadRequest("\"instances\" is empty".into()));
        }
        let version = loaded.manifest().version;
        facts.version = Some(version.get());
        facts.rows = instances.len();
        let input = instance_rows(&loaded, instances)?;
        let outputs = predict_blocking(&loaded, vec![input])
            .await
            .map_err(|e| InferenceError::from_engine(&model, Some(version), &e))?;
        let first = outputs
            .into_iter()
            .next()
            .ok_or_else(|| InferenceError::Internal("the model produced no output".into()))?;
        let values = first.data.to_f32_vec();
        let per_row = values.len() / instances.len().max(1);
        let rows = values.chunks(per_row.max(1));
        let labels = loaded.has_labels().then(|| {
            rows.clone()
                .map(|row| loaded.label(row).unwrap_or_default().to_string())
                .collect()
        });
        let predictions: Vec<V1Prediction> = rows
            .map(|row| match row {
                [one] => V1Prediction::One(*one),
                many => V1Prediction::Many(many.to_vec()),
            })
            .collect();
        Ok(axum::Json(V1Response {
            predictions,
            labels,
            model_version: version.to_string(),
        })
        .into_response())
    }
    .await;
    with_facts(result.unwrap_or_else(IntoResponse::into_response), facts)
}
