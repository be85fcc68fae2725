//! The training loop, independent of storage: epochs of shuffled mini-batches, validation after
//! each epoch, early stopping, and a [`TrainerState`] that captures everything needed to resume
//! bit-for-bit (weights, optimizer buffers, epoch, RNG position, best weights, history).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::data::Dataset;
use crate::metrics;
use crate::network::{self, Mlp};
use crate::optim::Optimizer;
use crate::spec::{JobSpec, Task};

/// Rows per forward pass when evaluating.
const EVAL_CHUNK: usize = 4096;

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// Training rows per second in this epoch.
    pub samples_per_second: f64,
}

/// Everything a resumed job needs besides the spec and the data.
#[derive(Debug, Clone)]
pub struct TrainerState {
    /// Epochs completed.
    pub epoch: usize,
    /// Current weights, in parameter order.
    pub weights: Vec<Vec<f32>>,
    /// Optimizer step count.
    pub steps: u64,
    /// Optimizer first moments / momentum buffers.
    pub first: Vec<Vec<f32>>,
    /// Optimizer second moments.
    pub second: Vec<Vec<f32>>,
    /// Position of the shuffling/dropout RNG (ChaCha word position).
    pub rng_word_pos: u128,
    /// Best validation loss so far, its epoch and weights.
    pub best: Option<(f64, usize, Vec<Vec<f32>>)>,
    /// Epochs since the best one.
    pub since_best: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
}

/// Progress reports while training.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// A batch finished: rows done in this epoch out of `total`.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Rows done.
        done: usize,
        /// Rows per epoch.
        total: usize,
    },
    /// An epoch finished (and was checkpointed by the caller if it wants to).
    Epoch(&'a EpochRecord),
}

/// A training run over prepared data.
pub struct Trainer<'d> {
    spec: JobSpec,
    data: &'d Dataset,
    train_idx: Vec<usize>,
    val_x: Vec<f32>,
    val_y: Vec<f32>,
    mlp: Mlp,
    optimizer: Optimizer,
    rng: ChaCha8Rng,
    state: TrainerState,
}

/// The outcome of [`Trainer::run`].
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// All epochs ran, or early stopping ended training.
    Finished,
    /// `keep_going` said stop before the next epoch; the state is consistent for a resume.
    Paused,
}

impl<'d> Trainer<'d> {
    /// Prepares training of `spec` on `data` (already standardised if the spec says so), split
    /// into `train_idx` / `val_idx`. Starts fresh, or from `resume`.
    pub fn new(
        spec: &JobSpec,
        data: &'d Dataset,
        train_idx: Vec<usize>,
        val_idx: &[usize],
        resume: Option<TrainerState>,
    ) -> Result<Self, TrainError> {
        let mut widths = vec![data.width()];
        widths.extend(&spec.architecture.hidden);
        widths.push(data.outputs);
        let seed = spec.training.seed;
        let mut init_rng = ChaCha8Rng::seed_from_u64(seed);
        let mlp = Mlp::new(
            &widths,
            spec.architecture.activation,
            spec.architecture.dropout,
            &mut init_rng,
        )?;
        let t = &spec.training;
        let mut optimizer = Optimizer::new(
            t.optimizer,
            t.learning_rate,
            t.momentum,
            t.weight_decay,
            &mlp.param_sizes(),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
        let state = match resume {
            Some(state) => {
                mlp.restore(&state.weights)?;
                let sizes = mlp.param_sizes();
                let fits = |buffers: &[Vec<f32>], optional: bool| {
                    buffers.len() == sizes.len()
                        && buffers
                            .iter()
                            .zip(&sizes)
                            .all(|(b, &n)| b.len() == n || (optional && b.is_empty()))
                };
                if !fits(&state.first, false) || !fits(&state.second, true) {
                    return Err(TrainError::Checkpoint(
                        "the checkpoint's optimizer state does not fit the network".into(),
                    ));
                }
                optimizer.steps = state.steps;
                optimizer.first = state.first.clone();
                optimizer.second = state.second.clone();
                rng.set_word_pos(state.rng_word_pos);
                state
            }
            None => TrainerState {
                epoch: 0,
                weights: Vec::new(),
                steps: 0,
                first: Vec::new(),
                second: Vec::new(),
                rng_word_pos: rng.get_word_pos(),
                best: None,
                since_best: 0,
                stopped_early: false,
                history: Vec::new(),
            },
        };
        let (val_x, val_y) = data.select(val_idx);
        Ok(Self {
            spec: spec.clone(),
            data,
            train_idx,
            val_x,
            val_y,
            mlp,
            optimizer,
            rng,
            state,
        })
    }

    /// Epochs completed so far.
    pub fn epoch(&self) -> usize {
        self.state.epoch
    }

    /// Whether training is over (all epochs, or stopped early).
    pub fn finished(&self) -> bool {
        self.state.stopped_early || self.state.epoch >= self.spec.training.epochs
    }

    /// Runs epochs until done or until `keep_going` (asked before each epoch, with the mean
    /// duration of the epochs run so far in this call) returns false. `progress` hears of every
    /// batch and epoch; `after_epoch` gets the state to checkpoint.
    pub fn run(
        &mut self,
        mut keep_going: impl FnMut(Option<std::time::Duration>) -> bool,
        mut progress: impl FnMut(Progress<'_>),
        mut after_epoch: impl FnMut(&TrainerState) -> Result<(), TrainError>,
    ) -> Result<RunOutcome, TrainError> {
        let started = Instant::now();
        let mut epochs_here = 0u32;
        while !self.finished() {
            let mean = (epochs_here > 0).then(|| started.elapsed() / epochs_here);
            if !keep_going(mean) {
                return Ok(RunOutcome::Paused);
            }
            let record = self.epoch_once(&mut progress)?;
            epochs_here += 1;
            progress(Progress::Epoch(&record));
            self.capture()?;
            after_epoch(&self.state)?;
        }
        Ok(RunOutcome::Finished)
    }

    fn epoch_once(
        &mut self,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<EpochRecord, TrainError> {
        let epoch = self.state.epoch + 1;
        let task = self.spec.task;
        let batch = self.spec.training.batch_size;
        let width = self.data.width();
        let params = self.mlp.params();
        // As many threads as candle would use (RAYON_NUM_THREADS; all cores when unset).
        let threads = candle_core::utils::get_num_threads();
        let mut order = self.train_idx.clone();
        order.shuffle(&mut self.rng);
        let started = Instant::now();
        let mut loss_sum = 0.0f64;
        let mut x = Vec::with_capacity(batch * width);
        let mut y = Vec::with_capacity(batch);
        for (b, chunk) in order.chunks(batch).enumerate() {
            x.clear();
            y.clear();
            for &i in chunk {
                x.extend_from_slice(&self.data.x[i * width..(i + 1) * width]);
                y.push(self.data.y[i]);
            }
            let xt = Tensor::from_slice(&x, (chunk.len(), width), &Device::Cpu)?;
            let dropout = (self.spec.architecture.dropout > 0.0).then_some(&mut self.rng);
            let (loss, grads) = self
                .mlp
                .loss_and_gradients(task, &xt, &y, dropout, threads)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    hint: "lower training.learning_rate, or set training.standardize".into(),
                });
            }
            loss_sum += value * chunk.len() as f64;
            self.optimizer.step_with(&params, &grads)?;
            progress(Progress::Batch {
                epoch,
                done: (b * batch + chunk.len()).min(order.len()),
                total: order.len(),
            });
        }
        let elapsed = started.elapsed().as_secs_f64();
        let val_loss = self.validation_loss()?;
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / order.len().max(1) as f64,
            val_loss,
            samples_per_second: order.len() as f64 / elapsed.max(1e-9),
        };
        self.state.epoch = epoch;
        self.state.history.push(record.clone());
        let min_delta = self
            .spec
            .training
            .early_stopping
            .as_ref()
            .map_or(0.0, |e| e.min_delta);
        let improved = self
            .state
            .best
            .as_ref()
            .is_none_or(|(best, _, _)| val_loss < best - min_delta);
        if improved {
            self.state.best = Some((val_loss, epoch, self.mlp.snapshot()?));
            self.state.since_best = 0;
        } else {
            self.state.since_best += 1;
            if let Some(es) = &self.spec.training.early_stopping
                && self.state.since_best >= es.patience
            {
                self.state.stopped_early = true;
            }
        }
        Ok(record)
    }

    fn validation_loss(&self) -> Result<f64, TrainError> {
        let width = self.data.width();
        let rows = self.val_y.len();
        let mut sum = 0.0;
        let mut start = 0;
        while start < rows {
            let end = (start + EVAL_CHUNK).min(rows);
            let xt = Tensor::from_slice(
                &self.val_x[start * width..end * width],
                (end - start, width),
                &Device::Cpu,
            )?;
            let z = self.mlp.infer(&xt, candle_core::utils::get_num_threads())?;
            let loss = network::loss(self.spec.task, &z, &self.val_y[start..end])?;
            sum += f64::from(loss.to_scalar::<f32>()?) * (end - start) as f64;
            start = end;
        }
        Ok(sum / rows.max(1) as f64)
    }

    /// Copies the live weights, optimizer buffers and RNG position into the state.
    fn capture(&mut self) -> Result<(), TrainError> {
        self.state.weights = self.mlp.snapshot()?;
        self.state.steps = self.optimizer.steps;
        self.state.first = self.optimizer.first.clone();
        self.state.second = self.optimizer.second.clone();
        self.state.rng_word_pos = self.rng.get_word_pos();
        Ok(())
    }

    /// The state as of the last completed epoch.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// Ends training: loads the best epoch's weights (the last epoch's if validation never
    /// improved) and evaluates them. Returns the network and the metrics for the manifest.
    pub fn finish(self) -> Result<(Mlp, BTreeMap<String, f64>), TrainError> {
        if let Some((_, _, weights)) = &self.state.best {
            self.mlp.restore(weights)?;
        }
        let outputs = network::predict(&self.mlp, &self.val_x, self.data.width(), EVAL_CHUNK)?;
        let task = self.spec.task;
        let mut m = metrics::evaluate(task, &outputs, &self.val_y, self.data.outputs);
        m.insert("val_loss".into(), self.validation_loss()?);
        if let Some(last) = self.state.history.last() {
            m.insert("train_loss".into(), last.train_loss);
        }
        if task == Task::Regression {
            // What predicting the training mean would score: the bar any model must clear.
            let (_, train_y) = self.data.select(&self.train_idx);
            let mean =
                train_y.iter().map(|&v| f64::from(v)).sum::<f64>() / train_y.len().max(1) as f64;
            let baseline = self
                .val_y
                .iter()
                .map(|&t| (f64::from(t) - mean).powi(2))
                .sum::<f64>()
                / self.val_y.len().max(1) as f64;
            m.insert("val_mse_baseline".into(), baseline);
        }
        Ok((self.mlp, m))
    }
}
