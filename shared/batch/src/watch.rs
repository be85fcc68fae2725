//! Watching a store's `batch/input/` without S3 events: what `maas serve` runs over the embedded
//! store so that a file dropped there is scored as the Lambda function would score it in AWS.
//!
//! Any store can be watched because it only lists: every `interval` the watcher lists
//! `batch/input/`, and scores an object once its size and ETag were the same on two consecutive
//! listings (a file still being copied into the folder is not scored half-written). Each object
//! version is handled once; a failure is logged and retried only when the object changes, and it
//! never stops the watcher or the other files. [`BatchScorer::score`] is idempotent, so a
//! restart does not score a file again unless it or the model version changed.

use std::collections::HashMap;
use std::time::Duration;

use maas_store::ETag;
use tracing::{info, warn};

use crate::{BatchScorer, INPUT_PREFIX, ScoreOutcome};

/// What one pass of the watcher did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchPass {
    /// Keys scored in this pass.
    pub scored: Vec<String>,
    /// Keys whose outputs were already up to date.
    pub already_scored: Vec<String>,
    /// Keys that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Keys overwritten while they were scored (scored again once they settle).
    pub superseded: Vec<String>,
}

/// The state of a watcher between passes: what each key looked like and whether it was handled.
#[derive(Debug, Default)]
pub struct InputWatcher {
    seen: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    size: u64,
    etag: ETag,
    handled: bool,
}

impl InputWatcher {
    /// A watcher that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `batch/input/` once and scores every object that is new or changed and stable since
    /// the previous pass. Fails only if the listing itself fails.
    pub async fn pass(&mut self, scorer: &BatchScorer) -> Result<WatchPass, crate::BatchError> {
        let listed = scorer.store().list(INPUT_PREFIX).await?;
        let mut result = WatchPass::default();
        let mut present = HashMap::with_capacity(listed.len());
        for meta in listed {
            let stable = match self.seen.remove(&meta.key) {
                Some(prev) if prev.size == meta.size && prev.etag == meta.etag => {
                    if prev.handled {
                        present.insert(meta.key, prev);
                        continue;
                    }
                    true
                }
                _ => false,
            };
            let mut entry = Seen {
                size: meta.size,
                etag: meta.etag,
                handled: false,
            };
            if stable {
                entry.handled = true;
                match scorer.score(&meta.key).await {
                    Ok(ScoreOutcome::Scored(report)) => {
                        info!(
                            key = %meta.key,
                            output = %report.output_key,
                            rows_scored = report.rows_scored,
                            rows_rejected = report.rows_rejected,
                            "batch file scored"
                        );
                        result.scored.push(meta.key.clone());
                    }
                    Ok(ScoreOutcome::AlreadyScored(_)) => {
                        result.already_scored.push(meta.key.clone());
                    }
                    Ok(ScoreOutcome::Superseded { .. }) => {
                        // Changed under the scorer: score the new content once it settles.
                        entry.handled = false;
                        result.superseded.push(meta.key.clone());
                    }
                    Err(e) => {
                        warn!(key = %meta.key, error = %e, "batch file not scored; fix it and upload it again");
                        result.failed.push((meta.key.clone(), e.to_string()));
                    }
                }
            }
            present.insert(meta.key, entry);
        }
        self.seen = present;
        Ok(result)
    }

    /// Runs passes every `interval` until `stop` resolves. A failed listing is logged and
    /// retried at the next pass.
    pub async fn run(
        mut self,
        scorer: BatchScorer,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticker.tick() => {
                    if let Err(e) = self.pass(&scorer).await {
                        warn!(error = %e, "could not list batch/input/; retrying");
                    }
                }
            }
        }
    }
}
