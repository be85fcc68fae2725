//! Batch scoring: a CSV (with a header) or JSON-lines object under `batch/input/{model}/…` is
//! streamed through the model in chunks and written to `batch/output/{model}/…` with prediction
//! columns, an errors file with every rejected row, and a report — with memory bounded by the
//! chunk sizes, not the file size.
//!
//! Delivery is at least once, so scoring is idempotent: outputs are written by uploads that are
//! invisible until complete, the report is written last, and an input whose report already names
//! the same input ETag and model version is not scored again. This crate knows nothing about
//! Lambda or S3 events; the function and the CLI wire it up.

pub mod keys;
pub mod rows;
pub mod stream;
pub mod watch;

use std::time::Instant;

use maas_engine::EngineError;
use maas_models::ModelsError;
use maas_registry::{Registry, RegistryError};
use maas_store::{PutCondition, SharedStore, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, instrument, warn};

pub use keys::{BULK_PREFIX, BatchTarget, INPUT_PREFIX, OUTPUT_PREFIX, RowFormat};
pub use rows::RowCounts;
pub use watch::{InputWatcher, WatchPass};

/// Rows predicted per engine call.
pub const DEFAULT_CHUNK_ROWS: usize = 4096;

/// Everything that fails a whole file (bad rows never do: they go to the errors file).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The key doesn't follow the batch convention.
    #[error("cannot score {key}: {why}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The file's columns don't fit the model.
    #[error("{0}")]
    Schema(String),
    /// The input could not be read.
    #[error("reading the input failed: {0}")]
    Input(String),
    /// An output could not be written.
    #[error("writing the output failed: {0}")]
    Output(String),
    /// The model failed on the input.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model could not be resolved or loaded.
    #[error(transparent)]
    Load(#[from] ModelsError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// `{output}.report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// The input object.
    pub input_key: String,
    /// Its ETag when it was read.
    pub input_etag: String,
    /// Its size in bytes.
    pub input_bytes: u64,
    /// Scored rows.
    pub output_key: String,
    /// Rejected rows.
    pub errors_key: String,
    /// The model.
    pub model: String,
    /// The version that scored.
    pub model_version: u64,
    /// Data rows read.
    pub rows_read: u64,
    /// Rows with predictions.
    pub rows_scored: u64,
    /// Rows in the errors file.
    pub rows_rejected: u64,
    /// When scoring started (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Wall time of scoring, in milliseconds.
    pub elapsed_ms: f64,
    /// Rows read per second of wall time.
    pub rows_per_second: f64,
}

/// The outcome of one scoring request.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreOutcome {
    /// The file was scored now.
    Scored(ScoreReport),
    /// The same input was already scored by the same model version: nothing was written.
    AlreadyScored(ScoreReport),
    /// The input was overwritten while it was being scored: nothing was published (a mix of
    /// two versions of a file is no one's data). The new object's own event scores it.
    Superseded {
        /// The input object.
        input_key: String,
        /// The ETag it had when scoring started.
        read_etag: String,
    },
}

/// Scores batch files from one store.
#[derive(Debug, Clone)]
pub struct BatchScorer {
    store: SharedStore,
    registry: Registry,
    chunk_rows: usize,
}

impl BatchScorer {
    /// A scorer over `store`.
    pub fn new(store: SharedStore) -> Self {
        Self {
            registry: Registry::new(store.clone()),
            store,
            chunk_rows: DEFAULT_CHUNK_ROWS,
        }
    }

    /// The store the scorer reads from and writes to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Rows per engine call.
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows.max(1);
        self
    }

    /// Scores the object at `key` (under `batch/input/`).
    #[instrument(skip_all, fields(key = %key))]
    pub async fn score(&self, key: &str) -> Result<ScoreOutcome, BatchError> {
        let target = BatchTarget::parse(key)?;
        let meta = self.store.head(&target.input_key).await?;
        let version = self
            .registry
            .resolve(&target.model, &target.selector)
            .await?;
        if let Some(existing) = self.previous_report(&target).await?
            && existing.input_etag == meta.etag.0
            && existing.model_version == version.get()
        {
            info!(model = %target.model, version = %version, "already scored; nothing to do");
            return Ok(ScoreOutcome::AlreadyScored(existing));
        }
        let model = maas_models::load_version(&self.registry, &target.model, version).await?;
        let started_at = OffsetDateTime::now_utc();
        let started = Instant::now();

        let (reader_task, reader) = stream::read_object(
            self.store.clone(),
            target.input_key.clone(),
            meta.size,
            meta.etag.clone(),
        );
        let (out_task, out) =
            stream::upload_object(self.store.start_upload(&target.output_key).await?);
        let (err_task, errs) =
            stream::upload_object(self.store.start_upload(&target.errors_key).await?);
        let chunk_rows = self.chunk_rows;
        let format = target.format;
        let scored = tokio::task::spawn_blocking(move || match format {
            RowFormat::Csv => rows::score_csv(reader, &model, out, errs, chunk_rows),
            RowFormat::JsonLines => rows::score_jsonl(reader, &model, out, errs, chunk_rows),
        })
        .await
        .map_err(|e| BatchError::Output(format!("scoring did not finish: {e}")))?;
        // A reader that stopped early has already ended; one still blocked on a full channel
        // (scoring failed for its own reasons) is stopped here.
        reader_task.abort();
        let input_changed = matches!(reader_task.await, Ok(stream::ReadEnd::Changed));
        let out_writer = out_task
            .await
            .map_err(|e| BatchError::Output(e.to_string()))?;
        let err_writer = err_task
            .await
            .map_err(|e| BatchError::Output(e.to_string()))?;
        let counts = match (scored, out_writer, err_writer) {
            (Ok(counts), Ok(out), Ok(errs)) => {
                out.complete().await?;
                errs.complete().await?;
                counts
            }
            (scored, out, errs) => {
                // Nothing becomes visible: abort whatever upload is still open.
                if let Ok(w) = out {
                    let _ = w.abort().await;
                }
                if let Ok(w) = errs {
                    let _ = w.abort().await;
                }
                if input_changed {
                    warn!(
                        key = %target.input_key,
                        etag = %meta.etag,
                        "the input was overwritten while it was scored; nothing published (its new version is scored on its own event)"
                    );
                    return Ok(ScoreOutcome::Superseded {
                        input_key: target.input_key.clone(),
                        read_etag: meta.etag.0.clone(),
                    });
                }
                return Err(match scored {
                    Err(e) => e,
                    Ok(_) => BatchError::Output("an upload failed".into()),
                });
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let report = ScoreReport {
            input_key: target.input_key.clone(),
            input_etag: meta.etag.0.clone(),
            input_bytes: meta.size,
            output_key: target.output_key.clone(),
            errors_key: target.errors_key.clone(),
            model: target.model.to_string(),
            model_version: version.get(),
            rows_read: counts.read,
            rows_scored: counts.scored,
            rows_rejected: counts.rejected,
            started_at,
            elapsed_ms: elapsed * 1e3,
            rows_per_second: if elapsed > 0.0 {
                counts.read as f64 / elapsed
            } else {
                0.0
            },
        };
        let body =
            serde_json::to_vec_pretty(&report).map_err(|e| BatchError::Output(e.to_string()))?;
        self.store
            .put(&target.report_key, body.into(), PutCondition::None)
            .await?;
        info!(
            model = %target.model,
            version = %version,
            rows = counts.read,
            scored = counts.scored,
            rejected = counts.rejected,
            elapsed_ms = report.elapsed_ms,
            "scored"
        );
        Ok(ScoreOutcome::Scored(report))
    }

    async fn previous_report(
        &self,
        target: &BatchTarget,
    ) -> Result<Option<ScoreReport>, BatchError> {
        match self.store.get(&target.report_key).await {
            Ok(obj) => Ok(serde_json::from_slice(&obj.body).ok()),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
