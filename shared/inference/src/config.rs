//! Configuration of the inference service, built from a lookup function so tests pass a map
//! instead of mutating the process environment. A bad variable fails start-up and names itself.

use std::time::Duration;

use maas_core::ModelName;
use maas_registry::VersionSelector;

use crate::InferenceError;
use crate::cache::CacheConfig;
use crate::metrics::MetricsSink;

/// Lambda's request and response payload limit for synchronous invocations.
pub const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// One entry of `MAAS_PRELOAD`: `model`, `model@alias` or `model:version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadSpec {
    /// The model.
    pub model: ModelName,
    /// Which version.
    pub selector: VersionSelector,
}

impl PreloadSpec {
    /// Parses `model`, `model@alias` or `model:version`.
    pub fn parse(raw: &str) -> Result<Self, InferenceError> {
        let bad = |why: String| {
            InferenceError::Config(format!(
                "MAAS_PRELOAD entry {raw:?}: {why}; use model, model@alias or model:version, comma-separated"
            ))
        };
        let (name, selector) = if let Some((name, alias)) = raw.split_once('@') {
            (name, VersionSelector::Alias(alias.to_string()))
        } else if let Some((name, version)) = raw.split_once(':') {
            let v = version
                .parse()
                .map_err(|e: maas_core::CoreError| bad(e.to_string()))?;
            (name, VersionSelector::Version(v))
        } else {
            (raw, VersionSelector::Default)
        };
        let model = ModelName::new(name).map_err(|e| bad(e.to_string()))?;
        Ok(Self { model, selector })
    }
}

/// Settings of one inference process.
#[derive(Debug, Clone)]
pub struct InferenceConfig {
    /// The store URL (`MAAS_STORE`, default `./maas-data`).
    pub store: String,
    /// Models to load during init (`MAAS_PRELOAD`).
    pub preload: Vec<PreloadSpec>,
    /// Cache bounds and TTLs (`MAAS_CACHE_MB`, `MAAS_ALIAS_TTL_SECS`).
    pub cache: CacheConfig,
    /// Largest accepted request body (`MAAS_MAX_BODY_BYTES`, default Lambda's 6 MiB).
    pub max_body_bytes: usize,
    /// Where EMF metric lines go (`MAAS_EMF`: on by default inside Lambda).
    pub metrics: MetricsSink,
}

fn parse_number<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, InferenceError> {
    raw.trim()
        .parse()
        .map_err(|_| InferenceError::Config(format!("{name}={raw:?} is not a valid number")))
}

impl InferenceConfig {
    /// Reads the configuration through `lookup` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let in_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let store = match lookup("MAAS_STORE") {
            Some(s) if !s.is_empty() => s,
            _ if in_lambda => {
                return Err(InferenceError::Config(
                    "MAAS_STORE is not set; set it to s3://bucket[/prefix] in the function's environment".into(),
                ));
            }
            _ => "./maas-data".to_string(),
        };
        let preload = lookup("MAAS_PRELOAD")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PreloadSpec::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let default_mb: usize = match lookup("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
            // Leave room for the runtime, request buffers and engine scratch space.
            Some(mb) => parse_number::<usize>("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &mb)? * 6 / 10,
            None => 1024,
        };
        let cache_mb = match lookup("MAAS_CACHE_MB") {
            Some(raw) => parse_number("MAAS_CACHE_MB", &raw)?,
            None => default_mb,
        };
        let alias_ttl = match lookup("MAAS_ALIAS_TTL_SECS") {
            Some(raw) => {
                Duration::from_secs_f64(parse_number::<f64>("MAAS_ALIAS_TTL_SECS", &raw)?.max(0.0))
            }
            None => Duration::from_secs(5),
        };
        let max_body_bytes = match lookup("MAAS_MAX_BODY_BYTES") {
            Some(raw) => parse_number("MAAS_MAX_BODY_BYTES", &raw)?,
            None => LAMBDA_PAYLOAD_LIMIT,
        };
        let metrics = match lookup("MAAS_EMF").as_deref() {
            Some("1" | "true" | "on") => MetricsSink::Stdout,
            Some("0" | "false" | "off") => MetricsSink::Off,
            Some(other) => {
                return Err(InferenceError::Config(format!(
                    "MAAS_EMF={other:?}: use 1 or 0"
                )));
            }
            None if in_lambda => MetricsSink::Stdout,
            None => MetricsSink::Off,
        };
        Ok(Self {
            store,
            preload,
            cache: CacheConfig {
                max_bytes: cache_mb.saturating_mul(1024 * 1024),
                alias_ttl,
                ..CacheConfig::default()
            },
            max_body_bytes,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<InferenceConfig, InferenceError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        InferenceConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn local_defaults() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.store, "./maas-data");
        assert!(c.preload.is_empty());
        assert_eq!(c.max_body_bytes, LAMBDA_PAYLOAD_LIMIT);
        assert_eq!(c.metrics, MetricsSink::Off);
    }

    #[test]
    fn lambda_needs_a_store_and_sizes_the_cache_from_memory() {
        let err = config(&[("AWS_LAMBDA_FUNCTION_NAME", "infer")]).expect_err("no store");
        assert!(err.to_string().contains("MAAS_STORE"), "{err}");
        let c = config(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "infer"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1000"),
            ("MAAS_STORE", "s3://b/p"),
            ("MAAS_PRELOAD", "seed, fraud@staging ,x:3"),
        ])
        .expect("lambda config");
        assert_eq!(c.cache.max_bytes, 600 * 1024 * 1024);
        assert_eq!(c.metrics, MetricsSink::Stdout);
        assert_eq!(c.preload.len(), 3);
        assert_eq!(
            c.preload[1].selector,
            VersionSelector::Alias("staging".into())
        );
    }

    #[test]
    fn bad_variables_name_themselves() {
        for (k, v) in [
            ("MAAS_CACHE_MB", "lots"),
            ("MAAS_PRELOAD", "../x"),
            ("MAAS_PRELOAD", "m:0"),
            ("MAAS_EMF", "yes"),
        ] {
            let err = config(&[(k, v)]).expect_err(k).to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }
}
