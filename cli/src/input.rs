//! Turning a user's rows (JSON or CSV with a header) into the model's input tensors, through the
//! same [`RowLayout`] as batch scoring and V1 (columns and keys by feature or input name). Every
//! problem is reported with the row (and column) it is in.

use maas_engine::{Field, LoadedModel, RowLayout, Tensor, push_json_row};
use serde_json::Value;

use crate::CliError;

/// Parses `raw` into the model's input tensors; returns them and the number of rows.
pub(crate) fn tensors_for(
    model: &LoadedModel,
    source: &str,
    raw: &[u8],
) -> Result<(Vec<Tensor>, usize), CliError> {
    let layout = RowLayout::of(model)?;
    let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let mut batch = layout.batch();
    if source.ends_with(".csv") || !matches!(first, Some(b'[' | b'{')) {
        csv_rows(raw, &layout, &mut batch)?;
    } else {
        json_rows(raw, &mut batch)?;
    }
    let rows = batch.rows();
    if rows == 0 {
        return Err(CliError::Input("the input has no rows".into()));
    }
    Ok((batch.take_tensors()?, rows))
}

fn json_rows(raw: &[u8], batch: &mut maas_engine::RowBatch<'_>) -> Result<(), CliError> {
    let doc: Value = serde_json::from_slice(raw)
        .map_err(|e| CliError::Input(format!("the input is not valid JSON: {e}")))?;
    let rows = match doc {
        Value::Object(mut map) if map.contains_key("instances") => {
            map.remove("instances").unwrap_or(Value::Null)
        }
        other => other,
    };
    let rows = match rows {
        Value::Array(items) if items.first().is_some_and(|v| v.is_number() || v.is_null()) => {
            vec![Value::Array(items)]
        }
        Value::Array(items) => items,
        Value::Object(map) => vec![Value::Object(map)],
        _ => {
            return Err(CliError::Input(
                "expected a list of rows: [[1.0, 2.0, ...], ...] or [{\"feature\": 1.0, ...}, ...]"
                    .into(),
            ));
        }
    };
    for (i, row) in rows.iter().enumerate() {
        push_json_row(batch, row)
            .map_err(|why| CliError::Input(format!("row {}: {why}", i + 1)))?;
    }
    Ok(())
}

fn csv_rows(
    raw: &[u8],
    layout: &RowLayout,
    batch: &mut maas_engine::RowBatch<'_>,
) -> Result<(), CliError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(raw);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| CliError::Input(format!("the CSV header can't be read: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let columns = layout.columns_of(&headers).map_err(CliError::Input)?;
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| CliError::Input(format!("the CSV is malformed: {e}")))?;
        let line = record.position().map_or(n + 2, |p| p.line() as usize);
        batch
            .push_row(|k, _| Field::Text(record.get(columns[k]).unwrap_or("")))
            .map_err(|why| {
                let at = if layout.is_named() { "column " } else { "" };
                CliError::Input(format!("line {line}: {at}{why}"))
            })?;
    }
    Ok(())
}
