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
use maas_engine::{LoadedModel, Tensor};
use maas_registry::VersionSelector;
use serde::Deserialize;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{info, warn};

use crate::cache::ModelCache;
use crate::metrics::MetricsSink;
use crate::protocol::{HEADER_CONTENT_LENGTH, decode_infer_request, encode_infer_response};
use crate::{InferenceConfig, InferenceError, v1};

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
pub(crate) struct RequestFacts {
    pub(crate) model: String,
    pub(crate) version: Option<u64>,
    pub(crate) rows: usize,
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
        .route("/v1/models/{target}", post(v1::predict).get(v1::status))
        .route(
            "/v1/models/{model}/versions/{target}",
            post(v1::predict_versioned),
        )
        .fallback(|| async {
            InferenceError::NotFound(
                "no such route; see /v2 (Open Inference Protocol) and /v1/models/{model}:predict"
                    .into(),
            )
        })
        // A panic in a handler (a bug) answers that one request with a 500; the process and
        // every other request go on. Inside the log layer, so the 500 is logged and counted.
        .layer(catch_panics())
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// The layer that turns a handler's panic into that request's 500.
fn catch_panics() -> CatchPanicLayer<fn(Box<dyn std::any::Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(panic_response as fn(_) -> Response)
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = what, "a request handler panicked");
    InferenceError::Internal(format!("handler panicked: {what}")).into_response()
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
            &metric_dimensions(&facts, &class),
            &[
                ("latency_ms", "Milliseconds", latency_ms),
                ("rows", "Count", facts.rows as f64),
            ],
        );
    }
    response
}

/// The EMF dimensions of a request's metrics: per model and status class only for a model that
/// exists (one that was loaded for the request); a request for anything else counts in the
/// stack-wide series alone, so callers can't mint CloudWatch metrics by inventing model names.
fn metric_dimensions<'a>(facts: &'a RequestFacts, class: &'a str) -> Vec<(&'a str, &'a str)> {
    if facts.version.is_some() {
        vec![("model", facts.model.as_str()), ("status", class)]
    } else {
        Vec::new()
    }
}

async fn server_metadata() -> impl IntoResponse {
    axum::Json(json!({
        "name": "maas",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository_listing", "v1_predict"],
    }))
}

pub(crate) fn model_name(raw: &str) -> Result<ModelName, InferenceError> {
    ModelName::new(raw).map_err(|e| InferenceError::BadRequest(e.to_string()))
}

/// A path's version segment: a number is a version, anything else an alias.
pub(crate) fn selector_from_segment(raw: &str) -> VersionSelector {
    match raw.parse::<Version>() {
        Ok(v) => VersionSelector::Version(v),
        Err(_) => VersionSelector::Alias(raw.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AliasQuery {
    alias: Option<String>,
}

/// The selector for an unversioned route: `?alias=`, then the `X-Maas-Alias` header, then the
/// default (`production` if it exists, else `latest`).
pub(crate) fn selector_from_request(query: &AliasQuery, headers: &HeaderMap) -> VersionSelector {
    if let Some(alias) = query.alias.as_ref().filter(|a| !a.is_empty()) {
        return VersionSelector::Alias(alias.clone());
    }
    if let Some(alias) = headers.get(ALIAS_HEADER).and_then(|v| v.to_str().ok()) {
        return VersionSelector::Alias(alias.to_string());
    }
    VersionSelector::Default
}

pub(crate) async fn load(
    state: &AppState,
    model: &ModelName,
    selector: &VersionSelector,
) -> Result<Arc<LoadedModel>, InferenceError> {
    let version = state
        .cache
        .resolve(model, selector)
        .await
        .map_err(|e| InferenceError::from_load(model, None, &e))?;
    state
        .cache
        .get(model, version)
        .await
        .map_err(|e| InferenceError::from_load(model, Some(version), &e))
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
        .map_err(|e| InferenceError::from_load(&model, None, &e))?;
    let registry = state.cache.registry();
    let manifest = registry
        .manifest(&model, version)
        .await
        .map_err(|e| InferenceError::from_registry(&model, Some(version), &e))?;
    let versions = registry
        .complete_versions(&model)
        .await
        .map_err(|e| InferenceError::from_registry(&model, None, &e))?;
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
pub(crate) async fn read_body(
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

pub(crate) fn with_facts(mut response: Response, facts: RequestFacts) -> Response {
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
pub(crate) async fn predict_blocking(
    model: &Arc<LoadedModel>,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, maas_engine::EngineError> {
    let rows = inputs.first().map_or(0, Tensor::rows);
    let model = model.clone();
    run_blocking(rows, move || model.predict(inputs)).await
}

/// Runs a prediction of `rows` rows: inline for a small batch, which finishes in microseconds
/// (a thread hop would cost more than it saves), else on the blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    rows: usize,
    predict: impl FnOnce() -> Result<T, maas_engine::EngineError> + Send + 'static,
) -> Result<T, maas_engine::EngineError> {
    if rows <= 64 {
        return predict();
    }
    tokio::task::spawn_blocking(predict)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn only_models_that_exist_get_a_metric_dimension() {
        // Regression: any URL segment became a `model` dimension, a new CloudWatch metric each.
        let unknown = RequestFacts {
            model: "made-up-1234".into(),
            version: None,
            rows: 0,
        };
        assert!(metric_dimensions(&unknown, "4xx").is_empty());
        let known = RequestFacts {
            model: "seed".into(),
            version: Some(1),
            rows: 3,
        };
        assert_eq!(
            metric_dimensions(&known, "2xx"),
            [("model", "seed"), ("status", "2xx")]
        );
    }

    /// A handler that panics answers its request with a 500 and a JSON error; the same router
    /// goes on answering the next request.
    #[tokio::test]
    async fn a_panicking_handler_is_that_requests_500_and_the_router_goes_on() {
        let router: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("a bug");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(catch_panics());
        let response = router
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert!(
            doc["error"]
                .as_str()
                .is_some_and(|e| e.contains("internal error")),
            "{doc}"
        );
        let response = router
            .oneshot(Request::get("/fine").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
