//! CloudWatch Embedded Metric Format: one JSON line on stdout per measurement, which CloudWatch
//! Logs turns into metrics without any API call from the function.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every maas metric.
pub const NAMESPACE: &str = "maas";

/// Where metric lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSink {
    /// EMF lines on stdout (Lambda).
    Stdout,
    /// Nowhere (tests, local CLI unless asked).
    Off,
}

/// Builds one EMF document: `dimensions` (name → value) and `values` (name, unit, value).
/// Each metric is published twice: per dimension set (e.g. per model and status class) and with
/// no dimensions at all, the stack-wide series that the template's alarms and dashboard read.
pub fn emf_line(dimensions: &[(&str, &str)], values: &[(&str, &str, f64)]) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets(dimensions),
                "Metrics": values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), json!(v));
    }
    for (name, _, v) in values {
        doc.insert((*name).into(), json!(v));
    }
    Value::Object(doc)
}

/// The dimension sets of a document: the given one (when it names any) and the empty set.
fn dimension_sets<'a>(dimensions: &[(&'a str, &str)]) -> Vec<Vec<&'a str>> {
    let named: Vec<&'a str> = dimensions.iter().map(|(k, _)| *k).collect();
    if named.is_empty() {
        vec![named]
    } else {
        vec![named, Vec::new()]
    }
}

impl MetricsSink {
    /// Emits one EMF line.
    pub fn emit(self, dimensions: &[(&str, &str)], values: &[(&str, &str, f64)]) {
        if self == MetricsSink::Off {
            return;
        }
        let line = emf_line(dimensions, values).to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_documents_declare_their_metrics_and_dimensions() {
        let doc = emf_line(&[("model", "seed")], &[("latency_ms", "Milliseconds", 1.5)]);
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "maas");
        assert_eq!(cw["Dimensions"][0][0], "model");
        assert_eq!(cw["Dimensions"][1], json!([]), "the stack-wide rollup");
        assert_eq!(cw["Metrics"][0]["Name"], "latency_ms");
        assert_eq!(cw["Metrics"][0]["Unit"], "Milliseconds");
        assert_eq!(doc["model"], "seed");
        assert_eq!(doc["latency_ms"], 1.5);
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap_or(0) > 1_600_000_000_000);
        // Without dimensions, only the stack-wide set.
        let bare = emf_line(&[], &[("latency_ms", "Milliseconds", 1.5)]);
        assert_eq!(
            bare["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
    }
}
