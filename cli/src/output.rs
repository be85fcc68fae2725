//! What each command prints: human-readable text, or JSON with `--json`.

use maas_core::{AliasName, ModelName};
use maas_engine::{ClassLabel, LoadedModel, RowAnswers};
use maas_models::PushOutcome;
use maas_registry::{AliasMove, Registry};
use serde_json::json;

use crate::CliError;

/// A command's result, ready to print on stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered(pub String);

fn render(json: bool, value: serde_json::Value, text: String) -> Rendered {
    if json {
        Rendered(serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()))
    } else {
        Rendered(text)
    }
}

pub(crate) fn pushed(outcome: &PushOutcome, json: bool) -> Rendered {
    let m = &outcome.manifest;
    let primary = &m.artifacts[m.format.artifact_name()];
    let inputs: Vec<String> = m
        .inputs
        .iter()
        .map(|t| format!("{} {} {}", t.name, t.datatype, t.shape_string()))
        .collect();
    let mut text = format!(
        "pushed {} version {} ({}, {} bytes, sha256 {})\n  inputs: {}",
        m.name,
        m.version,
        m.format,
        primary.size,
        &primary.sha256[..12],
        inputs.join(", ")
    );
    if let Some(moved) = &outcome.alias {
        text.push_str(&format!("\n  alias now points at version {}", moved.to));
    }
    render(
        json,
        json!({
            "model": m.name,
            "version": m.version,
            "format": m.format,
            "sha256": primary.sha256,
            "size": primary.size,
            "inputs": m.inputs,
            "outputs": m.outputs,
            "architecture": m.architecture,
            "alias_moved": outcome.alias.as_ref().map(|a| json!({"from": a.from, "to": a.to})),
        }),
        text,
    )
}

pub(crate) async fn models(registry: &Registry, json: bool) -> Result<Rendered, CliError> {
    let mut rows = Vec::new();
    for name in registry.models().await? {
        let latest = registry.latest(&name).await?;
        let aliases = registry.aliases(&name).await?;
        rows.push((name, latest, aliases));
    }
    let text = if rows.is_empty() {
        "no models yet; push one with `maas push MODEL FILE`".to_string()
    } else {
        let mut t = format!("{:<32} {:>7}  aliases", "MODEL", "LATEST");
        for (name, latest, aliases) in &rows {
            let a: Vec<String> = aliases
                .iter()
                .map(|(n, r)| format!("{n}={}", r.version))
                .collect();
            t.push_str(&format!(
                "\n{:<32} {:>7}  {}",
                name.as_str(),
                latest.get(),
                a.join(" ")
            ));
        }
        t
    };
    let value = json!(
        rows.iter()
            .map(|(name, latest, aliases)| json!({
                "model": name,
                "latest": latest,
                "aliases": aliases.iter().map(|(n, r)| (n.to_string(), json!(r.version))).collect::<serde_json::Map<_, _>>(),
            }))
            .collect::<Vec<_>>()
    );
    Ok(render(json, value, text))
}

pub(crate) async fn versions(
    registry: &Registry,
    model: &ModelName,
    json: bool,
) -> Result<Rendered, CliError> {
    let summaries = registry.version_summaries(model).await?;
    let mut text = format!(
        "{:>7}  {:<12} {:<21} {:<8} {:<24} aliases",
        "VERSION", "FORMAT", "CREATED", "SOURCE", "BY"
    );
    for s in &summaries {
        // Whole seconds, so the column lines up (RFC 3339 would print nanoseconds).
        let created = s
            .created_at
            .replace_nanosecond(0)
            .unwrap_or(s.created_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        text.push_str(&format!(
            "\n{:>7}  {:<12} {:<21} {:<8} {:<24} {}",
            s.version.get(),
            s.format.platform(),
            created,
            s.source,
            s.created_by,
            s.aliases.join(" ")
        ));
    }
    Ok(render(json, json!(summaries), text))
}

pub(crate) fn promoted(
    model: &ModelName,
    alias: &AliasName,
    moved: &AliasMove,
    json: bool,
) -> Rendered {
    let from = moved
        .from
        .map_or("nowhere".to_string(), |v| format!("version {v}"));
    let text = if moved.changed {
        format!("{model}: {alias} moved from {from} to version {}", moved.to)
    } else {
        format!(
            "{model}: {alias} already points at version {}; nothing changed",
            moved.to
        )
    };
    render(
        json,
        json!({"model": model, "alias": alias, "from": moved.from, "to": moved.to, "changed": moved.changed}),
        text,
    )
}

/// What `maas predict` prints: each row's first output and, for a classifier, each row's label
/// and probabilities (one per class, in the order of `classes`), as V1 `:predict` answers.
#[derive(serde::Serialize)]
struct PredictionsDoc<'a> {
    model: &'a str,
    model_version: u64,
    predictions: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a [ClassLabel]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<Vec<&'a [f32]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<&'a [ClassLabel]>,
}

pub(crate) fn predictions(model: &LoadedModel, answers: &RowAnswers) -> Rendered {
    let m = model.manifest();
    let rows = answers.rows();
    let classified = answers.classified();
    let doc = PredictionsDoc {
        model: m.name.as_str(),
        model_version: m.version.get(),
        predictions: (0..rows).map(|r| answers.prediction_json(r)).collect(),
        labels: classified.map(|c| c.labels.as_slice()),
        probabilities: classified.map(|c| (0..rows).map(|r| c.probabilities_of(r)).collect()),
        classes: classified.map(|c| c.classes.as_slice()),
    };
    Rendered(serde_json::to_string_pretty(&doc).unwrap_or_default())
}

pub(crate) async fn audit(
    registry: &Registry,
    model: &ModelName,
    json: bool,
) -> Result<Rendered, CliError> {
    let records = registry.audit_log(model).await?;
    if records.is_empty() {
        return Err(CliError::Registry(
            maas_registry::RegistryError::ModelNotFound {
                model: model.clone(),
            },
        ));
    }
    let mut text = String::new();
    for r in &records {
        let at =
            r.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
        let what = match &r.action {
            maas_core::AuditAction::VersionCreated {
                version, source, ..
            } => {
                format!("version {version} created ({source})")
            }
            maas_core::AuditAction::AliasMoved {
                alias, from, to, ..
            } => format!(
                "{alias}: {} -> {to}",
                from.map_or("none".to_string(), |v| v.to_string())
            ),
            maas_core::AuditAction::PromotionDeclined {
                alias, candidate, ..
            } => format!("{alias}: declined version {candidate}"),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{at}  {:<20} {what}", r.actor));
        if let Some(reason) = &r.reason {
            text.push_str(&format!("  ({reason})"));
        }
        if r.applied == Some(false) {
            // Written as the intent of a change that never took effect (a crash or a lost
            // race between the record and the change).
            text.push_str("  [not applied]");
        }
    }
    Ok(render(json, json!(records), text))
}
