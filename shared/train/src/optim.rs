//! Optimizers that update each parameter in place, in one pass over its buffers.
//!
//! candle-nn's stock `AdamW` builds about a dozen new tensors per parameter per step; on the seed
//! workload that was most of the training time. Here each step is one candle in-place op per
//! parameter ([`candle_core::InplaceOp2`] over the parameter and its gradient) that walks the
//! parameter, the gradient and the optimizer's moment buffers (plain `Vec<f32>` owned by the
//! optimizer, so checkpoints can save them) together. The arithmetic is PyTorch's: Adam with L2
//! weight decay added to the gradient, AdamW with decoupled decay, SGD with momentum
//! (dampening 0).

use std::cell::RefCell;

use candle_core::{CpuStorage, Layout, Tensor, Var, backprop::GradStore};

use crate::TrainError;
use crate::spec::OptimizerKind;

/// Adam's first-moment decay.
pub const BETA1: f32 = 0.9;
/// Adam's second-moment decay.
pub const BETA2: f32 = 0.999;
/// Adam's denominator floor.
pub const EPS: f32 = 1e-8;

/// An optimizer and its per-parameter state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: OptimizerKind,
    learning_rate: f32,
    momentum: f32,
    weight_decay: f32,
    /// Steps taken so far.
    pub steps: u64,
    /// First moments (Adam) or momentum buffers (SGD), one per parameter.
    pub first: Vec<Vec<f32>>,
    /// Second moments (Adam only; empty vectors for SGD).
    pub second: Vec<Vec<f32>>,
}

impl Optimizer {
    /// A fresh optimizer for parameters of the given element counts.
    pub fn new(
        kind: OptimizerKind,
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        sizes: &[usize],
    ) -> Self {
        let adam = kind != OptimizerKind::Sgd;
        Self {
            kind,
            learning_rate: learning_rate as f32,
            momentum: momentum as f32,
            weight_decay: weight_decay as f32,
            steps: 0,
            first: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            second: sizes
                .iter()
                .map(|&n| if adam { vec![0.0; n] } else { Vec::new() })
                .collect(),
        }
    }

    /// One step over `params` with the gradients in `grads` (candle's autograd).
    pub fn step(&mut self, params: &[Var], grads: &GradStore) -> Result<(), TrainError> {
        let by_param: Vec<Option<Tensor>> = params
            .iter()
            .map(|p| grads.get(p.as_tensor()).cloned())
            .collect();
        self.step_with(params, &by_param)
    }

    /// One step over `params` with `grads[i]` the gradient of `params[i]` (`None`: a parameter
    /// the loss does not depend on).
    pub fn step_with(
        &mut self,
        params: &[Var],
        grads: &[Option<Tensor>],
    ) -> Result<(), TrainError> {
        self.steps += 1;
        let t = self.steps as i32;
        let bias1 = 1.0 - BETA1.powi(t);
        let bias2 = 1.0 - BETA2.powi(t);
        for (i, param) in params.iter().enumerate() {
            let Some(grad) = grads.get(i).and_then(Option::as_ref) else {
                continue; // a parameter the loss does not depend on
            };
            let grad = grad.contiguous()?;
            let update = Update {
                kind: self.kind,
                lr: self.learning_rate,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                bias1,
                bias2,
                first: RefCell::new(&mut self.first[i]),
                second: RefCell::new(&mut self.second[i]),
            };
            param.as_tensor().inplace_op2(&grad, &update)?;
        }
        Ok(())
    }
}

/// One parameter's update, run by candle with the parameter's storage borrowed mutably.
struct Update<'a> {
    kind: OptimizerKind,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
    first: RefCell<&'a mut Vec<f32>>,
    second: RefCell<&'a mut Vec<f32>>,
}

fn contiguous<'s>(data: &'s [f32], layout: &Layout, what: &str) -> candle_core::Result<&'s [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} is not contiguous"),
    }
}

impl candle_core::InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "maas-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        param: &mut CpuStorage,
        param_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (param, grad) else {
            candle_core::bail!("the optimizer handles f32 parameters only");
        };
        let Some((start, end)) = param_layout.contiguous_offsets() else {
            candle_core::bail!("parameter is not contiguous");
        };
        let param = &mut param[start..end];
        let grad = contiguous(grad, grad_layout, "gradient")?;
        let mut first = self.first.borrow_mut();
        let mut second = self.second.borrow_mut();
        if grad.len() != param.len() || first.len() != param.len() {
            candle_core::bail!("optimizer state does not match the parameter's size");
        }
        let (lr, wd) = (self.lr, self.weight_decay);
        match self.kind {
            OptimizerKind::Sgd => {
                let mu = self.momentum;
                for ((p, g), buf) in param.iter_mut().zip(grad).zip(first.iter_mut()) {
                    let g = g + wd * *p;
                    *buf = mu * *buf + g;
                    *p -= lr * *buf;
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let adam = Adam {
                    lr,
                    wd,
                    decoupled: self.kind == OptimizerKind::Adamw,
                    step: lr / self.bias1,
                    inv_sqrt_bias2: 1.0 / self.bias2.sqrt(),
                };
                // Large parameters are updated in slices on every thread (the step's products
                // use both cores; this memory-bound pass over four buffers would otherwise leave
                // one idle), on the dense kernels' workers, which the products just woke.
                let threads = candle_core::utils::get_num_threads();
                if param.len() >= PARALLEL_UPDATE_MIN && threads > 1 {
                    let chunk = param.len().div_ceil(threads);
                    let slices: Vec<_> = param
                        .chunks_mut(chunk)
                        .zip(grad.chunks(chunk))
                        .zip(first.chunks_mut(chunk))
                        .zip(second.chunks_mut(chunk))
                        .collect();
                    maas_dense::for_each_on_team(slices, threads, |(((p, g), m), v)| {
                        adam.update(p, g, m, v)
                    });
                } else {
                    adam.update(param, grad, &mut first[..], &mut second[..]);
                }
            }
        }
        Ok(())
    }
}

/// Parameters with at least this many values are updated on every thread.
const PARALLEL_UPDATE_MIN: usize = 1 << 16;

/// Adam's (or AdamW's) constants for one step.
struct Adam {
    lr: f32,
    wd: f32,
    decoupled: bool,
    step: f32,
    inv_sqrt_bias2: f32,
}

impl Adam {
    /// Updates `p` in place from `g`, with moments `m` and `v` (slices of equal length).
    fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (lr, wd) = (self.lr, self.wd);
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let mut g = *g;
            if self.decoupled {
                *p -= lr * wd * *p;
            } else {
                g += wd * *p;
            }
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= self.step * *m / (v.sqrt() * self.inv_sqrt_bias2 + EPS);
        }
    }
}

/// Reads a parameter's values (for checkpoints and exports).
pub fn values(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The same steps by the textbook formulas, in f64.
    fn reference_adam(
        p0: &[f32],
        grads: &[Vec<f32>],
        lr: f64,
        wd: f64,
        decoupled: bool,
    ) -> Vec<f64> {
        let mut p: Vec<f64> = p0.iter().map(|&v| f64::from(v)).collect();
        let (mut m, mut v) = (vec![0f64; p.len()], vec![0f64; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..p.len() {
                let mut gi = f64::from(g[i]);
                if decoupled {
                    p[i] -= lr * wd * p[i];
                } else {
                    gi += wd * p[i];
                }
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                p[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        p
    }

    #[test]
    fn adam_and_adamw_match_the_formulas() {
        for (kind, decoupled) in [(OptimizerKind::Adam, false), (OptimizerKind::Adamw, true)] {
            let p0 = [0.5f32, -1.0, 2.0];
            let var = Var::from_vec(p0.to_vec(), 3, &Device::Cpu).expect("var");
            let mut opt = Optimizer::new(kind, 0.01, 0.9, 0.1, &[3]);
            let mut seen = Vec::new();
            for step in 0..5 {
                // loss = sum(c * p²) with c varying per step: grad = 2 c p
                let c = Tensor::new(&[1.0f32 + step as f32, 0.5, -0.25], &Device::Cpu).expect("c");
                let loss = (var.as_tensor().sqr().expect("sqr") * &c)
                    .expect("mul")
                    .sum_all()
                    .expect("sum");
                let grads = loss.backward().expect("backward");
                seen.push(values(grads.get(var.as_tensor()).expect("grad")).expect("g"));
                opt.step(std::slice::from_ref(&var), &grads).expect("step");
            }
            let want = reference_adam(&p0, &seen, 0.01, 0.1, decoupled);
            let got = values(var.as_tensor()).expect("values");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-5,
                    "{kind:?}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn a_large_parameter_updated_in_parallel_slices_matches_one_pass() {
        let n = PARALLEL_UPDATE_MIN + 1234;
        let p0: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 50.0 - 1.0).collect();
        let g: Vec<f32> = (0..n).map(|i| (i % 89) as f32 / 40.0 - 1.1).collect();
        let var = Var::from_vec(p0.clone(), n, &Device::Cpu).expect("var");
        let grad = Tensor::from_vec(g.clone(), n, &Device::Cpu).expect("grad");
        let mut opt = Optimizer::new(OptimizerKind::Adam, 0.01, 0.9, 0.01, &[n]);
        opt.step_with(std::slice::from_ref(&var), &[Some(grad)])
            .expect("step");
        let adam = Adam {
            lr: 0.01,
            wd: 0.01,
            decoupled: false,
            step: 0.01 / (1.0 - BETA1),
            inv_sqrt_bias2: 1.0 / (1.0 - BETA2).sqrt(),
        };
        let (mut want, mut m, mut v) = (p0, vec![0.0; n], vec![0.0; n]);
        adam.update(&mut want, &g, &mut m, &mut v);
        assert_eq!(values(var.as_tensor()).expect("values"), want);
        assert_eq!(opt.first[0], m);
        assert_eq!(opt.second[0], v);
    }

    #[test]
    fn sgd_with_momentum_matches_the_formula() {
        let var = Var::from_vec(vec![1.0f32], 1, &Device::Cpu).expect("var");
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.1, 0.9, 0.0, &[1]);
        let (mut p, mut buf) = (1.0f64, 0.0f64);
        for _ in 0..4 {
            let loss = var.as_tensor().sqr().expect("sqr").sum_all().expect("sum");
            let grads = loss.backward().expect("backward");
            opt.step(std::slice::from_ref(&var), &grads).expect("step");
            buf = 0.9 * buf + 2.0 * p;
            p -= 0.1 * buf;
        }
        let got = f64::from(values(var.as_tensor()).expect("v")[0]);
        assert!((got - p).abs() < 1e-6, "{got} vs {p}");
    }
}
