//! A training job against a store: status, checkpoints, the new version and the promotion.
//!
//! ```text
//! jobs/{id}/spec.json                    the resolved spec (a re-submitted id must match it)
//! jobs/{id}/status.json                  queued | running | paused | succeeded | failed
//! jobs/{id}/checkpoint/state.safetensors weights, optimizer buffers, best weights + JSON metadata
//! ```
//!
//! One process runs a job at a time: it holds a lease in `status.json`, written by
//! compare-and-swap on the status's ETag and renewed after every epoch. A second run of the same
//! job (a redelivered S3 event, a retried invocation) finds the lease held and returns
//! [`JobOutcome::Busy`]; a run whose lease has expired (its process died) is taken over. A run
//! that loses its lease stops before writing anything more, so one job never writes two versions.
//!
//! The job checkpoints after every epoch. Run again with the same id, it resumes from the
//! checkpoint (refusing if the dataset changed since). Given a deadline (Lambda's), it stops
//! before an epoch that would not finish in time, with status `paused`. Only a finished job
//! writes a version, in one [`Registry::create_version`] call, so a failed or paused job leaves
//! none behind.
//!
//! A job id maps to at most one version, whatever fails when: right after the version exists it
//! is recorded in `status.json` by compare-and-swap, before the promotion and the `succeeded`
//! status; a rerun finds it there — or, if the run died before recording it, finds the version
//! whose lineage names the job — and finishes the job instead of training again. Before writing,
//! the ONNX export and the safetensors weights are loaded by the serving engines (tract and
//! candle) and must agree with each other and with the trainer.
//!
//! This module runs a job (claim, train, checkpoint, pause); its parts live beside it: `lease`
//! (the status written by compare-and-swap), `checkpoint` (the trainer state as a file),
//! `publish` (the version, and finishing a job whose version exists) and `promotion` (the
//! policy).

use std::time::{Duration, Instant};

use bytes::Bytes;
use maas_core::{Manifest, ModelName, Preprocess, Version};
use maas_registry::Registry;
use maas_store::{PutCondition, SharedStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::{info, warn};

mod checkpoint;
mod lease;
mod promotion;
mod publish;

use checkpoint::{decode_checkpoint, encode_checkpoint};
use lease::StatusWriter;

use crate::TrainError;
use crate::data;
use crate::spec::{JobSpec, validate_job_id};
use crate::trainer::{EpochRecord, Progress, RunOutcome, Trainer, TrainerState};

/// Time kept free before a deadline for writing the checkpoint and the status.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);
/// The lease a run takes when it starts: long enough for any Lambda invocation's first epoch.
pub const INITIAL_LEASE: Duration = Duration::from_secs(15 * 60);
/// The shortest lease renewed after an epoch (it is otherwise three epochs long).
pub const MIN_LEASE: Duration = Duration::from_secs(120);
/// Validation rows compared between the engines before a version is written.
const AGREEMENT_ROWS: usize = 256;

/// `jobs/{id}/spec.json`.
pub fn spec_key(job_id: &str) -> String {
    format!("jobs/{job_id}/spec.json")
}
/// `jobs/{id}/status.json`.
pub fn status_key(job_id: &str) -> String {
    format!("jobs/{job_id}/status.json")
}
/// `jobs/{id}/checkpoint/state.safetensors`.
pub fn checkpoint_key(job_id: &str) -> String {
    format!("jobs/{job_id}/checkpoint/state.safetensors")
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Submitted, not started.
    Queued,
    /// Training.
    Running,
    /// Stopped at a checkpoint before a deadline; run it again to continue.
    Paused,
    /// Finished: `version` was written.
    Succeeded,
    /// Failed: `reason` says why. A `version` is present only if the failure came after it was
    /// written (e.g. the promotion failed); running the job again finishes it without training.
    Failed,
}

/// `jobs/{id}/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// The model it trains.
    pub model: String,
    /// Where it stands.
    pub state: JobState,
    /// Epochs completed.
    pub epoch: usize,
    /// Epochs asked for.
    pub epochs: usize,
    /// Highest version of the model when the job first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<Version>,
    /// The version written, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the promotion policy decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionDecision>,
    /// Per-epoch losses so far.
    #[serde(default)]
    pub history: Vec<EpochRecord>,
    /// While running: until when the running process holds the job. After this instant, a
    /// new run may take over.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub lease_expires_at: Option<OffsetDateTime>,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The promotion policy's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionDecision {
    /// The alias.
    pub alias: String,
    /// Whether it now points at the new version.
    pub promoted: bool,
    /// The metric compared.
    pub metric: String,
    /// The new version's value.
    pub candidate: f64,
    /// The alias's version before, and its value (absent when the alias did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<(Version, Option<f64>)>,
    /// In words.
    pub reason: String,
}

/// How a job run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The version was written (now, or by an earlier run of the same job).
    Succeeded {
        /// The job's final status.
        status: JobStatus,
        /// The new version's manifest.
        manifest: Box<Manifest>,
    },
    /// Stopped at a checkpoint before the deadline; invoke again with the same id.
    Paused(JobStatus),
    /// Another process holds the job's lease (see [`JobStatus::lease_expires_at`]); this run
    /// did nothing.
    Busy(JobStatus),
}

/// Options of one run of a job.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Stop cleanly before an epoch that would not end before this instant (minus
    /// [`DEADLINE_MARGIN`]).
    pub deadline: Option<Instant>,
    /// Who runs it (recorded in the manifest and the audit trail).
    pub actor: String,
    /// Progress reports (epochs, batches).
    pub progress: Option<&'a mut (dyn FnMut(Progress<'_>) + Send)>,
    /// Stop after this many epochs in this run (for tests of resumption).
    pub max_epochs_this_run: Option<usize>,
}

/// Runs training jobs against one store.
#[derive(Debug, Clone)]
pub struct TrainingJob {
    store: SharedStore,
    registry: Registry,
}

impl TrainingJob {
    /// Jobs over `store`.
    pub fn new(store: SharedStore) -> Self {
        Self {
            registry: Registry::new(store.clone()),
            store,
        }
    }

    /// The job's status, if it exists.
    pub async fn status(&self, job_id: &str) -> Result<Option<JobStatus>, TrainError> {
        validate_job_id(job_id)?;
        self.read_json(&status_key(job_id)).await
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, TrainError> {
        match self.store.get(key).await {
            Ok(obj) => serde_json::from_slice(&obj.body)
                .map(Some)
                .map_err(|e| TrainError::Corrupt(format!("{key}: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_status(
        &self,
        job_id: &str,
    ) -> Result<Option<(JobStatus, maas_store::ETag)>, TrainError> {
        let key = status_key(job_id);
        match self.store.get(&key).await {
            Ok(obj) => serde_json::from_slice(&obj.body)
                .map(|s| Some((s, obj.etag)))
                .map_err(|e| TrainError::Corrupt(format!("{key}: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs (or resumes) `spec`. A job id is generated when the spec has none.
    pub async fn run(
        &self,
        spec: JobSpec,
        options: RunOptions<'_>,
    ) -> Result<JobOutcome, TrainError> {
        let mut spec = spec.resolved()?;
        let job_id = match &spec.job_id {
            Some(id) => id.clone(),
            None => {
                let id = generate_job_id(&spec.model);
                spec.job_id = Some(id.clone());
                id
            }
        };
        let model = ModelName::new(&spec.model)?;
        // A job id is bound to one spec.
        let spec_json = serde_json::to_value(&spec).map_err(|e| TrainError::Spec(e.to_string()))?;
        match self.read_json::<Value>(&spec_key(&job_id)).await? {
            Some(existing) if existing != spec_json => {
                return Err(TrainError::Spec(format!(
                    "job {job_id} already exists with a different spec; use a new job_id (or leave it out to get one)"
                )));
            }
            Some(_) => {}
            None => {
                let body = serde_json::to_vec_pretty(&spec_json)
                    .map_err(|e| TrainError::Spec(e.to_string()))?;
                match self
                    .store
                    .put(
                        &spec_key(&job_id),
                        Bytes::from(body),
                        PutCondition::IfNoneMatch,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(maas_store::StoreError::AlreadyExists { .. })
                    | Err(maas_store::StoreError::PreconditionFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let (previous, etag) = match self.read_status(&job_id).await? {
            Some((status, etag)) => (Some(status), Some(etag)),
            None => (None, None),
        };
        if let Some(done) = &previous
            && done.state == JobState::Succeeded
            && let Some(version) = done.version
        {
            info!(job = %job_id, %version, "job already succeeded");
            let manifest = self.registry.manifest(&model, version).await?;
            return Ok(JobOutcome::Succeeded {
                status: done.clone(),
                manifest: Box::new(manifest),
            });
        }
        if let Some(running) = &previous
            && running.state == JobState::Running
        {
            match running.lease_expires_at {
                Some(until) if until > OffsetDateTime::now_utc() => {
                    info!(job = %job_id, %until, "the job is running elsewhere");
                    return Ok(JobOutcome::Busy(running.clone()));
                }
                _ => {
                    warn!(job = %job_id, "taking over a job whose runner stopped renewing its lease")
                }
            }
        }
        let parent_version = match previous.as_ref() {
            Some(p) => p.parent_version,
            None => self.registry.latest(&model).await.ok(),
        };
        let mut status = JobStatus {
            job_id: job_id.clone(),
            model: spec.model.clone(),
            state: JobState::Running,
            epoch: previous.as_ref().map_or(0, |p| p.epoch),
            epochs: spec.training.epochs,
            parent_version,
            // A version (and its promotion) recorded by an earlier run stays the job's.
            version: previous.as_ref().and_then(|p| p.version),
            reason: None,
            promotion: previous.as_ref().and_then(|p| p.promotion.clone()),
            history: previous
                .as_ref()
                .map(|p| p.history.clone())
                .unwrap_or_default(),
            lease_expires_at: None,
            updated_at: OffsetDateTime::now_utc(),
        };
        let mut writer = StatusWriter {
            store: self.store.clone(),
            key: status_key(&job_id),
            etag,
        };
        // Claim the job; losing the race to another run is not an error.
        match writer.write(&mut status, Some(INITIAL_LEASE)).await {
            Ok(()) => {}
            Err(TrainError::LeaseLost(_)) => {
                let current = self.status(&job_id).await?.unwrap_or(status);
                return Ok(JobOutcome::Busy(current));
            }
            Err(e) => return Err(e),
        }
        match self
            .train(&spec, &job_id, &model, &mut status, &mut writer, options)
            .await
        {
            Ok(outcome) => Ok(outcome),
            Err(e @ TrainError::LeaseLost(_)) => {
                warn!(job = %job_id, error = %e, "stopped: another run took the job over");
                Err(e)
            }
            Err(e) => {
                status.state = JobState::Failed;
                status.reason = Some(e.to_string());
                if let Err(write) = writer.write(&mut status, None).await {
                    warn!(error = %write, "could not record the failure in status.json");
                }
                Err(e)
            }
        }
    }

    async fn train(
        &self,
        spec: &JobSpec,
        job_id: &str,
        model: &ModelName,
        status: &mut JobStatus,
        writer: &mut StatusWriter,
        mut options: RunOptions<'_>,
    ) -> Result<JobOutcome, TrainError> {
        // A job maps to at most one version: an earlier run may have written it and then failed
        // (promotion, audit, the status write) or died before recording it.
        if let Some(manifest) = self.version_of_job(model, job_id, status).await? {
            info!(job = %job_id, version = %manifest.version, "the job's version exists; finishing the job");
            return self
                .finish(
                    spec,
                    job_id,
                    model,
                    status,
                    writer,
                    manifest,
                    &options.actor,
                )
                .await;
        }

        // The data.
        let object = self.store.get(&spec.dataset.key).await.map_err(|e| {
            if e.is_not_found() {
                TrainError::Dataset(format!(
                    "no dataset at {:?} in the store; upload it there or fix dataset.key",
                    spec.dataset.key
                ))
            } else {
                e.into()
            }
        })?;
        let dataset_sha256 = hex::encode(Sha256::digest(&object.body));
        let spec_for_parse = spec.clone();
        let body = object.body.clone();
        let mut dataset = tokio::task::spawn_blocking(move || {
            data::parse(&body, &spec_for_parse.dataset, spec_for_parse.task)
        })
        .await
        .map_err(|e| TrainError::Corrupt(format!("dataset parsing stopped: {e}")))??;
        let (train_idx, val_idx) = data::split(
            dataset.rows(),
            spec.training.validation_fraction,
            spec.training.seed,
        );
        let raw_sample: Vec<f32> = {
            let sample: Vec<usize> = val_idx.iter().take(AGREEMENT_ROWS).copied().collect();
            dataset.select(&sample).0
        };
        let preprocess = if spec.training.standardize {
            let (train_x, _) = dataset.select(&train_idx);
            let (mean, std) = data::standardization(&train_x, dataset.width());
            data::apply_standardization(&mut dataset.x, &mean, &std);
            Preprocess::Standardize { mean, std }
        } else {
            Preprocess::None
        };

        // The checkpoint, if any.
        let resume = match self.store.get(&checkpoint_key(job_id)).await {
            Ok(obj) => Some(decode_checkpoint(&obj.body, &dataset_sha256)?),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(state) = &resume {
            info!(job = %job_id, epoch = state.epoch, "resuming from checkpoint");
        }

        // Train on a blocking thread; checkpoints are written from it through the runtime.
        let handle = tokio::runtime::Handle::current();
        let store = self.store.clone();
        let ckpt_key = checkpoint_key(job_id);
        let mut status_copy = status.clone();
        let spec_c = spec.clone();
        let sha = dataset_sha256.clone();
        let deadline = options.deadline;
        let max_epochs = options.max_epochs_this_run;
        let mut progress = options.progress.take();
        let (outcome, mlp_metrics, status_after) = tokio::task::block_in_place(|| {
            let mut trainer = Trainer::new(&spec_c, &dataset, train_idx, &val_idx, resume)?;
            let mut epochs_here = 0usize;
            let keep_going = |mean_epoch: Option<Duration>| {
                if max_epochs.is_some_and(|m| epochs_here >= m) {
                    return false;
                }
                epochs_here += 1;
                match deadline {
                    None => true,
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let needed =
                            mean_epoch.map_or(Duration::ZERO, |m| m + m / 4) + DEADLINE_MARGIN;
                        left > needed
                    }
                }
            };
            let report = |p: Progress<'_>| {
                if let Some(cb) = progress.as_deref_mut() {
                    cb(p);
                }
            };
            let mut epoch_started = Instant::now();
            let after_epoch = |state: &TrainerState| -> Result<(), TrainError> {
                // Renew the lease first: a run that lost the job must not touch its checkpoint.
                let lease = (epoch_started.elapsed() * 3).max(MIN_LEASE);
                status_copy.epoch = state.epoch;
                status_copy.history = state.history.clone();
                handle.block_on(writer.write(&mut status_copy, Some(lease)))?;
                let bytes = encode_checkpoint(state, &sha)?;
                handle.block_on(store.put(&ckpt_key, Bytes::from(bytes), PutCondition::None))?;
                epoch_started = Instant::now();
                Ok(())
            };
            let outcome = trainer.run(keep_going, report, after_epoch)?;
            let epoch = trainer.epoch();
            let history = trainer.state().history.clone();
            let finished = match outcome {
                RunOutcome::Paused => None,
                RunOutcome::Finished => Some(trainer.finish()?),
            };
            Ok::<_, TrainError>((outcome, finished, (epoch, history)))
        })?;
        status.epoch = status_after.0;
        status.history = status_after.1;
        let Some((mlp, metrics)) = mlp_metrics else {
            debug_assert_eq!(outcome, RunOutcome::Paused);
            status.state = JobState::Paused;
            writer.write(status, None).await?;
            info!(job = %job_id, epoch = status.epoch, "paused before the deadline; run again to resume");
            return Ok(JobOutcome::Paused(status.clone()));
        };

        // The version. Renew the lease first (a run that lost the job stops here), then look
        // again for a version of this job, so that two runs never both write one.
        writer.write(status, Some(MIN_LEASE)).await?;
        if let Some(manifest) = self.version_of_job(model, job_id, status).await? {
            return self
                .finish(
                    spec,
                    job_id,
                    model,
                    status,
                    writer,
                    manifest,
                    &options.actor,
                )
                .await;
        }
        let manifest = self
            .write_version(
                spec,
                job_id,
                model,
                status,
                &dataset,
                &object.etag.0,
                &dataset_sha256,
                preprocess,
                mlp,
                metrics,
                &raw_sample,
                &options.actor,
            )
            .await?;
        self.finish(
            spec,
            job_id,
            model,
            status,
            writer,
            manifest,
            &options.actor,
        )
        .await
    }
}

/// `{model}-{yyyymmddThhmmss}-{4 hex}`.
pub fn generate_job_id(model: &str) -> String {
    let now = OffsetDateTime::now_utc();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let stem: String = model.chars().take(40).collect();
    format!(
        "{stem}-{:04}{:02}{:02}t{:02}{:02}{:02}-{suffix}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
