//! The batch key convention:
//!
//! ```text
//! batch/input/{model}/{path}              scored with the default version (production, else latest)
//! batch/input/{model}@{alias}/{path}      scored with the version the alias points at
//! batch/input/{model}:{version}/{path}    scored with exactly that version
//! batch/output/{folder}/{path}             the rows with predictions, same format
//! batch/output/{folder}/{path}.errors.jsonl  one line per rejected row
//! batch/output/{folder}/{path}.report.json   counts, model version, timings (written last)
//! ```
//!
//! `{folder}` is the input's model folder as it was written — `seed`, `seed@staging`, `seed:3` —
//! so scoring one file against two selectors (the A/B case) gives two outputs that never
//! overwrite each other, and the plain `seed/` case stays `batch/output/seed/…`.
//!
//! Output never lands under `batch/input/`, so the scoring function can't trigger itself.
//!
//! `batch/bulk/` has the same layout as `batch/input/` but no upload trigger: it is for jobs of
//! many files, which the template's Distributed Map state machine fans out over the scoring
//! function (with a failure tolerance and a summary) instead of one event per upload. Its
//! outputs go to `batch/output/_bulk/{folder}/{path}`: `_bulk` can't be a model folder (model
//! names start with a letter or digit), so a bulk file never shares an output with an uploaded
//! one of the same name.

use maas_core::{AliasName, ModelName, Version};
use maas_registry::VersionSelector;

use crate::BatchError;

/// The prefix that triggers scoring.
pub const INPUT_PREFIX: &str = "batch/input/";
/// Files scored by the bulk state machine rather than on upload (same layout).
pub const BULK_PREFIX: &str = "batch/bulk/";
/// Where results go.
pub const OUTPUT_PREFIX: &str = "batch/output/";
/// Where results of `batch/bulk/` inputs go (under [`OUTPUT_PREFIX`]).
pub const BULK_OUTPUT_PREFIX: &str = "batch/output/_bulk/";

/// Row formats batch scoring reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object (or array) per line.
    JsonLines,
}

/// What an input key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTarget {
    /// The input object's key.
    pub input_key: String,
    /// The model to score with.
    pub model: ModelName,
    /// Which version.
    pub selector: VersionSelector,
    /// The input's format, from its extension.
    pub format: RowFormat,
    /// Key of the scored rows.
    pub output_key: String,
    /// Key of the rejected rows.
    pub errors_key: String,
    /// Key of the report (the commit point: written last).
    pub report_key: String,
}

impl BatchTarget {
    /// Parses `batch/input/{model}[@alias|:version]/{path}` (or the same under `batch/bulk/`).
    pub fn parse(key: &str) -> Result<Self, BatchError> {
        let invalid = |why: &str| BatchError::InvalidKey {
            key: key.to_string(),
            why: why.to_string(),
        };
        let (rest, output_prefix) = if let Some(rest) = key.strip_prefix(INPUT_PREFIX) {
            (rest, OUTPUT_PREFIX)
        } else if let Some(rest) = key.strip_prefix(BULK_PREFIX) {
            (rest, BULK_OUTPUT_PREFIX)
        } else {
            return Err(invalid("it is not under batch/input/ (or batch/bulk/)"));
        };
        let (model_part, path) = rest.split_once('/').ok_or_else(|| {
            invalid("it has no file below the model folder (batch/input/{model}/{file})")
        })?;
        if path.is_empty() || path.ends_with('/') {
            return Err(invalid("it names a folder, not a file"));
        }
        let (name, selector) = if let Some((name, alias)) = model_part.split_once('@') {
            (name, VersionSelector::Alias(alias.to_string()))
        } else if let Some((name, version)) = model_part.split_once(':') {
            let v: Version = version
                .parse()
                .map_err(|e: maas_core::CoreError| invalid(&e.to_string()))?;
            (name, VersionSelector::Version(v))
        } else {
            (model_part, VersionSelector::Default)
        };
        let model = ModelName::new(name).map_err(|e| invalid(&e.to_string()))?;
        let lower = path.to_ascii_lowercase();
        let format = if lower.ends_with(".csv") {
            RowFormat::Csv
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            RowFormat::JsonLines
        } else {
            return Err(invalid(
                "only .csv (with a header) and .jsonl files are scored",
            ));
        };
        maas_store::validate_key(key).map_err(|e| invalid(&e.to_string()))?;
        // The folder names the selector, so each selector has its own outputs (`seed:03` and
        // `seed:3` are one selector, and write one output).
        let folder = match &selector {
            VersionSelector::Default => model.to_string(),
            VersionSelector::Alias(alias) if alias == AliasName::LATEST => {
                format!("{model}@{alias}")
            }
            VersionSelector::Alias(alias) => {
                let alias = AliasName::new(alias).map_err(|e| invalid(&e.to_string()))?;
                format!("{model}@{alias}")
            }
            VersionSelector::Version(v) => format!("{model}:{v}"),
        };
        let output_key = format!("{output_prefix}{folder}/{path}");
        Ok(Self {
            input_key: key.to_string(),
            errors_key: format!("{output_key}.errors.jsonl"),
            report_key: format!("{output_key}.report.json"),
            output_key,
            model,
            selector,
            format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_selector_forms() {
        let t = BatchTarget::parse("batch/input/seed/2026/day 1.csv").expect("default");
        assert_eq!(t.model.as_str(), "seed");
        assert_eq!(t.selector, VersionSelector::Default);
        assert_eq!(t.format, RowFormat::Csv);
        assert_eq!(t.output_key, "batch/output/seed/2026/day 1.csv");
        assert_eq!(
            t.errors_key,
            "batch/output/seed/2026/day 1.csv.errors.jsonl"
        );
        assert_eq!(t.report_key, "batch/output/seed/2026/day 1.csv.report.json");
        let t = BatchTarget::parse("batch/input/seed@staging/x.jsonl").expect("alias");
        assert_eq!(t.selector, VersionSelector::Alias("staging".into()));
        assert_eq!(t.format, RowFormat::JsonLines);
        assert_eq!(t.output_key, "batch/output/seed@staging/x.jsonl");
        let t = BatchTarget::parse("batch/bulk/seed@staging/part-7.csv").expect("bulk");
        assert_eq!(t.output_key, "batch/output/_bulk/seed@staging/part-7.csv");
        assert_eq!(t.input_key, "batch/bulk/seed@staging/part-7.csv");
        let t = BatchTarget::parse("batch/input/seed:3/x.csv").expect("version");
        assert_eq!(
            t.selector,
            VersionSelector::Version(Version::new(3).expect("3"))
        );
    }

    #[test]
    fn every_selector_and_source_has_its_own_outputs() {
        // GIVEN one file name dropped under four selectors / sources
        let keys = [
            "batch/input/seed/x.csv",
            "batch/input/seed@staging/x.csv",
            "batch/input/seed@production/x.csv",
            "batch/input/seed:3/x.csv",
            "batch/bulk/seed/x.csv",
            "batch/bulk/seed:3/x.csv",
        ];
        let targets: Vec<BatchTarget> = keys
            .iter()
            .map(|k| BatchTarget::parse(k).expect("valid"))
            .collect();
        // THEN no two share an output, errors file or report, and none is under an input prefix
        for (i, a) in targets.iter().enumerate() {
            for b in &targets[i + 1..] {
                assert_ne!(a.output_key, b.output_key);
                assert_ne!(a.errors_key, b.errors_key);
                assert_ne!(a.report_key, b.report_key);
            }
            assert!(a.output_key.starts_with(OUTPUT_PREFIX), "{}", a.output_key);
            assert!(!a.output_key.starts_with(INPUT_PREFIX));
            assert!(!a.output_key.starts_with(BULK_PREFIX));
        }
        assert_eq!(targets[0].output_key, "batch/output/seed/x.csv");
        assert_eq!(targets[3].output_key, "batch/output/seed:3/x.csv");
    }

    #[test]
    fn refuses_keys_it_cannot_score() {
        for key in [
            "batch/output/seed/x.csv",
            "batch/input/seed.csv",
            "batch/input/seed/",
            "batch/input/Seed/x.csv",
            "batch/input/seed/x.parquet",
            "batch/input/seed:0/x.csv",
            "batch/input/seed/../x.csv",
            "batch/input/seed@../x.csv",
            "batch/input/seed@Bad/x.csv",
        ] {
            assert!(BatchTarget::parse(key).is_err(), "{key}");
        }
    }
}
