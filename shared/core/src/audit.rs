//! Audit records: one immutable document per governance event (a version written, an alias moved,
//! a promotion refused), saying who did what, when and why.
//!
//! A record of a change is written *before* the change, as its intent ([`AuditRecord::intent`]),
//! and the change confirms it: a version's manifest (written after its record) or an alias
//! document naming the record's id. A crash between the two leaves a record whose change never
//! happened — shown as not applied — never a change without a record.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AliasName, ModelName, Version};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AuditAction {
    /// A new version was written.
    VersionCreated {
        /// The new version.
        version: Version,
        /// `pushed` or `trained`.
        source: String,
        /// SHA-256 of the primary artifact.
        sha256: String,
    },
    /// An alias was pointed at a version (created or moved).
    AliasMoved {
        /// The alias.
        alias: AliasName,
        /// Where it pointed before, if anywhere.
        from: Option<Version>,
        /// Where it points now.
        to: Version,
        /// The id of the record of the move this one replaces (the one the alias document
        /// named when this move was decided), so the applied moves of an alias form a chain
        /// from its current document back to its creation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<String>,
    },
    /// A promotion policy looked at a candidate and kept the alias where it was.
    PromotionDeclined {
        /// The alias that did not move.
        alias: AliasName,
        /// Where it still points, if anywhere.
        current: Option<Version>,
        /// The version that was considered.
        candidate: Version,
    },
}

/// One governance event. Stored at `models/{model}/audit/{utc-timestamp}-{id}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id of the record.
    pub id: String,
    /// When (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: a user, a role or a job.
    pub actor: String,
    /// Which model.
    pub model: ModelName,
    /// What happened.
    #[serde(flatten)]
    pub action: AuditAction,
    /// Why, in the actor's words or the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Supporting facts (metrics compared, policy applied, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// True when the record was written before the change it describes (every record of a
    /// change written by this version of maas); the change then confirms it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intent: bool,
    /// Whether the change took effect, as the registry found when it read the trail: `None`
    /// for events that change nothing (a declined promotion) and for records written before
    /// intents existed. Never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_records_are_flat_json_with_the_action_inline() {
        let rec = AuditRecord {
            id: "abc".into(),
            at: OffsetDateTime::UNIX_EPOCH,
            actor: "ana".into(),
            model: ModelName::new("seed").expect("valid"),
            action: AuditAction::AliasMoved {
                alias: AliasName::new("production").expect("valid"),
                from: None,
                to: Version::FIRST,
                replaces: None,
            },
            reason: Some("first release".into()),
            details: serde_json::Value::Null,
            intent: false,
            applied: None,
        };
        let v = serde_json::to_value(&rec).expect("serialises");
        assert_eq!(v["action"], "alias_moved");
        assert_eq!(v["alias"], "production");
        assert_eq!(v["to"], 1);
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
        let back: AuditRecord = serde_json::from_value(v).expect("parses");
        assert_eq!(back, rec);
    }
}
