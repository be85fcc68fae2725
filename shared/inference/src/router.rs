//! The axum router: the Open Inference Protocol REST API plus the V1 `:predict` form. The same
//! router runs inside Lambda (through `lambda_http`) and on localhost (`maas serve`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maas_core::{ModelName, Version};
use maas_engine::{LoadedModel, Tensor, TensorData};
use maas_registry::VersionSelector;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::cache::ModelCache;
use crate::metrics::MetricsSink;
use crate::protocol::{HEADER_CONTENT_LENGTH, decode_infer_request, encode_infer_response};
use crate::{InferenceConfig, InferenceError};

/// Header that picks an alias for requests without a version (same as `?alias=`).
pub const ALIAS_HEADER: &str = "x-maas-alias";

/// Shared state of the service.
#[derive(Debug)]
pub struct AppState {
    /// Loaded models and alias resolutions.
    pub cache: ModelCache,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Where EMF lines go.
    pub metrics: MetricsSink,
}

impl AppState {
    /// State for `config` over `registry`.
    pub fn new(config: &InferenceConfig, registry: maas_registry::Registry) -> Self {
        Self {
            cache: ModelCache::new(registry, config.cache),
            max_body_bytes: config.max_body_bytes,
            metrics: config.metrics,
        }
    }
}

/// What a handler learned about a request, for the one log line per request.
#[derive(Debug, Clone, Default)]
struct RequestFacts {
    model: String,
    version: Option<u64>,
    rows: usize,
}

/// The service's router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { axum::Json(json!({"live": true})) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { axum::Json(json!({"ready": true})) }),
        )
        .route("/v2/models", get(list_models))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_versioned),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_versioned),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_versioned),
        )
        .route("/v1/models/{target}", post(v1_predict).get(v1_status))
        .route(
            "/v1/models/{model}/versions/{target}",
            post(v1_predict_versioned),
        )
        .fallback(|| async {
            InferenceError::NotFound(
                "no such route; see /v2 (Open Inference Protocol) and /v1/models/{model}:predict"
                    .into(),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// One structured log line (and EMF line) per request.
async fn log_request(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = response.status().as_u16();
    let facts = response
        .extensions()
        .get::<RequestFacts>()
        .cloned()
        .unwrap_or_default();
    if status >= 500 {
        warn!(%method, %path, status, latency_ms, model = %facts.model, version = facts.version, rows = facts.rows, "request failed");
    } else {
        info!(%method, %path, status, latency_ms, model = %facts.model, version = facts.version, rows = facts.rows, "request");
    }
    if !facts.model.is_empty() {
        let class = format!("{}xx", status / 100);
        state.metrics.emit(
            &[("model", facts.model.as_str()), ("status", class.as_str())],
            &[
                ("latency_ms", "Milliseconds", latency_ms),
                ("rows", "Count", facts.rows as f64),
            ],
        );
    }
    response
}

async fn server_metadata() -> impl IntoResponse {
    axum::Json(json!({
        "name": "maas",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository_listing", "v1_predict"],
    }))
}

fn model_name(raw: &str) -> Result<ModelName, InferenceError> {
    ModelName::new(raw).map_err(|e| InferenceError::BadRequest(e.to_string()))
}

/// A path's version segment: a number is a version, anything else an alias.
fn selector_from_segment(raw: &str) -> VersionSelector {
    match raw.parse::<Version>() {
        Ok(v) => VersionSelector::Version(v),
        Err(_) => VersionSelector::Alias(raw.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AliasQuery {
    alias: Option<String>,
}

/// The selector for an unversioned route: `?alias=`, then the `X-Maas-Alias` header, then the
/// default (`production` if it exists, else `latest`).
fn selector_from_request(query: &AliasQuery, headers: &HeaderMap) -> VersionSelector {
    if let Some(alias) = query.alias.as_ref().filter(|a| !a.is_empty()) {
        return VersionSelector::Alias(alias.clone());
    }
    if let Some(alias) = headers.get(ALIAS_HEADER).and_then(|v| v.to_str().ok()) {
        return VersionSelector::Alias(alias.to_string());
    }
    VersionSelector::Default
}

async fn load(
    state: &AppState,
    model: &ModelName,
    selector: &VersionSelector,
) -> Result<Arc<LoadedModel>, InferenceError> {
    let version = state
        .cache
        .resolve(model, selector)
        .await
        .map_err(|e| InferenceError::from_engine(model, None, &e))?;
    state
        .cache
        .get(model, version)
        .await
        .map_err(|e| InferenceError::from_engine(model, Some(version), &e))
}

async fn list_models(
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, InferenceError> {
    let registry = state.cache.registry();
    let storage = |e: maas_registry::RegistryError| {
        InferenceError::Unavailable(format!(
            "the model list can't be read from storage right now ({e}); retry shortly"
        ))
    };
    let mut models = Vec::new();
    for name in registry.models().await.map_err(storage)? {
        let versions = registry.complete_versions(&name).await.map_err(storage)?;
        let aliases = registry.aliases(&name).await.map_err(storage)?;
        models.push(json!({
            "name": name,
            "versions": versions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "aliases": aliases.iter().map(|(a, r)| (a.to_string(), json!(r.version.to_string()))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    Ok(axum::Json(json!({ "models": models })))
}

async fn metadata(
    state: &AppState,
    raw_model: &str,
    selector: VersionSelector,
) -> Result<Response, InferenceError> {
    let model = model_name(raw_model)?;
    let version = state
        .cache
        .resolve(&model, &selector)
        .await
        .map_err(|e| InferenceError::from_engine(&model, None, &e))?;
    let registry = state.cache.registry();
    let manifest = registry
        .manifest(&model, version)
        .await
        .map_err(|e| InferenceError::from_engine(&model, Some(version), &e.into()))?;
    let versions = registry
        .complete_versions(&model)
        .await
        .map_err(|e| InferenceError::from_engine(&model, None, &e.into()))?;
    Ok(axum::Json(json!({
        "name": model,
        "versions": versions.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "platform": manifest.format.platform(),
        "inputs": manifest.inputs,
        "outputs": manifest.outputs,
        "parameters": {
            "version": version.to_string(),
            "features": manifest.features,
            "created_at": manifest.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "card": manifest.card,
        },
    }))
    .into_response())
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    Query(query): Query<AliasQuery>,
    headers: HeaderMap,
) -> Result<Response, InferenceError> {
    metadata(&state, &model, selector_from_request(&query, &headers)).await
}

async fn model_metadata_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, InferenceError> {
    metadata(&state, &model, selector_from_segment(&version)).await
}

async fn ready(
    state: &AppState,
    raw_model: &str,
    selector: VersionSelector,
) -> Result<Response, InferenceError> {
    let model = model_name(raw_model)?;
    match load(state, &model, &selector).await {
        Ok(loaded) => Ok(axum::Json(json!({
            "name": model,
            "version": loaded.manifest().version.to_string(),
            "ready": true,
        }))
        .into_response()),
        Err(InferenceError::Unavailable(reason)) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"name": model, "ready": false, "error": reason})),
        )
            .into_response()),
        Err(other) => Err(other),
    }
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    Query(query): Query<AliasQuery>,
    headers: HeaderMap,
) -> Result<Response, InferenceError> {
    ready(&state, &model, selector_from_request(&query, &headers)).await
}

async fn model_ready_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, InferenceError> {
    ready(&state, &model, selector_from_segment(&version)).await
}

/// Reads the body, refusing more than the limit with 413 before reading it all.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, InferenceError> {
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(InferenceError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| InferenceError::PayloadTooLarge { limit })
}

fn with_facts(mut response: Response, facts: RequestFacts) -> Response {
    response.extensions_mut().insert(facts);
    response
}

async fn run_infer(
    state: &AppState,
    raw_model: &str,
    selector: VersionSelector,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut facts = RequestFacts {
        model: raw_model.to_string(),
        ..RequestFacts::default()
    };
    let result: Result<Response, InferenceError> = async {
        let model = model_name(raw_model)?;
        let body = read_body(state, &headers, body).await?;
        // The model first: asking an unknown model anything is a 404, whatever the body.
        let loaded = load(state, &model, &selector).await?;
        let header_length = headers
            .get(HEADER_CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok());
        let request = decode_infer_request(header_length, &body)?;
        let version = loaded.manifest().version;
        facts.version = Some(version.get());
        facts.rows = request.inputs.first().map_or(0, Tensor::rows);
        let outputs = predict_blocking(&loaded, request.inputs.clone())
            .await
            .map_err(|e| InferenceError::from_engine(&model, Some(version), &e))?;
        let encoded = encode_infer_response(model.as_str(), version.get(), &request, &outputs)?;
        let mut response = Response::new(Body::from(encoded.body));
        let headers = response.headers_mut();
        match encoded.header_length {
            Some(n) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
        }
        Ok(response)
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    with_facts(response, facts)
}

/// Runs a prediction off the async workers: large batches are milliseconds of CPU.
async fn predict_blocking(
    model: &Arc<LoadedModel>,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, maas_engine::EngineError> {
    let rows = inputs.first().map_or(0, Tensor::rows);
    if rows <= 64 {
        // Small batches finish in microseconds: a thread hop would cost more than it saves.
        return model.predict(inputs);
    }
    let model = model.clone();
    tokio::task::spawn_blocking(move || model.predict(inputs))
        .await
        .map_err(|e| maas_engine::EngineError::Inference {
            message: format!("prediction did not finish: {e}"),
        })?
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    Query(query): Query<AliasQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let selector = selector_from_request(&query, &headers);
    run_infer(&state, &model, selector, headers, body).await
}

async fn infer_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(
        &state,
        &model,
        selector_from_segment(&version),
        headers,
        body,
    )
    .await
}

/// Splits `name:predict` (the V1 route's last segment).
fn v1_target(target: &str) -> Result<ModelName, InferenceError> {
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

async fn v1_status(
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
fn v1_rows(loaded: &LoadedModel, instances: &[Value]) -> Result<Tensor, InferenceError> {
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

async fn v1_predict(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    Query(query): Query<AliasQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let model = target.split(':').next().unwrap_or_default().to_string();
    let selector = selector_from_request(&query, &headers);
    run_v1_predict(&state, &model, v1_target(&target), selector, headers, body).await
}

/// `POST /v1/models/{model}/versions/{version}:predict` (TensorFlow Serving's form).
async fn v1_predict_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (version, verb) = target.split_once(':').unwrap_or((target.as_str(), ""));
    let checked = v1_target(&format!("{model}:{verb}"));
    let selector = selector_from_segment(version);
    run_v1_predict(&state, &model, checked, selector, headers, body).await
}

async fn run_v1_predict(
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
        let loaded = load(state, &model, &selector).await?;
        let version = loaded.manifest().version;
        facts.version = Some(version.get());
        facts.rows = instances.len();
        let input = v1_rows(&loaded, instances)?;
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
