//! The promotion policy: compares the new version's metric with the alias's current version and
//! moves the alias (or records why not), through the registry's audited calls.

use maas_core::{AliasName, AuditAction, Manifest, ModelName};
use serde_json::{Value, json};
use tracing::info;

use super::{PromotionDecision, TrainingJob};
use crate::TrainError;
use crate::spec::{Direction, JobSpec};

impl TrainingJob {
    pub(super) async fn promote(
        &self,
        spec: &JobSpec,
        model: &ModelName,
        manifest: &Manifest,
        actor: &str,
    ) -> Result<Option<PromotionDecision>, TrainError> {
        let Some(policy) = &spec.promotion else {
            return Ok(None);
        };
        let alias = AliasName::new(&policy.alias)?;
        let metric = policy.metric.clone().unwrap_or_else(|| "val_mse".into());
        let direction = policy.direction.unwrap_or(Direction::of_metric(&metric));
        let candidate = manifest
            .metrics
            .get(&metric)
            .and_then(Value::as_f64)
            .ok_or_else(|| TrainError::Spec(format!("the new version has no metric {metric:?}")))?;
        let current_version = self.registry.alias(model, &alias).await?.map(|a| a.version);
        let current = match current_version {
            Some(v) => {
                let m = self.registry.manifest(model, v).await?;
                Some((v, m.metrics.get(&metric).and_then(Value::as_f64)))
            }
            None => None,
        };
        let margin = policy.min_improvement;
        let (promoted, reason) = match current {
            None => (
                true,
                format!("{alias} did not exist; it now points at the first candidate"),
            ),
            Some((v, None)) => (
                false,
                format!(
                    "version {v} behind {alias} has no {metric}; promote by hand after review (maas promote)"
                ),
            ),
            Some((v, Some(old))) => {
                let better = match direction {
                    Direction::Lower => candidate <= old - margin && candidate < old,
                    Direction::Higher => candidate >= old + margin && candidate > old,
                };
                let verdict = if better { "beats" } else { "does not beat" };
                (
                    better,
                    format!(
                        "{metric} {candidate:.6} {verdict} version {v}'s {old:.6} by the required {margin} ({direction:?} is better)"
                    ),
                )
            }
        };
        let details = json!({
            "policy": policy,
            "metric": metric,
            "candidate": {"version": manifest.version, "value": candidate},
            "current": current.map(|(v, value)| json!({"version": v, "value": value})),
        });
        if promoted {
            self.registry
                .set_alias(
                    model,
                    &alias,
                    manifest.version,
                    actor,
                    Some(reason.clone()),
                    details,
                )
                .await?;
        } else {
            self.registry
                .record(
                    model,
                    actor,
                    AuditAction::PromotionDeclined {
                        alias: alias.clone(),
                        current: current.map(|(v, _)| v),
                        candidate: manifest.version,
                    },
                    Some(reason.clone()),
                    details,
                )
                .await?;
        }
        info!(%alias, promoted, %reason, "promotion policy applied");
        Ok(Some(PromotionDecision {
            alias: alias.to_string(),
            promoted,
            metric,
            candidate,
            current,
            reason,
        }))
    }
}
