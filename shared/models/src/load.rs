//! Loading a version to serve: resolve the selector, fetch the manifest and primary artifact,
//! then build the engine on one blocking thread while another checks the artifact's SHA-256.
//! The model is returned only if the check passes, and a corrupted artifact is reported as such
//! even when it also fails to parse.

use std::time::Instant;

use maas_core::{ModelName, Version};
use maas_engine::LoadedModel;
use maas_registry::{Registry, VersionSelector};
use tracing::{info, instrument};

use crate::ModelsError;

/// Resolves `selector`, then loads that version (see [`load_version`]).
pub async fn load(
    registry: &Registry,
    model: &ModelName,
    selector: &VersionSelector,
) -> Result<LoadedModel, ModelsError> {
    let version = match selector {
        VersionSelector::Version(v) => *v,
        other => registry.resolve(model, other).await?,
    };
    load_version(registry, model, version).await
}

/// Fetches one version's manifest and primary artifact and builds its engine beside the
/// artifact's checksum.
#[instrument(skip_all, fields(model = %model, version = %version))]
pub async fn load_version(
    registry: &Registry,
    model: &ModelName,
    version: Version,
) -> Result<LoadedModel, ModelsError> {
    let started = Instant::now();
    let manifest = registry.manifest(model, version).await?;
    let name = manifest.format.artifact_name();
    let artifact = registry.artifact_unchecked(&manifest, name).await?;
    let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
    let check = {
        let (manifest, artifact) = (manifest.clone(), artifact.clone());
        tokio::task::spawn_blocking(move || Registry::check_artifact(&manifest, name, &artifact))
    };
    let build =
        tokio::task::spawn_blocking(move || LoadedModel::from_artifact(manifest, &artifact));
    let unfinished = |e: tokio::task::JoinError| ModelsError::Interrupted {
        what: "the model load",
        message: e.to_string(),
    };
    let (checked, built) = tokio::join!(check, build);
    checked.map_err(unfinished)??;
    let loaded = built.map_err(unfinished)??.with_fetch_ms(fetch_ms);
    let timings = loaded.timings();
    info!(
        model = %model,
        version = %version,
        fetch_ms = timings.fetch_ms,
        build_ms = timings.build_ms,
        bytes = loaded.artifact_bytes(),
        "model loaded"
    );
    Ok(loaded)
}
