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
use maas_engine::{ClassLabel, LoadedModel, RowLayout, Tensor, push_json_row};
use maas_registry::VersionSelector;
use serde_json::{Value, json};

use crate::InferenceError;
use crate::router::{
    AliasQuery, AppState, RequestFacts, load, model_name, read_body, run_blocking,
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

/// Builds the model's inputs from V1 `instances`: rows as lists, or objects keyed by the
/// manifest's feature names or the inputs' names (see [`RowLayout`]).
fn instance_tensors(
    loaded: &LoadedModel,
    instances: &[Value],
) -> Result<Vec<Tensor>, InferenceError> {
    let layout = RowLayout::of(loaded).map_err(|e| InferenceError::Internal(e.to_string()))?;
    let mut batch = layout.batch();
    for (i, instance) in instances.iter().enumerate() {
        push_json_row(&mut batch, instance)
            .map_err(|why| InferenceError::BadRequest(format!("instance {i}: {why}")))?;
    }
    batch
        .take_tensors()
        .map_err(|e| InferenceError::BadRequest(e.to_string()))
}

/// The V1 answer: each instance's first output, and a classifier's labels and probabilities
/// (one per class, in the order of `classes`). Labels keep their type: integers or strings.
#[derive(serde::Serialize)]
struct V1Response {
    predictions: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<ClassLabel>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<Vec<Vec<f32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<Vec<ClassLabel>>,
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
        let inputs = instance_tensors(&loaded, instances)?;
        let rows = instances.len();
        let loaded_for_run = Arc::clone(&loaded);
        let answers = run_blocking(rows, move || loaded_for_run.answer(inputs, rows))
            .await
            .map_err(|e| InferenceError::from_engine(&model, Some(version), &e))?;
        let predictions = (0..rows).map(|r| answers.prediction_json(r)).collect();
        let classified = answers.classified();
        Ok(axum::Json(V1Response {
            predictions,
            labels: classified.map(|c| c.labels.clone()),
            probabilities: classified
                .map(|c| (0..rows).map(|r| c.probabilities_of(r).to_vec()).collect()),
            classes: classified.map(|c| c.classes.clone()),
            model_version: version.to_string(),
        })
        .into_response())
    }
    .await;
    with_facts(result.unwrap_or_else(IntoResponse::into_response), facts)
}
