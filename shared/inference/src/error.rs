//! The HTTP edge's error: a status and a message that tells the caller what to fix. Internal
//! details go to the logs, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maas_core::{ModelName, Version};
use maas_engine::EngineError;
use maas_models::ModelsError;
use maas_registry::RegistryError;
use tracing::error;

/// Everything a request can fail with, by the status it maps to.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InferenceError {
    /// 400: the request is malformed or doesn't fit the model.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such model, version, alias or route.
    #[error("{0}")]
    NotFound(String),
    /// 413: the body is larger than Lambda accepts.
    #[error(
        "the request body is larger than {limit} bytes (Lambda's limit); split the batch into smaller requests"
    )]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 503: the model can't be loaded right now; other models are unaffected.
    #[error("{0}")]
    Unavailable(String),
    /// 500: our failure. The detail is logged; the client sees a generic message.
    #[error("{0}")]
    Internal(String),
    /// A configuration variable is missing or malformed (start-up only).
    #[error("configuration: {0}")]
    Config(String),
}

impl InferenceError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            InferenceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            InferenceError::NotFound(_) => StatusCode::NOT_FOUND,
            InferenceError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InferenceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            InferenceError::Internal(_) | InferenceError::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Maps a failure to resolve or load `model` (at `version`, when known).
    pub fn from_load(model: &ModelName, version: Option<Version>, err: &ModelsError) -> Self {
        match err {
            ModelsError::Engine(e) => Self::from_engine(model, version, e),
            ModelsError::Registry(e) => Self::from_registry(model, version, e),
            ModelsError::Interrupted { .. } => {
                error!(model = %model, error = %err, "model load interrupted");
                InferenceError::Unavailable(format!(
                    "{} could not be loaded just now; retry shortly",
                    which(model, version)
                ))
            }
        }
    }

    /// Maps a registry failure while resolving or reading `model`.
    pub fn from_registry(model: &ModelName, version: Option<Version>, err: &RegistryError) -> Self {
        match err {
            RegistryError::ModelNotFound { .. }
            | RegistryError::VersionNotFound { .. }
            | RegistryError::AliasNotFound { .. } => InferenceError::NotFound(err.to_string()),
            RegistryError::Invalid(e) => InferenceError::BadRequest(e.to_string()),
            RegistryError::Store(e) => {
                error!(model = %model, error = %e, "storage failed");
                InferenceError::Unavailable(format!(
                    "{} can't be read from storage right now; retry shortly",
                    which(model, version)
                ))
            }
            other => {
                error!(model = %model, error = %other, "model can't be loaded");
                InferenceError::Unavailable(format!(
                    "{} can't be loaded (its artifact is corrupted or unsupported; the reason is in the service logs); serve another version or push a fixed one",
                    which(model, version)
                ))
            }
        }
    }

    /// Maps an engine failure of `model` (building it, or predicting).
    pub fn from_engine(model: &ModelName, version: Option<Version>, err: &EngineError) -> Self {
        let which = which(model, version);
        match err {
            EngineError::InvalidInput { .. } | EngineError::NonFiniteInput { .. } => {
                InferenceError::BadRequest(err.to_string())
            }
            EngineError::Inference { .. } => {
                error!(model = %model, error = %err, "inference failed");
                InferenceError::Internal(format!(
                    "{which} failed while predicting; the error is in the service logs"
                ))
            }
            other => {
                error!(model = %model, error = %other, "model can't be loaded");
                InferenceError::Unavailable(format!(
                    "{which} can't be loaded (its artifact is corrupted or unsupported; the reason is in the service logs); serve another version or push a fixed one"
                ))
            }
        }
    }
}

/// "model \"x\"" or "model \"x\" version n", for messages.
fn which(model: &ModelName, version: Option<Version>) -> String {
    match version {
        Some(v) => format!("model \"{model}\" version {v}"),
        None => format!("model \"{model}\""),
    }
}

impl IntoResponse for InferenceError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            InferenceError::Internal(detail) | InferenceError::Config(detail) => {
                error!(detail = %detail, "internal error");
                "internal error; the details are in the service logs".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
