//! Turning a user's rows (JSON or CSV with a header) into the flat feature matrix a model takes.
//! Every problem is reported with the row (and column) it is in.

use maas_engine::LoadedModel;
use serde_json::Value;

use crate::CliError;

/// Parses `raw` into `rows × width` values for the model's first input.
pub(crate) fn rows_for(
    model: &LoadedModel,
    source: &str,
    raw: &[u8],
) -> Result<(Vec<f32>, usize), CliError> {
    let width = model
        .inputs()
        .first()
        .map(|spec| spec.row_width())
        .ok_or_else(|| CliError::Input("the model declares no inputs".into()))?;
    let features = model.manifest().features.as_deref();
    let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let (values, rows) = if source.ends_with(".csv") || !matches!(first, Some(b'[' | b'{')) {
        csv_rows(raw, width, features)?
    } else {
        json_rows(raw, width, features)?
    };
    if rows == 0 {
        return Err(CliError::Input("the input has no rows".into()));
    }
    Ok((values, rows))
}

fn number(v: &Value, row: usize, column: &str) -> Result<f32, CliError> {
    v.as_f64()
        .map(|x| x as f32)
        .ok_or_else(|| CliError::Input(format!("row {row}, {column}: expected a number, got {v}")))
}

fn json_rows(
    raw: &[u8],
    width: usize,
    features: Option<&[String]>,
) -> Result<(Vec<f32>, usize), CliError> {
    let doc: Value = serde_json::from_slice(raw)
        .map_err(|e| CliError::Input(format!("the input is not valid JSON: {e}")))?;
    let rows = match doc {
        Value::Object(mut map) if map.contains_key("instances") => {
            map.remove("instances").unwrap_or(Value::Null)
        }
        other => other,
    };
    let rows = match rows {
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
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
    let mut values = Vec::with_capacity(rows.len() * width);
    for (i, row) in rows.iter().enumerate() {
        let row_no = i + 1;
        match row {
            Value::Array(items) => {
                if items.len() != width {
                    return Err(CliError::Input(format!(
                        "row {row_no} has {} values but the model takes {width} per row",
                        items.len()
                    )));
                }
                for (j, v) in items.iter().enumerate() {
                    values.push(number(v, row_no, &format!("column {}", j + 1))?);
                }
            }
            Value::Object(map) => {
                let Some(features) = features else {
                    return Err(CliError::Input(format!(
                        "row {row_no} is an object, but the model's manifest names no features; send rows as lists of {width} numbers"
                    )));
                };
                for name in features {
                    let v = map.get(name).ok_or_else(|| {
                        CliError::Input(format!("row {row_no} lacks feature {name:?}"))
                    })?;
                    values.push(number(v, row_no, &format!("feature {name:?}"))?);
                }
            }
            other => {
                return Err(CliError::Input(format!(
                    "row {row_no} is {other}, not a list of numbers or an object"
                )));
            }
        }
    }
    Ok((values, rows.len()))
}

fn csv_rows(
    raw: &[u8],
    width: usize,
    features: Option<&[String]>,
) -> Result<(Vec<f32>, usize), CliError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(raw);
    let headers = reader
        .headers()
        .map_err(|e| CliError::Input(format!("the CSV header can't be read: {e}")))?
        .clone();
    let columns: Vec<usize> = match features {
        Some(features) => features
            .iter()
            .map(|name| {
                headers
                    .iter()
                    .position(|h| h.trim() == name)
                    .ok_or_else(|| {
                        CliError::Input(format!(
                            "the CSV has no column {name:?}, which the model needs"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        None if headers.len() == width => (0..width).collect(),
        None => {
            return Err(CliError::Input(format!(
                "the CSV has {} columns but the model takes {width} features; give exactly those columns (the manifest names no features to pick by)",
                headers.len()
            )));
        }
    };
    let mut values = Vec::new();
    let mut rows = 0;
    for record in reader.records() {
        let record = record.map_err(|e| CliError::Input(format!("the CSV is malformed: {e}")))?;
        let line = record.position().map_or(rows + 2, |p| p.line() as usize);
        for &c in &columns {
            let cell = record.get(c).unwrap_or("").trim();
            let v: f32 = cell.parse().map_err(|_| {
                CliError::Input(format!(
                    "line {line}, column {:?}: {cell:?} is not a number",
                    headers.get(c).unwrap_or("?")
                ))
            })?;
            values.push(v);
        }
        rows += 1;
    }
    Ok((values, rows))
}
