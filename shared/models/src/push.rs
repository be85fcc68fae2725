//! Pushing a model file: [`maas_engine::inspect`] refuses what can't be served safely and proves
//! the rest serves, then the file is written as the next version (and an alias moved, if asked).
//! Nothing is written until every check has passed, so a refused push leaves the registry exactly
//! as it was.

use std::collections::BTreeMap;

use bytes::Bytes;
use maas_core::{AliasName, Lineage, Manifest, ManifestTemplate, ModelName};
use maas_engine::{CODE_VERSION, inspect};
use maas_registry::{AliasMove, Registry, RegistryError, VersionDraft};
use sha2::{Digest, Sha256};

use crate::ModelsError;

/// What `maas push` asks for.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// Target model.
    pub model: ModelName,
    /// The file's name as given (for format detection and lineage; directories are dropped).
    pub file_name: String,
    /// The file's bytes.
    pub bytes: Bytes,
    /// User-supplied manifest parts.
    pub template: ManifestTemplate,
    /// Who is pushing.
    pub actor: String,
    /// Alias to point at the new version, if any.
    pub alias: Option<AliasName>,
    /// Why (recorded with the alias move).
    pub reason: Option<String>,
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The new version's manifest.
    pub manifest: Manifest,
    /// The alias move, if one was asked for.
    pub alias: Option<AliasMove>,
}

/// Checks a model file and writes it as the model's next version.
pub async fn push(registry: &Registry, request: PushRequest) -> Result<PushOutcome, ModelsError> {
    let file_name = std::path::Path::new(&request.file_name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string();
    let bytes = request.bytes.clone();
    let template = request.template.clone();
    let name_for_check = file_name.clone();
    // Parsing and optimising is CPU work: keep it off the async workers.
    let inspected =
        tokio::task::spawn_blocking(move || inspect(&name_for_check, &bytes, &template))
            .await
            .map_err(|e| ModelsError::Interrupted {
                what: "the model check",
                message: e.to_string(),
            })??;
    let parent_version = match registry.latest(&request.model).await {
        Ok(v) => Some(v),
        Err(RegistryError::ModelNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let sha256 = hex::encode(Sha256::digest(&request.bytes));
    let template = request.template;
    let draft = VersionDraft {
        format: inspected.format,
        created_by: request.actor.clone(),
        inputs: inspected.inputs,
        outputs: inspected.outputs,
        // The file's own feature names unless the manifest gives others.
        features: template.features.or(inspected.features),
        architecture: inspected.architecture,
        preprocess: template.preprocess.unwrap_or_default(),
        postprocess: template.postprocess.unwrap_or_default(),
        // Tree ensembles take NaN as a missing value, as their libraries do.
        allow_non_finite: template
            .allow_non_finite
            .unwrap_or(inspected.takes_missing_values),
        card: template.card.unwrap_or_default(),
        lineage: Lineage::Pushed {
            file_name,
            sha256,
            parent_version,
            code_version: CODE_VERSION.into(),
        },
        metrics: template.metrics.unwrap_or_default(),
    };
    let artifacts = BTreeMap::from([(inspected.format.artifact_name().to_string(), request.bytes)]);
    let manifest = registry
        .create_version(&request.model, draft, artifacts)
        .await?;
    let alias = match &request.alias {
        Some(alias) => Some(
            registry
                .set_alias(
                    &request.model,
                    alias,
                    manifest.version,
                    &request.actor,
                    request
                        .reason
                        .clone()
                        .or_else(|| Some(format!("pushed as version {}", manifest.version))),
                    serde_json::Value::Null,
                )
                .await?,
        ),
        None => None,
    };
    Ok(PushOutcome { manifest, alias })
}
