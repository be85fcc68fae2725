//! Predictions read row by row, as V1 `:predict`, `maas predict` and batch scoring present
//! them: each row's first output and, for a classifier, its label and its probability per class.
//!
//! Where a classifier's answer sits depends on the model: a graph from skl2onnx or onnxmltools
//! outputs `label` and `probabilities` itself ([`ClassifierOutputs`], found at load); a booster
//! file served by `maas-trees` does the same; a network whose manifest names labels outputs only
//! probabilities (softmax, or one sigmoid column) and the label is the most probable class.

use serde::Serialize;

use crate::tensor::{Tensor, TensorData};

/// A class label as the model names it: an integer or a string, kept as such in every answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ClassLabel {
    /// An integer class (`classlabels_int64s`, a booster's class index).
    Int(i64),
    /// A named class (`classlabels_strings`, a manifest's `labels`).
    Text(String),
}

impl std::fmt::Display for ClassLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassLabel::Int(i) => write!(f, "{i}"),
            ClassLabel::Text(s) => f.write_str(s),
        }
    }
}

impl ClassLabel {
    /// The label as JSON: a number or a string.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ClassLabel::Int(i) => (*i).into(),
            ClassLabel::Text(s) => s.as_str().into(),
        }
    }
}

/// Where a classifier's answer is among the outputs of its engine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassifierOutputs {
    /// The classes, in the order of the probability columns.
    pub classes: Vec<ClassLabel>,
    /// The output holding each row's label, when the model computes it.
    pub label: Option<usize>,
    /// The output holding each row's probabilities: one column per class, or one column (the
    /// second class's probability) for a binary model.
    pub probabilities: usize,
}

/// A classifier's answer for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The classes, in the order of each row's probabilities.
    pub classes: Vec<ClassLabel>,
    /// Each row's label.
    pub labels: Vec<ClassLabel>,
    /// Row-major, `classes.len()` per row.
    pub probabilities: Vec<f32>,
}

impl Classified {
    /// Row `row`'s probability per class.
    pub fn probabilities_of(&self, row: usize) -> &[f32] {
        let width = self.classes.len();
        &self.probabilities[row * width..(row + 1) * width]
    }
}

/// One batch's prediction, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowAnswers {
    rows: usize,
    first: Tensor,
    classified: Option<Classified>,
}

impl RowAnswers {
    /// Reads `outputs` (a prediction of `rows` rows); `classifier` says where a classifier's
    /// answer is.
    pub(crate) fn read(
        mut outputs: Vec<Tensor>,
        rows: usize,
        classifier: Option<&ClassifierOutputs>,
    ) -> Option<Self> {
        let classified = classifier.and_then(|c| classify(&outputs, rows, c));
        if outputs.is_empty() {
            return None;
        }
        let first = outputs.swap_remove(0);
        Some(Self {
            rows,
            first,
            classified,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row in the first output.
    pub fn prediction_width(&self) -> usize {
        self.first.data.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Row `row`'s first output as JSON: a value for one value per row, else a list.
    pub fn prediction_json(&self, row: usize) -> serde_json::Value {
        let width = self.prediction_width();
        if width == 1 {
            self.first.data.json_at(row)
        } else {
            (row * width..(row + 1) * width)
                .map(|i| self.first.data.json_at(i))
                .collect()
        }
    }

    /// Row `row`'s first output as text, one cell per value.
    pub fn prediction_cells(&self, row: usize) -> impl Iterator<Item = String> + '_ {
        let width = self.prediction_width();
        (row * width..(row + 1) * width).map(|i| self.first.data.text_at(i))
    }

    /// The classifier's answer, for a classifier.
    pub fn classified(&self) -> Option<&Classified> {
        self.classified.as_ref()
    }
}

fn classify(outputs: &[Tensor], rows: usize, at: &ClassifierOutputs) -> Option<Classified> {
    let n = at.classes.len();
    let scores = outputs.get(at.probabilities)?.data.to_f32_vec();
    let probabilities = match scores.len().checked_div(rows)? {
        width if width == n => scores,
        // One column for two classes: the second class's probability.
        1 if n == 2 => scores.iter().flat_map(|&p| [1.0 - p, p]).collect(),
        _ => return None,
    };
    let labels = match at.label.and_then(|ix| outputs.get(ix)) {
        Some(label) if label.data.len() == rows => (0..rows)
            .map(|r| match &label.data {
                TensorData::Bytes(v) => ClassLabel::Text(v[r].clone()),
                TensorData::I64(v) => ClassLabel::Int(v[r]),
                TensorData::I32(v) => ClassLabel::Int(i64::from(v[r])),
                other => ClassLabel::Text(other.text_at(r)),
            })
            .collect(),
        _ => probabilities
            .chunks(n)
            .map(|row| {
                // Ties go to the later class (a sigmoid's 0.5 is the second class).
                let best = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                at.classes[best].clone()
            })
            .collect(),
    };
    Some(Classified {
        classes: at.classes.clone(),
        labels,
        probabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).expect("tensor")
    }

    #[test]
    fn a_graph_classifier_answers_with_its_own_labels() {
        let outputs = vec![
            tensor(
                "label",
                vec![2],
                TensorData::Bytes(vec!["gold".into(), "bronze".into()]),
            ),
            tensor(
                "probabilities",
                vec![2, 2],
                TensorData::F32(vec![0.1, 0.9, 0.8, 0.2]),
            ),
        ];
        let at = ClassifierOutputs {
            classes: vec![
                ClassLabel::Text("bronze".into()),
                ClassLabel::Text("gold".into()),
            ],
            label: Some(0),
            probabilities: 1,
        };
        let answers = RowAnswers::read(outputs, 2, Some(&at)).expect("answers");
        let classified = answers.classified().expect("classified");
        assert_eq!(classified.labels[0], ClassLabel::Text("gold".into()));
        assert_eq!(classified.probabilities_of(1), &[0.8, 0.2]);
        assert_eq!(answers.prediction_json(0), serde_json::json!("gold"));
    }

    #[test]
    fn one_sigmoid_column_becomes_two_probabilities() {
        let outputs = vec![tensor(
            "p",
            vec![3, 1],
            TensorData::F32(vec![0.2, 0.5, 0.9]),
        )];
        let at = ClassifierOutputs {
            classes: vec![ClassLabel::Int(0), ClassLabel::Int(1)],
            label: None,
            probabilities: 0,
        };
        let answers = RowAnswers::read(outputs, 3, Some(&at)).expect("answers");
        let classified = answers.classified().expect("classified");
        assert_eq!(
            classified.labels,
            vec![ClassLabel::Int(0), ClassLabel::Int(1), ClassLabel::Int(1)]
        );
        assert_eq!(classified.probabilities_of(0), &[0.8, 0.2]);
        assert_eq!(answers.prediction_json(2), serde_json::json!(0.9));
    }

    #[test]
    fn probabilities_that_do_not_fit_the_classes_are_not_a_classification() {
        let outputs = vec![tensor(
            "p",
            vec![1, 3],
            TensorData::F32(vec![0.2, 0.5, 0.3]),
        )];
        let at = ClassifierOutputs {
            classes: vec![ClassLabel::Int(0), ClassLabel::Int(1)],
            label: None,
            probabilities: 0,
        };
        let answers = RowAnswers::read(outputs, 1, Some(&at)).expect("answers");
        assert!(answers.classified().is_none());
        assert_eq!(answers.prediction_width(), 3);
    }
}
