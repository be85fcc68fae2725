//! `maas score MODEL INPUT OUTPUT`: batch scoring of local files with the same row code the
//! scoring function runs, with a progress bar. Outputs appear whole: they are written next to
//! their final names and renamed when scoring succeeded, the report last — a report on disk
//! means the outputs beside it are this run's, complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use maas_batch::rows::{self, RowCounts};
use maas_core::ModelName;
use maas_registry::{Registry, VersionSelector};
use serde_json::json;

use crate::{CliError, Rendered};

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Scores `input` into `output` (plus `output.errors.jsonl` and `output.report.json`).
pub(crate) async fn score_files(
    registry: &Registry,
    model: &ModelName,
    selector: &VersionSelector,
    input: PathBuf,
    output: PathBuf,
    json: bool,
) -> Result<Rendered, CliError> {
    let lower = input.to_string_lossy().to_ascii_lowercase();
    let csv = if lower.ends_with(".csv") {
        true
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        false
    } else {
        return Err(CliError::Input(format!(
            "{} is neither .csv (with a header) nor .jsonl",
            input.display()
        )));
    };
    let loaded = maas_models::load(registry, model, selector).await?;
    let version = loaded.manifest().version;
    // The report is the commit point: an old one must not vouch for the outputs of this run.
    let report_path = with_suffix(&output, ".report.json");
    match std::fs::remove_file(&report_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(&report_path, e)),
    }
    let started = Instant::now();
    let (input_c, output_c) = (input.clone(), output.clone());
    let counts: RowCounts = tokio::task::spawn_blocking(move || -> Result<RowCounts, CliError> {
        let file = std::fs::File::open(&input_c).map_err(|e| file_error(&input_c, e))?;
        let size = file.metadata().map_err(|e| file_error(&input_c, e))?.len();
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scoring {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let reader = bar.wrap_read(std::io::BufReader::with_capacity(1 << 20, file));
        let partial = with_suffix(&output_c, ".partial");
        let errors_partial = with_suffix(&output_c, ".errors.jsonl.partial");
        let out = std::fs::File::create(&partial).map_err(|e| file_error(&partial, e))?;
        let errs =
            std::fs::File::create(&errors_partial).map_err(|e| file_error(&errors_partial, e))?;
        let result = if csv {
            rows::score_csv(
                reader,
                &loaded,
                std::io::BufWriter::new(out),
                std::io::BufWriter::new(errs),
                maas_batch::DEFAULT_CHUNK_ROWS,
            )
        } else {
            rows::score_jsonl(
                reader,
                &loaded,
                std::io::BufWriter::new(out),
                std::io::BufWriter::new(errs),
                maas_batch::DEFAULT_CHUNK_ROWS,
            )
        };
        bar.finish_and_clear();
        match result {
            Ok(counts) => {
                std::fs::rename(&partial, &output_c).map_err(|e| file_error(&output_c, e))?;
                let errors_path = with_suffix(&output_c, ".errors.jsonl");
                std::fs::rename(&errors_partial, &errors_path)
                    .map_err(|e| file_error(&errors_path, e))?;
                Ok(counts)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                let _ = std::fs::remove_file(&errors_partial);
                Err(CliError::Input(e.to_string()))
            }
        }
    })
    .await
    .map_err(|e| CliError::Input(format!("scoring did not finish: {e}")))??;
    let elapsed = started.elapsed().as_secs_f64();
    let report = json!({
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "errors": with_suffix(&output, ".errors.jsonl").display().to_string(),
        "model": model,
        "model_version": version,
        "rows_read": counts.read,
        "rows_scored": counts.scored,
        "rows_rejected": counts.rejected,
        "elapsed_ms": elapsed * 1e3,
        "rows_per_second": if elapsed > 0.0 { counts.read as f64 / elapsed } else { 0.0 },
    });
    // Written aside and renamed, after both outputs: a report on disk means the run finished.
    let report_partial = with_suffix(&output, ".report.json.partial");
    std::fs::write(
        &report_partial,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&report_partial, &report_path))
    .map_err(|e| file_error(&report_path, e))?;
    let text = format!(
        "scored {} rows with {model} version {version} in {:.2} s ({:.0} rows/s): {} scored → {}, {} rejected → {}",
        counts.read,
        elapsed,
        report["rows_per_second"].as_f64().unwrap_or(0.0),
        counts.scored,
        output.display(),
        counts.rejected,
        with_suffix(&output, ".errors.jsonl").display()
    );
    Ok(if json {
        Rendered(serde_json::to_string_pretty(&report).unwrap_or_default())
    } else {
        Rendered(text)
    })
}
