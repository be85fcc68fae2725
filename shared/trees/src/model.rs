//! [`TreeModel`]: an ensemble with what makes its scores answers — the transform, the task
//! (regression or classification with its class labels) and the feature names.

use crate::{Ensemble, PostTransform, TreesError};

/// Class labels, as the model file names them.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    /// Integer labels (XGBoost and LightGBM: `0..classes`).
    Int(Vec<i64>),
    /// String labels (scikit-learn models trained on strings).
    Str(Vec<String>),
}

impl ClassLabels {
    /// How many classes.
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of class `index`, as text.
    pub fn name(&self, index: usize) -> String {
        match self {
            ClassLabels::Int(v) => v.get(index).map(ToString::to_string).unwrap_or_default(),
            ClassLabels::Str(v) => v.get(index).cloned().unwrap_or_default(),
        }
    }
}

/// What the model's scores mean.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Each row gets `n_targets` values.
    Regression,
    /// Each row gets a probability per class and the label of the most likely.
    Classification {
        /// One label per class.
        labels: ClassLabels,
        /// A two-class model that scores only the positive class, and how its one score
        /// answers; `None`: one score per class.
        binary: Option<BinaryScore>,
    },
}

/// How the one score of a two-class model that scores only the positive class answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryScore {
    /// The score (after the transform) is the positive class's probability `p`:
    /// probabilities `[1 − p, p]`, the positive label when `p > 0.5`.
    Probability,
    /// The score is a margin `s`: `[−s, s]`, the positive label when `s > 0`.
    Margin,
}

/// What a booster's objective makes of its scores (XGBoost and LightGBM files name integer
/// classes `0..n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoosterTask {
    /// Values.
    Regression,
    /// Two classes, one score: the positive class's probability.
    Binary,
    /// One score per class.
    Multiclass,
}

impl BoosterTask {
    /// The task of a booster whose ensemble has `n_targets` scores.
    pub(crate) fn task(self, n_targets: usize) -> Task {
        match self {
            BoosterTask::Regression => Task::Regression,
            BoosterTask::Binary => Task::Classification {
                labels: ClassLabels::Int(vec![0, 1]),
                binary: Some(BinaryScore::Probability),
            },
            BoosterTask::Multiclass => Task::Classification {
                labels: ClassLabels::Int((0..n_targets as i64).collect()),
                binary: None,
            },
        }
    }
}

/// A tree model ready to answer.
#[derive(Debug, Clone)]
pub struct TreeModel {
    ensemble: Ensemble,
    transform: PostTransform,
    task: Task,
    feature_names: Vec<String>,
}

/// One call's answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Row-major values: `rows × width` (targets for regression, class probabilities for
    /// classification).
    pub values: Vec<f32>,
    /// Values per row.
    pub width: usize,
    /// Classification: the index of each row's class (into the labels).
    pub classes: Option<Vec<usize>>,
}

impl TreeModel {
    /// Joins an ensemble to its meaning; checks that they fit.
    pub fn new(
        ensemble: Ensemble,
        transform: PostTransform,
        task: Task,
        feature_names: Vec<String>,
    ) -> Result<Self, TreesError> {
        if let Task::Classification { labels, binary } = &task {
            let scored = if binary.is_some() {
                2
            } else {
                ensemble.n_targets()
            };
            if (binary.is_some() && ensemble.n_targets() != 1) || labels.len() != scored {
                return Err(TreesError::invalid(format!(
                    "{} class labels for an ensemble of {} scores",
                    labels.len(),
                    ensemble.n_targets()
                )));
            }
        }
        if !feature_names.is_empty() && feature_names.len() != ensemble.n_features() {
            return Err(TreesError::invalid(format!(
                "{} feature names for {} features",
                feature_names.len(),
                ensemble.n_features()
            )));
        }
        Ok(Self {
            ensemble,
            transform,
            task,
            feature_names,
        })
    }

    /// The laid-out trees.
    pub fn ensemble(&self) -> &Ensemble {
        &self.ensemble
    }

    /// What the scores mean.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The transform applied to the scores.
    pub fn transform(&self) -> PostTransform {
        self.transform
    }

    /// Feature names from the file (empty when it has none).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.ensemble.n_features()
    }

    /// Values per row of [`Prediction::values`].
    pub fn width(&self) -> usize {
        match &self.task {
            Task::Regression => self.ensemble.n_targets(),
            Task::Classification { labels, .. } => labels.len(),
        }
    }

    /// Answers `rows` rows (row-major, NaN for missing).
    pub fn predict(&self, input: &[f32], rows: usize) -> Result<Prediction, TreesError> {
        self.predict_rows(input, rows, self.n_features())
    }

    /// Answers `rows` rows of `width ≥ n_features` values each (the rest is not read).
    pub fn predict_rows(
        &self,
        input: &[f32],
        rows: usize,
        width: usize,
    ) -> Result<Prediction, TreesError> {
        let scores = self
            .ensemble
            .predict_strided(input, rows, width, self.transform)?;
        match &self.task {
            Task::Regression => Ok(Prediction {
                values: scores.iter().map(|&s| s as f32).collect(),
                width: self.ensemble.n_targets(),
                classes: None,
            }),
            Task::Classification {
                binary: Some(kind), ..
            } => {
                let mut values = Vec::with_capacity(rows * 2);
                let mut classes = Vec::with_capacity(rows);
                for &s in &scores {
                    let (negative, positive) = match kind {
                        BinaryScore::Probability => (1.0 - s, s > 0.5),
                        BinaryScore::Margin => (-s, s > 0.0),
                    };
                    values.extend([negative as f32, s as f32]);
                    classes.push(usize::from(positive));
                }
                Ok(Prediction {
                    values,
                    width: 2,
                    classes: Some(classes),
                })
            }
            Task::Classification { labels, .. } => {
                let width = labels.len();
                let classes = scores.chunks(width.max(1)).map(argmax).collect();
                Ok(Prediction {
                    values: scores.iter().map(|&s| s as f32).collect(),
                    width,
                    classes: Some(classes),
                })
            }
        }
    }
}

/// The index of the largest value (the first of equals; NaN never wins).
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
