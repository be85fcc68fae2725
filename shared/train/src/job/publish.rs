//! Publishing a finished job: the new version (artifacts checked by the serving engines first),
//! recorded in the job's status right after it exists, and the run that finds a job's version
//! already written finishing the job instead of training again.

use std::collections::BTreeMap;

use bytes::Bytes;
use maas_core::{
    DataType, FORMAT_VERSION, Lineage, Manifest, ModelCard, ModelFormat, ModelName, Postprocess,
    Preprocess, TensorSpec, Version,
};
use maas_engine::LoadedModel;
use maas_registry::VersionDraft;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::lease::StatusWriter;
use super::{JobOutcome, JobState, JobStatus, MIN_LEASE, TrainingJob, checkpoint_key};
use crate::TrainError;
use crate::data::{self, Dataset};
use crate::network::{self, Mlp};
use crate::spec::{JobSpec, Task};

impl TrainingJob {
    /// The version this job already wrote, if any: the one its status records, else a complete
    /// version (newer than the job's parent) whose lineage names the job — a run that died
    /// between writing the version and recording it leaves only that.
    pub(super) async fn version_of_job(
        &self,
        model: &ModelName,
        job_id: &str,
        status: &JobStatus,
    ) -> Result<Option<Manifest>, TrainError> {
        if let Some(version) = status.version {
            return Ok(Some(self.registry.manifest(model, version).await?));
        }
        let after = status.parent_version.map_or(0, Version::get);
        let versions = match self.registry.complete_versions(model).await {
            Ok(v) => v,
            Err(maas_registry::RegistryError::ModelNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for version in versions.into_iter().rev().filter(|v| v.get() > after) {
            let manifest = self.registry.manifest(model, version).await?;
            if matches!(&manifest.lineage, Lineage::Trained { job_id: id, .. } if id == job_id) {
                return Ok(Some(manifest));
            }
        }
        Ok(None)
    }

    /// Records `manifest` as the job's version (compare-and-swap, so it is the job's before
    /// anything else happens), applies the promotion policy once, and marks the job succeeded.
    /// Every step can be repeated by a rerun after a failure of the next.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        spec: &JobSpec,
        job_id: &str,
        model: &ModelName,
        status: &mut JobStatus,
        writer: &mut StatusWriter,
        manifest: Manifest,
        actor: &str,
    ) -> Result<JobOutcome, TrainError> {
        if status.version != Some(manifest.version) {
            status.version = Some(manifest.version);
            writer.write(status, Some(MIN_LEASE)).await?;
        }
        if status.promotion.is_none() {
            status.promotion = self.promote(spec, model, &manifest, actor).await?;
        }
        status.state = JobState::Succeeded;
        status.reason = None;
        writer.write(status, None).await?;
        if let Err(e) = self.store.delete(&checkpoint_key(job_id)).await {
            warn!(error = %e, "could not remove the finished job's checkpoint");
        }
        Ok(JobOutcome::Succeeded {
            status: status.clone(),
            manifest: Box::new(manifest),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_version(
        &self,
        spec: &JobSpec,
        job_id: &str,
        model: &ModelName,
        status: &JobStatus,
        dataset: &Dataset,
        dataset_etag: &str,
        dataset_sha256: &str,
        preprocess: Preprocess,
        mlp: Mlp,
        metrics: BTreeMap<String, f64>,
        raw_sample: &[f32],
        actor: &str,
    ) -> Result<Manifest, TrainError> {
        let postprocess = match spec.task {
            Task::Regression => Postprocess::Identity,
            Task::Binary => Postprocess::Sigmoid {
                labels: dataset.labels.clone(),
            },
            Task::Multiclass => Postprocess::Softmax {
                labels: dataset.labels.clone(),
            },
        };
        let outputs = dataset.outputs;
        let inputs = vec![TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, dataset.width() as i64],
        }];
        let output_specs = vec![TensorSpec {
            name: "output".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, outputs as i64],
        }];
        let onnx = mlp.to_onnx()?;
        let weights = mlp.to_safetensors()?;
        let mut metric_values: BTreeMap<String, Value> =
            metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        metric_values.insert("epochs_run".into(), json!(status.history.len()));
        metric_values.insert(
            "train_loss_per_epoch".into(),
            json!(
                status
                    .history
                    .iter()
                    .map(|h| h.train_loss)
                    .collect::<Vec<_>>()
            ),
        );
        metric_values.insert(
            "val_loss_per_epoch".into(),
            json!(
                status
                    .history
                    .iter()
                    .map(|h| h.val_loss)
                    .collect::<Vec<_>>()
            ),
        );
        metric_values.insert(
            "samples_per_second".into(),
            json!(median(
                status
                    .history
                    .iter()
                    .map(|h| h.samples_per_second)
                    .collect()
            )),
        );
        metric_values.insert("rows_dropped".into(), json!(dataset.dropped));
        let spec_value = serde_json::to_value(spec).map_err(|e| TrainError::Spec(e.to_string()))?;
        let draft = VersionDraft {
            format: ModelFormat::Onnx,
            created_by: actor.to_string(),
            inputs,
            outputs: output_specs,
            features: Some(dataset.features.clone()),
            architecture: Some(mlp.architecture()),
            preprocess,
            postprocess,
            allow_non_finite: false,
            card: ModelCard {
                description: spec.description.clone().or_else(|| {
                    Some(format!(
                        "{:?} MLP {:?} trained by job {job_id} on {}",
                        spec.task,
                        mlp.widths(),
                        spec.dataset.key
                    ))
                }),
                ..ModelCard::default()
            },
            lineage: Lineage::Trained {
                job_id: job_id.to_string(),
                dataset_key: spec.dataset.key.clone(),
                dataset_etag: dataset_etag.to_string(),
                dataset_sha256: dataset_sha256.to_string(),
                rows: dataset.rows() as u64,
                spec: spec_value,
                parent_version: status.parent_version,
                code_version: env!("CARGO_PKG_VERSION").into(),
            },
            metrics: metric_values,
        };
        check_engines_agree(model, &draft, &onnx, &weights, &mlp, raw_sample, dataset)?;
        let mut artifacts = BTreeMap::new();
        artifacts.insert(
            ModelFormat::Onnx.artifact_name().to_string(),
            Bytes::from(onnx),
        );
        artifacts.insert(
            ModelFormat::Safetensors.artifact_name().to_string(),
            Bytes::from(weights),
        );
        let manifest = self
            .registry
            .create_version(model, draft, artifacts)
            .await?;
        info!(job = %job_id, version = %manifest.version, "version written");
        Ok(manifest)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Loads both artifacts with the serving engines and compares their predictions on validation
/// rows with each other and with the trainer's network.
fn check_engines_agree(
    model: &ModelName,
    draft: &VersionDraft,
    onnx: &[u8],
    weights: &[u8],
    mlp: &Mlp,
    raw_sample: &[f32],
    dataset: &Dataset,
) -> Result<(), TrainError> {
    let width = dataset.width();
    let rows = raw_sample.len() / width;
    if rows == 0 {
        return Ok(());
    }
    let manifest = |format: ModelFormat| Manifest {
        manifest_version: FORMAT_VERSION,
        name: model.clone(),
        version: Version::FIRST,
        format,
        created_at: OffsetDateTime::now_utc(),
        created_by: draft.created_by.clone(),
        artifacts: BTreeMap::new(),
        inputs: draft.inputs.clone(),
        outputs: draft.outputs.clone(),
        features: draft.features.clone(),
        architecture: draft.architecture.clone(),
        preprocess: draft.preprocess.clone(),
        postprocess: draft.postprocess.clone(),
        allow_non_finite: false,
        card: ModelCard::default(),
        lineage: draft.lineage.clone(),
        metrics: BTreeMap::new(),
    };
    let tract = LoadedModel::from_artifact(manifest(ModelFormat::Onnx), onnx)?
        .predict_rows(raw_sample.to_vec(), rows)?;
    let candle = LoadedModel::from_artifact(manifest(ModelFormat::Safetensors), weights)?
        .predict_rows(raw_sample.to_vec(), rows)?;
    // The trainer's own outputs, with the manifest's preprocessing and postprocessing.
    let mut x = raw_sample.to_vec();
    if let Preprocess::Standardize { mean, std } = &draft.preprocess {
        data::apply_standardization(&mut x, mean, std);
    }
    let raw = network::predict(mlp, &x, width, 4096)?;
    let classes = dataset.outputs;
    let trainer: Vec<Vec<f32>> = raw
        .chunks(classes)
        .map(|z| match &draft.postprocess {
            Postprocess::Identity => z.to_vec(),
            Postprocess::Sigmoid { .. } => z.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            Postprocess::Softmax { .. } => {
                let max = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
                let s: f32 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            }
        })
        .collect();
    let mut worst = 0f32;
    for ((a, b), c) in tract.iter().zip(&candle).zip(&trainer) {
        for ((a, b), c) in a.iter().zip(b).zip(c) {
            let scale = 1.0f32.max(a.abs());
            worst = worst.max((a - b).abs() / scale).max((a - c).abs() / scale);
        }
    }
    if worst > 1e-3 || tract.len() != rows || candle.len() != rows {
        return Err(TrainError::Export(format!(
            "the ONNX export and the safetensors weights disagree (largest relative difference {worst:e}); no version was written"
        )));
    }
    info!(
        rows,
        max_rel_diff = worst,
        "tract, candle and the trainer agree"
    );
    Ok(())
}
