//! The job's lease: `status.json` written by compare-and-swap on the ETag the run last wrote, so
//! a run that another has taken over fails its next write instead of overwriting the new
//! owner's status.

use std::time::Duration;

use bytes::Bytes;
use maas_store::{PutCondition, SharedStore};
use time::OffsetDateTime;

use super::JobStatus;
use crate::TrainError;

/// Writes one run's `status.json` by compare-and-swap on the ETag it last wrote, so a run that
/// another has taken over fails its next write instead of overwriting the new owner's status.
pub(super) struct StatusWriter {
    pub(super) store: SharedStore,
    pub(super) key: String,
    /// The status's ETag as this run last read or wrote it; `None`: no status exists yet.
    pub(super) etag: Option<maas_store::ETag>,
}

impl StatusWriter {
    /// Writes `status`, holding the job for `lease` from now (`None`: releases it).
    pub(super) async fn write(
        &mut self,
        status: &mut JobStatus,
        lease: Option<Duration>,
    ) -> Result<(), TrainError> {
        status.updated_at = OffsetDateTime::now_utc();
        status.lease_expires_at = lease.map(|l| status.updated_at + l);
        let body =
            serde_json::to_vec_pretty(status).map_err(|e| TrainError::Corrupt(e.to_string()))?;
        let condition = match &self.etag {
            Some(etag) => PutCondition::IfMatch(etag.clone()),
            None => PutCondition::IfNoneMatch,
        };
        match self
            .store
            .put(&self.key, Bytes::from(body), condition)
            .await
        {
            Ok(etag) => {
                self.etag = Some(etag);
                Ok(())
            }
            Err(
                maas_store::StoreError::PreconditionFailed { .. }
                | maas_store::StoreError::AlreadyExists { .. },
            ) => Err(TrainError::LeaseLost(status.job_id.clone())),
            Err(e) => Err(e.into()),
        }
    }
}
