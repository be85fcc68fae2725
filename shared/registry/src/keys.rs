//! Key layout of the registry. Every key is built here from validated names, so no caller can
//! put a `..` or `/` into a key.

use maas_core::{AliasName, ModelName, Version};
use time::OffsetDateTime;
use time::macros::format_description;

pub(crate) const MODELS: &str = "models/";
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const CLAIM: &str = "claim.json";

pub(crate) fn versions_prefix(model: &ModelName) -> String {
    format!("models/{model}/versions/")
}

pub(crate) fn version_file(model: &ModelName, version: Version, file: &str) -> String {
    format!("models/{model}/versions/{version}/{file}")
}

pub(crate) fn alias_prefix(model: &ModelName) -> String {
    format!("models/{model}/aliases/")
}

pub(crate) fn alias(model: &ModelName, alias: &AliasName) -> String {
    format!("models/{model}/aliases/{alias}.json")
}

pub(crate) fn audit_prefix(model: &ModelName) -> String {
    format!("models/{model}/audit/")
}

/// `models/{m}/audit/20261129T181121.123456789Z-{id}.json`: sorts by time.
pub(crate) fn audit(model: &ModelName, at: OffsetDateTime, id: &str) -> String {
    let fmt =
        format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:9]Z");
    let stamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(fmt)
        .unwrap_or_else(|_| at.unix_timestamp_nanos().to_string());
    format!("models/{model}/audit/{stamp}-{id}.json")
}

/// Splits `models/{model}/versions/{version}/{file}` into its parts.
pub(crate) fn parse_version_key(key: &str) -> Option<(&str, Version, &str)> {
    let rest = key.strip_prefix(MODELS)?;
    let (model, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("versions/")?;
    let (version, file) = rest.split_once('/')?;
    Some((model, version.parse().ok()?, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_round_trip() {
        let m = ModelName::new("seed").expect("valid");
        let v = Version::new(12).expect("positive");
        let key = version_file(&m, v, MANIFEST);
        assert_eq!(key, "models/seed/versions/12/manifest.json");
        assert_eq!(parse_version_key(&key), Some(("seed", v, MANIFEST)));
        assert_eq!(
            parse_version_key("models/seed/versions/x/manifest.json"),
            None
        );
        assert_eq!(parse_version_key("models/seed/aliases/p.json"), None);
    }

    #[test]
    fn audit_keys_sort_by_time() {
        let m = ModelName::new("seed").expect("valid");
        let a = audit(&m, OffsetDateTime::UNIX_EPOCH, "b");
        let b = audit(
            &m,
            OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1),
            "a",
        );
        assert!(a < b, "{a} < {b}");
        assert!(a.starts_with("models/seed/audit/19700101T000000.000000000Z-"));
    }
}
