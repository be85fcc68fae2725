//! The invariants the registry promises whatever failed when, checked against what a store holds:
//! fault and kill tests run an operation, break it somewhere, and call [`check_model`] after.

use std::collections::{BTreeMap, BTreeSet};

use maas_core::{AuditAction, Lineage, ModelName};
use maas_registry::Registry;
use maas_store::SharedStore;

/// What a model looks like in a store that satisfies every invariant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelState {
    /// Complete versions, ascending.
    pub versions: Vec<u64>,
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
    /// Training job id → the versions whose lineage names it.
    pub versions_by_job: BTreeMap<String, Vec<u64>>,
}

/// Checks, for `model` in `store` (a model that doesn't exist passes with an empty state):
/// - every complete version's artifacts are all there and match the manifest's checksums (no
///   manifest without its artifacts);
/// - every complete version has an applied `version_created` audit record;
/// - every alias points at a complete version, and its move's audit record exists and is
///   marked applied;
/// - no audit record says a change took effect that didn't (the registry's own reading);
/// - a training job has at most one version.
///
/// Returns the model's state, or what is wrong.
pub async fn check_model(store: &SharedStore, model: &str) -> Result<ModelState, String> {
    let registry = Registry::new(store.clone());
    let name = ModelName::new(model).map_err(|e| e.to_string())?;
    let versions = registry
        .complete_versions(&name)
        .await
        .map_err(|e| format!("listing versions: {e}"))?;
    let mut state = ModelState::default();
    let audit = registry
        .audit_log(&name)
        .await
        .map_err(|e| format!("reading the audit trail: {e}"))?;
    let recorded: BTreeSet<u64> = audit
        .iter()
        .filter(|r| r.applied == Some(true))
        .filter_map(|r| match &r.action {
            AuditAction::VersionCreated { version, .. } => Some(version.get()),
            _ => None,
        })
        .collect();
    for version in &versions {
        let manifest = registry
            .manifest(&name, *version)
            .await
            .map_err(|e| format!("version {version}: {e}"))?;
        for artifact in manifest.artifacts.keys() {
            registry
                .artifact(&manifest, artifact)
                .await
                .map_err(|e| format!("version {version} has a manifest but {artifact}: {e}"))?;
        }
        if !recorded.contains(&version.get()) {
            return Err(format!(
                "version {version} exists without an applied audit record"
            ));
        }
        if let Lineage::Trained { job_id, .. } = &manifest.lineage {
            state
                .versions_by_job
                .entry(job_id.clone())
                .or_default()
                .push(version.get());
        }
        state.versions.push(version.get());
    }
    for (job, versions) in &state.versions_by_job {
        if versions.len() > 1 {
            return Err(format!("job {job} wrote versions {versions:?}"));
        }
    }
    for (alias, doc) in registry
        .aliases(&name)
        .await
        .map_err(|e| format!("reading aliases: {e}"))?
    {
        if !versions.contains(&doc.version) {
            return Err(format!(
                "alias {alias} points at {}, which is not a complete version",
                doc.version
            ));
        }
        let Some(id) = &doc.audit_id else {
            return Err(format!("alias {alias} names no audit record"));
        };
        let record = audit
            .iter()
            .find(|r| &r.id == id)
            .ok_or_else(|| format!("alias {alias}'s audit record {id} is missing"))?;
        match &record.action {
            AuditAction::AliasMoved { to, .. } if *to == doc.version => {}
            other => {
                return Err(format!(
                    "alias {alias} at {} names record {id} of {other:?}",
                    doc.version
                ));
            }
        }
        if record.applied != Some(true) {
            return Err(format!("alias {alias}'s record {id} is not marked applied"));
        }
        state.aliases.insert(alias.to_string(), doc.version.get());
    }
    Ok(state)
}
