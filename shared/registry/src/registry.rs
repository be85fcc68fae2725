//! [`Registry`]: reading and writing versions, aliases and audit records.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use maas_core::{
    AliasName, Architecture, ArtifactInfo, AuditAction, AuditRecord, FORMAT_VERSION, Lineage,
    Manifest, ModelCard, ModelFormat, ModelName, Postprocess, Preprocess, TensorSpec, Version,
};
use maas_store::{ETag, PutCondition, SharedStore, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::{info, instrument, warn};

use crate::{RegistryError, keys};

/// How often a writer retries a contested claim or alias before giving up.
const MAX_ATTEMPTS: u32 = 64;

/// Which version a caller wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// Exactly this version.
    Version(Version),
    /// Whatever this alias points at (`latest` is the highest complete version).
    Alias(String),
    /// `production` if that alias exists, else `latest`.
    Default,
}

/// An alias document: `models/{m}/aliases/{alias}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// The version the alias points at.
    pub version: Version,
    /// When it was last moved (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Who moved it.
    pub updated_by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The audit record of the move that put the alias here (written before the move): the
    /// alias confirms that record, and through its `replaces` link, every earlier move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
}

/// The outcome of [`Registry::set_alias`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    /// Where the alias pointed before.
    pub from: Option<Version>,
    /// Where it points now.
    pub to: Version,
    /// False when it already pointed there (nothing written, nothing audited).
    pub changed: bool,
}

/// One line of `maas versions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionSummary {
    /// The version.
    pub version: Version,
    /// Its primary format.
    pub format: ModelFormat,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who wrote it.
    pub created_by: String,
    /// `pushed` or `trained`.
    pub source: String,
    /// Aliases pointing at it (including `latest`).
    pub aliases: Vec<String>,
}

/// Everything a new version's manifest holds that the registry does not compute itself.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDraft {
    /// Primary format; the artifact `format.artifact_name()` must be among the artifacts.
    pub format: ModelFormat,
    /// Who is writing the version.
    pub created_by: String,
    /// Model inputs.
    pub inputs: Vec<TensorSpec>,
    /// Model outputs.
    pub outputs: Vec<TensorSpec>,
    /// Feature names.
    pub features: Option<Vec<String>>,
    /// Network description for safetensors.
    pub architecture: Option<Architecture>,
    /// Input preprocessing.
    pub preprocess: Preprocess,
    /// Output postprocessing.
    pub postprocess: Postprocess,
    /// Whether NaN/Inf inputs are allowed.
    pub allow_non_finite: bool,
    /// Model card.
    pub card: ModelCard,
    /// Provenance.
    pub lineage: Lineage,
    /// Evaluation results.
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The registry over one store.
#[derive(Debug, Clone)]
pub struct Registry {
    store: SharedStore,
}

#[derive(Serialize)]
struct Claim<'a> {
    claimed_by: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    claimed_at: OffsetDateTime,
}

impl Registry {
    /// A registry in `store`.
    pub fn new(store: SharedStore) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, ETag)>, RegistryError> {
        match self.store.get(key).await {
            Ok(obj) => {
                let doc = serde_json::from_slice(&obj.body).map_err(|e| {
                    RegistryError::CorruptDocument {
                        key: key.to_string(),
                        message: e.to_string(),
                    }
                })?;
                Ok(Some((doc, obj.etag)))
            }
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn to_json<T: Serialize>(doc: &T) -> Result<Bytes, RegistryError> {
        serde_json::to_vec_pretty(doc)
            .map(Bytes::from)
            .map_err(|e| RegistryError::InvalidDraft(e.to_string()))
    }

    /// Names of every model with at least one complete version.
    ///
    /// Lists folders, not objects: one entry per model and one per version number, then the
    /// highest version's manifest — what it costs does not grow with the audit trail, the
    /// aliases or the artifacts.
    pub async fn models(&self) -> Result<Vec<ModelName>, RegistryError> {
        let mut names = Vec::new();
        for folder in self.store.list_folders(keys::MODELS).await? {
            let Ok(name) = ModelName::new(folder) else {
                continue;
            };
            if self.has_complete_version(&name).await? {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Whether `model` has a complete version, looking from the highest number down (a lower
    /// one is only read when a writer died before finishing the highest).
    async fn has_complete_version(&self, model: &ModelName) -> Result<bool, RegistryError> {
        let mut numbers: Vec<u64> = self
            .store
            .list_folders(&keys::versions_prefix(model))
            .await?
            .iter()
            .filter_map(|f| f.parse().ok())
            .collect();
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        for number in numbers {
            let Ok(version) = Version::new(number) else {
                continue;
            };
            match self
                .store
                .head(&keys::version_file(model, version, keys::MANIFEST))
                .await
            {
                Ok(_) => return Ok(true),
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Complete versions of `model`, ascending. Empty if the model has none.
    pub async fn complete_versions(
        &self,
        model: &ModelName,
    ) -> Result<Vec<Version>, RegistryError> {
        let listed = self.store.list(&keys::versions_prefix(model)).await?;
        let mut versions: Vec<Version> = listed
            .iter()
            .filter_map(|o| keys::parse_version_key(&o.key))
            .filter(|(_, _, file)| *file == keys::MANIFEST)
            .map(|(_, v, _)| v)
            .collect();
        versions.sort();
        versions.dedup();
        Ok(versions)
    }

    /// The highest complete version (the implicit `latest` alias).
    pub async fn latest(&self, model: &ModelName) -> Result<Version, RegistryError> {
        self.complete_versions(model)
            .await?
            .last()
            .copied()
            .ok_or_else(|| RegistryError::ModelNotFound {
                model: model.clone(),
            })
    }

    /// A version's manifest.
    pub async fn manifest(
        &self,
        model: &ModelName,
        version: Version,
    ) -> Result<Manifest, RegistryError> {
        let key = keys::version_file(model, version, keys::MANIFEST);
        match self.get_json::<Manifest>(&key).await? {
            Some((manifest, _)) => {
                if manifest.name != *model || manifest.version != version {
                    return Err(RegistryError::CorruptDocument {
                        key,
                        message: format!(
                            "it describes {} version {}",
                            manifest.name, manifest.version
                        ),
                    });
                }
                Ok(manifest)
            }
            None => Err(self.missing_version(model, version).await),
        }
    }

    async fn missing_version(&self, model: &ModelName, version: Version) -> RegistryError {
        match self.complete_versions(model).await {
            Ok(v) if v.is_empty() => RegistryError::ModelNotFound {
                model: model.clone(),
            },
            Ok(_) => RegistryError::VersionNotFound {
                model: model.clone(),
                version,
            },
            Err(e) => e,
        }
    }

    /// Reads an artifact of a version and checks it against the manifest's SHA-256 and size.
    #[instrument(skip_all, fields(model = %manifest.name, version = %manifest.version, artifact))]
    pub async fn artifact(
        &self,
        manifest: &Manifest,
        artifact: &str,
    ) -> Result<Bytes, RegistryError> {
        let body = self.artifact_unchecked(manifest, artifact).await?;
        Self::check_artifact(manifest, artifact, &body)?;
        Ok(body)
    }

    /// Reads an artifact of a version without checking it: a caller that checks it with
    /// [`Registry::check_artifact`] while it does other work (a model load parses the bytes on
    /// one core while the other hashes them) must not use the bytes until the check passes.
    pub async fn artifact_unchecked(
        &self,
        manifest: &Manifest,
        artifact: &str,
    ) -> Result<Bytes, RegistryError> {
        if !manifest.artifacts.contains_key(artifact) {
            return Err(RegistryError::CorruptDocument {
                key: keys::version_file(&manifest.name, manifest.version, keys::MANIFEST),
                message: format!("it lists no artifact named {artifact:?}"),
            });
        }
        let key = keys::version_file(&manifest.name, manifest.version, artifact);
        Ok(self.store.get(&key).await?.body)
    }

    /// Checks an artifact's bytes against the manifest's SHA-256 and size.
    pub fn check_artifact(
        manifest: &Manifest,
        artifact: &str,
        body: &[u8],
    ) -> Result<(), RegistryError> {
        let expected =
            manifest
                .artifacts
                .get(artifact)
                .ok_or_else(|| RegistryError::CorruptDocument {
                    key: keys::version_file(&manifest.name, manifest.version, keys::MANIFEST),
                    message: format!("it lists no artifact named {artifact:?}"),
                })?;
        let actual = sha256_hex(body);
        if actual != expected.sha256 || body.len() as u64 != expected.size {
            let key = keys::version_file(&manifest.name, manifest.version, artifact);
            warn!(%key, "artifact checksum mismatch");
            return Err(RegistryError::CorruptArtifact {
                model: manifest.name.clone(),
                version: manifest.version,
                artifact: artifact.to_string(),
                expected: expected.sha256.clone(),
                expected_size: expected.size,
                actual,
                actual_size: body.len() as u64,
            });
        }
        Ok(())
    }

    /// The alias document, if the alias exists.
    pub async fn alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
    ) -> Result<Option<AliasRecord>, RegistryError> {
        Ok(self
            .get_json::<AliasRecord>(&keys::alias(model, alias))
            .await?
            .map(|(doc, _)| doc))
    }

    /// Every explicit alias of a model.
    pub async fn aliases(
        &self,
        model: &ModelName,
    ) -> Result<BTreeMap<AliasName, AliasRecord>, RegistryError> {
        let mut out = BTreeMap::new();
        for obj in self.store.list(&keys::alias_prefix(model)).await? {
            let Some(name) = obj
                .key
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|n| AliasName::new(n).ok())
            else {
                continue;
            };
            if let Some((doc, _)) = self.get_json::<AliasRecord>(&obj.key).await? {
                out.insert(name, doc);
            }
        }
        Ok(out)
    }

    /// Turns a selector into a concrete, complete version.
    pub async fn resolve(
        &self,
        model: &ModelName,
        selector: &VersionSelector,
    ) -> Result<Version, RegistryError> {
        match selector {
            VersionSelector::Version(v) => {
                if self.complete_versions(model).await?.contains(v) {
                    Ok(*v)
                } else {
                    Err(self.missing_version(model, *v).await)
                }
            }
            VersionSelector::Alias(name) if name == AliasName::LATEST => self.latest(model).await,
            VersionSelector::Alias(name) => {
                let alias = AliasName::new(name.as_str())?;
                match self.alias(model, &alias).await? {
                    Some(record) => Ok(record.version),
                    None => {
                        // Say "no such model" rather than "no such alias" when the model is unknown.
                        self.latest(model).await?;
                        Err(RegistryError::AliasNotFound {
                            model: model.clone(),
                            alias: name.clone(),
                        })
                    }
                }
            }
            VersionSelector::Default => {
                let production = AliasName::new(AliasName::PRODUCTION)?;
                match self.alias(model, &production).await? {
                    Some(record) => Ok(record.version),
                    None => self.latest(model).await,
                }
            }
        }
    }

    /// Highest version number anyone has claimed (complete or not), 0 if none.
    async fn highest_claimed(&self, model: &ModelName) -> Result<u64, RegistryError> {
        Ok(self
            .store
            .list(&keys::versions_prefix(model))
            .await?
            .iter()
            .filter_map(|o| keys::parse_version_key(&o.key))
            .map(|(_, v, _)| v.get())
            .max()
            .unwrap_or(0))
    }

    /// Writes a new version: claims the next number with a conditional create, writes the
    /// artifacts, then the manifest (the commit point), then the audit record.
    ///
    /// `artifacts` maps file names to bytes and must contain `draft.format.artifact_name()`.
    #[instrument(skip_all, fields(model = %model))]
    pub async fn create_version(
        &self,
        model: &ModelName,
        draft: VersionDraft,
        artifacts: BTreeMap<String, Bytes>,
    ) -> Result<Manifest, RegistryError> {
        let primary = draft.format.artifact_name();
        if !artifacts.contains_key(primary) {
            return Err(RegistryError::InvalidDraft(format!(
                "a {} version needs an artifact named {primary}",
                draft.format
            )));
        }
        for name in artifacts.keys() {
            let ok = !name.is_empty()
                && name != keys::MANIFEST
                && name != keys::CLAIM
                && !name.contains('/')
                && maas_store::validate_key(name).is_ok();
            if !ok {
                return Err(RegistryError::InvalidDraft(format!(
                    "artifact name {name:?} is not a plain file name"
                )));
            }
        }

        let version = self.claim_next_version(model, &draft.created_by).await?;
        let mut recorded = BTreeMap::new();
        for (name, body) in &artifacts {
            recorded.insert(
                name.clone(),
                ArtifactInfo {
                    sha256: sha256_hex(body),
                    size: body.len() as u64,
                },
            );
            let key = keys::version_file(model, version, name);
            self.store
                .put(&key, body.clone(), PutCondition::None)
                .await?;
        }
        let manifest = Manifest {
            manifest_version: FORMAT_VERSION,
            name: model.clone(),
            version,
            format: draft.format,
            created_at: OffsetDateTime::now_utc(),
            created_by: draft.created_by,
            artifacts: recorded,
            inputs: draft.inputs,
            outputs: draft.outputs,
            features: draft.features,
            architecture: draft.architecture,
            preprocess: draft.preprocess,
            postprocess: draft.postprocess,
            allow_non_finite: draft.allow_non_finite,
            card: draft.card,
            lineage: draft.lineage,
            metrics: draft.metrics,
        };
        // The audit record first, as the intent; the manifest, written last, confirms it. A
        // crash between the two leaves a record of a version that never appeared (a gap),
        // never a version without its record.
        let source = match manifest.lineage {
            Lineage::Pushed { .. } => "pushed",
            Lineage::Trained { .. } => "trained",
        };
        self.write_record(
            model,
            &manifest.created_by,
            AuditAction::VersionCreated {
                version,
                source: source.to_string(),
                sha256: manifest.artifacts[primary].sha256.clone(),
            },
            None,
            serde_json::Value::Null,
            true,
        )
        .await?;
        let manifest_key = keys::version_file(model, version, keys::MANIFEST);
        self.store
            .put(
                &manifest_key,
                Self::to_json(&manifest)?,
                PutCondition::IfNoneMatch,
            )
            .await?;
        info!(model = %model, version = %version, format = %manifest.format, "version created");
        Ok(manifest)
    }

    async fn claim_next_version(
        &self,
        model: &ModelName,
        actor: &str,
    ) -> Result<Version, RegistryError> {
        let mut candidate = self.highest_claimed(model).await?.saturating_add(1);
        for _ in 0..MAX_ATTEMPTS {
            let version = Version::new(candidate)?;
            let key = keys::version_file(model, version, keys::CLAIM);
            let claim = Self::to_json(&Claim {
                claimed_by: actor,
                claimed_at: OffsetDateTime::now_utc(),
            })?;
            match self.store.put(&key, claim, PutCondition::IfNoneMatch).await {
                Ok(_) => return Ok(version),
                Err(StoreError::AlreadyExists { .. }) => candidate += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contention {
            key: keys::versions_prefix(model),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Points `alias` at `version` with compare-and-swap, and records the move.
    ///
    /// The audit record is written first, as the intent, naming the record of the move it
    /// replaces; the alias document then names it. A crash (or a lost race) between the two
    /// leaves a record no alias document leads to, which [`Registry::audit_log`] reports as not
    /// applied; a move without its record can't happen.
    #[instrument(skip_all, fields(model = %model, alias = %alias, version = %version))]
    pub async fn set_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        version: Version,
        actor: &str,
        reason: Option<String>,
        details: serde_json::Value,
    ) -> Result<AliasMove, RegistryError> {
        // The target must be a complete version.
        self.manifest(model, version).await?;
        let key = keys::alias(model, alias);
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get_json::<AliasRecord>(&key).await?;
            let from = current.as_ref().map(|(doc, _)| doc.version);
            if from == Some(version) {
                return Ok(AliasMove {
                    from,
                    to: version,
                    changed: false,
                });
            }
            let intent = self
                .write_record(
                    model,
                    actor,
                    AuditAction::AliasMoved {
                        alias: alias.clone(),
                        from,
                        to: version,
                        replaces: current.as_ref().and_then(|(doc, _)| doc.audit_id.clone()),
                    },
                    reason.clone(),
                    details.clone(),
                    true,
                )
                .await?;
            let record = AliasRecord {
                version,
                updated_at: OffsetDateTime::now_utc(),
                updated_by: actor.to_string(),
                reason: reason.clone(),
                audit_id: Some(intent.id.clone()),
            };
            let condition = match &current {
                Some((_, etag)) => PutCondition::IfMatch(etag.clone()),
                None => PutCondition::IfNoneMatch,
            };
            match self
                .store
                .put(&key, Self::to_json(&record)?, condition)
                .await
            {
                Ok(_) => {
                    info!(?from, to = %version, "alias moved");
                    return Ok(AliasMove {
                        from,
                        to: version,
                        changed: true,
                    });
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. }) => {
                    // Another writer moved it first; this intent stays unapplied.
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contention {
            key,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Appends an event that changes nothing by itself (e.g. a declined promotion) to the
    /// model's audit trail.
    pub async fn record(
        &self,
        model: &ModelName,
        actor: &str,
        action: AuditAction,
        reason: Option<String>,
        details: serde_json::Value,
    ) -> Result<AuditRecord, RegistryError> {
        self.write_record(model, actor, action, reason, details, false)
            .await
    }

    async fn write_record(
        &self,
        model: &ModelName,
        actor: &str,
        action: AuditAction,
        reason: Option<String>,
        details: serde_json::Value,
        intent: bool,
    ) -> Result<AuditRecord, RegistryError> {
        let at = OffsetDateTime::now_utc();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let record = AuditRecord {
            id: id.clone(),
            at,
            actor: actor.to_string(),
            model: model.clone(),
            action,
            reason,
            details,
            intent,
            applied: None,
        };
        self.store
            .put(
                &keys::audit(model, at, &id),
                Self::to_json(&record)?,
                PutCondition::IfNoneMatch,
            )
            .await?;
        Ok(record)
    }

    /// The model's audit trail, oldest first, each record of a change marked with whether the
    /// change took effect ([`AuditRecord::applied`]): a version record is applied when the
    /// version's manifest exists with the recorded checksum, an alias move when the alias's
    /// chain of records — from its current document back through each record's `replaces` —
    /// reaches it.
    pub async fn audit_log(&self, model: &ModelName) -> Result<Vec<AuditRecord>, RegistryError> {
        let mut out = Vec::new();
        for obj in self.store.list(&keys::audit_prefix(model)).await? {
            if let Some((record, _)) = self.get_json::<AuditRecord>(&obj.key).await? {
                out.push(record);
            }
        }
        let complete: BTreeSet<Version> =
            self.complete_versions(model).await?.into_iter().collect();
        let mut applied_moves = BTreeSet::new();
        for (_, doc) in self.aliases(model).await? {
            let mut next = doc.audit_id;
            while let Some(id) = next.take() {
                if !applied_moves.insert(id.clone()) {
                    break;
                }
                next = out
                    .iter()
                    .find(|r| r.id == id)
                    .and_then(|r| match &r.action {
                        AuditAction::AliasMoved { replaces, .. } => replaces.clone(),
                        _ => None,
                    });
            }
        }
        for record in &mut out {
            if !record.intent {
                continue;
            }
            record.applied = match &record.action {
                AuditAction::VersionCreated {
                    version, sha256, ..
                } => Some(
                    complete.contains(version)
                        && self.manifest(model, *version).await.is_ok_and(|m| {
                            m.artifacts.get(m.format.artifact_name()).map(|a| &a.sha256)
                                == Some(sha256)
                        }),
                ),
                AuditAction::AliasMoved { .. } => Some(applied_moves.contains(&record.id)),
                AuditAction::PromotionDeclined { .. } => None,
            };
        }
        Ok(out)
    }

    /// Summaries of every complete version, with the aliases pointing at each.
    pub async fn version_summaries(
        &self,
        model: &ModelName,
    ) -> Result<Vec<VersionSummary>, RegistryError> {
        let versions = self.complete_versions(model).await?;
        if versions.is_empty() {
            return Err(RegistryError::ModelNotFound {
                model: model.clone(),
            });
        }
        let aliases = self.aliases(model).await?;
        let latest = versions.last().copied();
        let mut out = Vec::with_capacity(versions.len());
        for version in versions {
            let manifest = self.manifest(model, version).await?;
            let mut names: Vec<String> = aliases
                .iter()
                .filter(|(_, rec)| rec.version == version)
                .map(|(name, _)| name.to_string())
                .collect();
            if Some(version) == latest {
                names.push(AliasName::LATEST.to_string());
            }
            out.push(VersionSummary {
                version,
                format: manifest.format,
                created_at: manifest.created_at,
                created_by: manifest.created_by,
                source: match manifest.lineage {
                    Lineage::Pushed { .. } => "pushed".into(),
                    Lineage::Trained { .. } => "trained".into(),
                },
                aliases: names,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use maas_core::DataType;
    use maas_store::{MemoryStore, ObjectStore};

    use super::*;

    fn draft() -> VersionDraft {
        VersionDraft {
            format: ModelFormat::Onnx,
            created_by: "tester".into(),
            inputs: vec![TensorSpec {
                name: "input".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 3],
            }],
            outputs: vec![],
            features: None,
            architecture: None,
            preprocess: Preprocess::None,
            postprocess: Postprocess::Identity,
            allow_non_finite: false,
            card: ModelCard::default(),
            lineage: Lineage::Pushed {
                file_name: "m.onnx".into(),
                sha256: "x".into(),
                parent_version: None,
                code_version: "test".into(),
            },
            metrics: BTreeMap::new(),
        }
    }

    fn artifacts(content: &'static [u8]) -> BTreeMap<String, Bytes> {
        BTreeMap::from([("model.onnx".to_string(), Bytes::from_static(content))])
    }

    fn name(n: &str) -> ModelName {
        ModelName::new(n).expect("valid")
    }

    #[tokio::test]
    async fn versions_count_up_and_latest_follows() {
        let reg = Registry::new(Arc::new(MemoryStore::new()));
        let m = name("m");
        let v1 = reg
            .create_version(&m, draft(), artifacts(b"one"))
            .await
            .expect("v1");
        let v2 = reg
            .create_version(&m, draft(), artifacts(b"two"))
            .await
            .expect("v2");
        assert_eq!((v1.version.get(), v2.version.get()), (1, 2));
        assert_eq!(reg.latest(&m).await.expect("latest").get(), 2);
        assert_eq!(reg.models().await.expect("models"), vec![m.clone()]);
        let body = reg.artifact(&v1, "model.onnx").await.expect("artifact");
        assert_eq!(&body[..], b"one");
    }

    #[tokio::test]
    async fn a_crashed_writer_leaves_a_gap_not_a_version() {
        // GIVEN a claim and an artifact for version 1 but no manifest (the writer died)
        let store = Arc::new(MemoryStore::new());
        let reg = Registry::new(store.clone());
        let m = name("m");
        store
            .put(
                "models/m/versions/1/claim.json",
                Bytes::from_static(b"{}"),
                PutCondition::IfNoneMatch,
            )
            .await
            .expect("claim");
        store
            .put(
                "models/m/versions/1/model.onnx",
                Bytes::from_static(b"half"),
                PutCondition::None,
            )
            .await
            .expect("artifact");
        // THEN readers see no model, and the next writer gets version 2
        assert!(matches!(
            reg.latest(&m).await,
            Err(RegistryError::ModelNotFound { .. })
        ));
        let v = reg
            .create_version(&m, draft(), artifacts(b"x"))
            .await
            .expect("v2");
        assert_eq!(v.version.get(), 2);
        assert_eq!(
            reg.complete_versions(&m).await.expect("list"),
            vec![v.version]
        );
    }

    #[tokio::test]
    async fn a_tampered_artifact_is_refused() {
        let store = Arc::new(MemoryStore::new());
        let reg = Registry::new(store.clone());
        let m = name("m");
        let v = reg
            .create_version(&m, draft(), artifacts(b"good"))
            .await
            .expect("v1");
        store
            .put(
                "models/m/versions/1/model.onnx",
                Bytes::from_static(b"evil"),
                PutCondition::None,
            )
            .await
            .expect("tamper");
        let err = reg.artifact(&v, "model.onnx").await.expect_err("corrupt");
        assert!(err.to_string().contains("corrupted"), "{err}");
    }

    #[tokio::test]
    async fn aliases_move_with_audit_and_default_prefers_production() {
        let reg = Registry::new(Arc::new(MemoryStore::new()));
        let m = name("m");
        reg.create_version(&m, draft(), artifacts(b"1"))
            .await
            .expect("v1");
        reg.create_version(&m, draft(), artifacts(b"2"))
            .await
            .expect("v2");
        let v1 = Version::FIRST;
        assert_eq!(
            reg.resolve(&m, &VersionSelector::Default)
                .await
                .expect("default")
                .get(),
            2
        );

        let prod = AliasName::new("production").expect("valid");
        let moved = reg
            .set_alias(
                &m,
                &prod,
                v1,
                "ana",
                Some("rollback".into()),
                serde_json::Value::Null,
            )
            .await
            .expect("promote");
        assert_eq!(
            moved,
            AliasMove {
                from: None,
                to: v1,
                changed: true
            }
        );
        assert_eq!(
            reg.resolve(&m, &VersionSelector::Default)
                .await
                .expect("default"),
            v1
        );
        let again = reg
            .set_alias(&m, &prod, v1, "ana", None, serde_json::Value::Null)
            .await
            .expect("idempotent");
        assert!(!again.changed);

        let log = reg.audit_log(&m).await.expect("audit");
        let moves: Vec<_> = log
            .iter()
            .filter(|r| matches!(r.action, AuditAction::AliasMoved { .. }))
            .collect();
        assert_eq!(moves.len(), 1, "the no-op move is not audited");
        assert_eq!(moves[0].actor, "ana");
        assert_eq!(moves[0].reason.as_deref(), Some("rollback"));
        assert_eq!(log.len(), 3, "two versions created, one alias move");

        let missing = reg
            .set_alias(
                &m,
                &prod,
                Version::new(9).expect("9"),
                "ana",
                None,
                serde_json::Value::Null,
            )
            .await
            .expect_err("no v9");
        assert!(matches!(missing, RegistryError::VersionNotFound { .. }));
        let unknown = reg
            .resolve(&m, &VersionSelector::Alias("staging".into()))
            .await
            .expect_err("no staging");
        assert!(unknown.to_string().contains("maas promote"), "{unknown}");
    }
}
