//! Checkpoints: a trainer state as one safetensors file (weights, optimizer moments, best
//! weights), its scalars and the dataset's checksum in the metadata, so a resumed run continues
//! bit for bit — or refuses when the data changed.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::TrainError;
use crate::trainer::TrainerState;

/// Serialises a trainer state as one safetensors file; scalars go into its metadata.
pub(super) fn encode_checkpoint(
    state: &TrainerState,
    dataset_sha256: &str,
) -> Result<Vec<u8>, TrainError> {
    let mut tensors: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut push = |prefix: &str, buffers: &[Vec<f32>]| {
        for (i, b) in buffers.iter().enumerate() {
            tensors.push((
                format!("{prefix}.{i}"),
                b.iter().flat_map(|v| v.to_le_bytes()).collect(),
                b.len(),
            ));
        }
    };
    push("weights", &state.weights);
    push("first", &state.first);
    push("second", &state.second);
    if let Some((_, _, best)) = &state.best {
        push("best", best);
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, bytes, len)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*len], bytes)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let meta = json!({
        "epoch": state.epoch,
        "steps": state.steps,
        "rng_word_pos": state.rng_word_pos.to_string(),
        "best_loss": state.best.as_ref().map(|b| b.0),
        "best_epoch": state.best.as_ref().map(|b| b.1),
        "since_best": state.since_best,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "layers": state.weights.len(),
        "dataset_sha256": dataset_sha256,
    });
    let mut metadata = HashMap::new();
    metadata.insert("maas_trainer_state".to_string(), meta.to_string());
    safetensors::serialize(views, Some(metadata)).map_err(|e| TrainError::Checkpoint(e.to_string()))
}

pub(super) fn decode_checkpoint(
    bytes: &[u8],
    dataset_sha256: &str,
) -> Result<TrainerState, TrainError> {
    let bad = |why: String| TrainError::Checkpoint(why);
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("unreadable checkpoint: {e}")))?;
    let meta: Value = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("maas_trainer_state"))
        .ok_or_else(|| bad("the checkpoint has no trainer state".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| bad(e.to_string())))?;
    if meta["dataset_sha256"] != dataset_sha256 {
        return Err(TrainError::Checkpoint(
            "the dataset changed since the job started; start a new job (new job_id) to train on the new data".into(),
        ));
    }
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("unreadable checkpoint: {e}")))?;
    let layers = meta["layers"].as_u64().unwrap_or(0) as usize;
    let read = |prefix: &str| -> Result<Vec<Vec<f32>>, TrainError> {
        (0..layers)
            .map(|i| {
                let t = tensors
                    .tensor(&format!("{prefix}.{i}"))
                    .map_err(|e| bad(format!("{prefix}.{i}: {e}")))?;
                Ok(t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            })
            .collect()
    };
    let best = match (meta["best_loss"].as_f64(), meta["best_epoch"].as_u64()) {
        (Some(loss), Some(epoch)) => Some((loss, epoch as usize, read("best")?)),
        _ => None,
    };
    Ok(TrainerState {
        epoch: meta["epoch"].as_u64().unwrap_or(0) as usize,
        weights: read("weights")?,
        steps: meta["steps"].as_u64().unwrap_or(0),
        first: read("first")?,
        second: read("second")?,
        rng_word_pos: meta["rng_word_pos"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("the checkpoint has no RNG position".into()))?,
        best,
        since_best: meta["since_best"].as_u64().unwrap_or(0) as usize,
        stopped_early: meta["stopped_early"].as_bool().unwrap_or(false),
        history: serde_json::from_value(meta["history"].clone()).map_err(|e| bad(e.to_string()))?,
    })
}
