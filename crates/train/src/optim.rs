//! Adam with coupled L2 (PyTorch `Adam(weight_decay=…)` semantics: the decay is added to the
//! gradient before the moments, unlike AdamW) and the learning-rate schedules.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, weight_decay: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Adam over a fixed list of variables. The update runs in place on host buffers: one pass per
/// parameter instead of a dozen tensor ops (candle_nn's AdamW costs ~10× more per step here).
pub struct Adam {
    cfg: AdamConfig,
    slots: Vec<Slot>,
    step: i32,
}

impl Adam {
    /// Optimizes the named variables (names are used to save and restore the moments).
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamConfig) -> Self {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Slot { name, var, m: vec![0.0; n], v: vec![0.0; n] }
            })
            .collect();
        Self { cfg, slots, step: 0 }
    }

    /// Moments and step count as tensors named `adam.m.<param>`, `adam.v.<param>`, `adam.step`.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("adam.step".to_string(), Tensor::new(&[self.step as f32], &Device::Cpu)?)];
        for s in &self.slots {
            out.push((format!("adam.m.{}", s.name), Tensor::from_slice(&s.m, s.m.len(), &Device::Cpu)?));
            out.push((format!("adam.v.{}", s.name), Tensor::from_slice(&s.v, s.v.len(), &Device::Cpu)?));
        }
        Ok(out)
    }

    pub fn load_state_tensors(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let get = |name: &str| {
            tensors.get(name).ok_or_else(|| candle_core::Error::Msg(format!("optimizer state has no {name}")))
        };
        self.step = get("adam.step")?.flatten_all()?.to_vec1::<f32>()?[0] as i32;
        for s in &mut self.slots {
            let m: Vec<f32> = get(&format!("adam.m.{}", s.name))?.flatten_all()?.to_vec1()?;
            let v: Vec<f32> = get(&format!("adam.v.{}", s.name))?.flatten_all()?.to_vec1()?;
            if m.len() != s.m.len() || v.len() != s.v.len() {
                candle_core::bail!("optimizer state for {} has the wrong size", s.name);
            }
            s.m = m;
            s.v = v;
        }
        Ok(())
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step);
        let bc2 = 1.0 - c.beta2.powi(self.step);
        let step_size = (c.lr / bc1) as f32;
        let sqrt_bc2 = bc2.sqrt() as f32;
        let (b1, b2, wd, eps) = (c.beta1 as f32, c.beta2 as f32, c.weight_decay as f32, c.eps as f32);
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let mut p: Vec<f32> = slot.var.as_tensor().flatten_all()?.to_vec1()?;
            for i in 0..p.len() {
                let gi = g[i] + wd * p[i];
                let m = b1 * slot.m[i] + (1.0 - b1) * gi;
                let v = b2 * slot.v[i] + (1.0 - b2) * gi * gi;
                slot.m[i] = m;
                slot.v[i] = v;
                p[i] -= step_size * m / (v.sqrt() / sqrt_bc2 + eps);
            }
            let device: &Device = slot.var.device();
            slot.var.set(&Tensor::from_vec(p, slot.var.shape(), device)?)?;
        }
        Ok(())
    }
}

/// Learning rate per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// StepLR(step, gamma). With `official_offset` the epoch-e rate is lr·γ^⌊(e+1)/step⌋, because
    /// the official SR-GNN loop calls `scheduler.step()` at the start of every epoch; without it,
    /// lr·γ^⌊e/step⌋ (the textbook StepLR).
    Step {
        step: usize,
        gamma: f64,
        official_offset: bool,
    },
    Constant,
    /// Cosine annealing from lr to `min_ratio`·lr over `epochs` epochs.
    Cosine {
        epochs: usize,
        min_ratio: f64,
    },
}

impl Schedule {
    /// The paper's schedule as the official SR-GNN code runs it.
    pub fn paper() -> Self {
        Schedule::Step { step: 3, gamma: 0.1, official_offset: true }
    }

    /// StepLR(3, 0.1) as each model's official code steps it: TAGNN (and SHARE) before each
    /// epoch like SR-GNN, GCE-GNN after each epoch (the rate drops after 3 epochs, not 2).
    pub fn official_for(kind: dmsrec_models::ModelKind) -> Self {
        use dmsrec_models::ModelKind;
        let official_offset = match kind {
            ModelKind::Srgnn | ModelKind::Tagnn | ModelKind::Share => true,
            ModelKind::Gcegnn => false,
        };
        Schedule::Step { step: 3, gamma: 0.1, official_offset }
    }

    pub fn lr_at(&self, base: f64, epoch: usize) -> f64 {
        match *self {
            Schedule::Step { step, gamma, official_offset } => {
                let e = if official_offset { epoch + 1 } else { epoch };
                base * gamma.powi((e / step.max(1)) as i32)
            }
            Schedule::Constant => base,
            Schedule::Cosine { epochs, min_ratio } => {
                let t = (epoch as f64 / epochs.max(1) as f64).min(1.0);
                let min = base * min_ratio;
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Adam's weight decay in each model's official code: 1e-5, except SHARE's 0.
pub fn official_l2(kind: dmsrec_models::ModelKind) -> f64 {
    use dmsrec_models::ModelKind;
    match kind {
        ModelKind::Srgnn | ModelKind::Tagnn | ModelKind::Gcegnn => 1e-5,
        ModelKind::Share => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_step_schedule_is_shifted_by_one_epoch() {
        let s = Schedule::paper();
        let lrs: Vec<f64> = (0..6).map(|e| s.lr_at(1e-3, e)).collect();
        let want = [1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{lrs:?}");
        }
        let textbook = Schedule::Step { step: 3, gamma: 0.1, official_offset: false };
        assert!((textbook.lr_at(1e-3, 2) - 1e-3).abs() < 1e-12);
        assert!((textbook.lr_at(1e-3, 3) - 1e-4).abs() < 1e-12);
        let cos = Schedule::Cosine { epochs: 10, min_ratio: 0.0 };
        assert!((cos.lr_at(1.0, 0) - 1.0).abs() < 1e-12);
        assert!((cos.lr_at(1.0, 5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn adam_matches_torch_reference_values() {
        // torch.optim.Adam([p], lr=0.1, weight_decay=0.5), p = [1.0, -2.0], loss = sum(p^2) for 2 steps:
        // computed by hand: g1 = 2p + 0.5p = 2.5p; m1 = 0.1 g1, v1 = 0.001 g1²; update = lr·sign = 0.1 each.
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            vec![("p".into(), var.clone())],
            AdamConfig { lr: 0.1, weight_decay: 0.5, ..Default::default() },
        );
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!((p[0] - 0.9).abs() < 1e-5 && (p[1] + 1.9).abs() < 1e-5, "{p:?}");
        // Second step: g2 = 2.5·p; moments mix g1 and g2 — compare against a direct evaluation.
        let g1 = [2.5f64, -5.0];
        let g2 = [2.5 * 0.9, 2.5 * -1.9];
        let mut want = [0.9f64, -1.9];
        for i in 0..2 {
            let m = 0.9 * 0.1 * g1[i] + 0.1 * g2[i];
            let v = 0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2[i] * g2[i];
            let mhat = m / (1.0 - 0.81);
            let denom = v.sqrt() / (1.0 - 0.999f64 * 0.999).sqrt() + 1e-8;
            want[i] -= 0.1 * mhat / denom;
        }
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        for i in 0..2 {
            assert!((p[i] as f64 - want[i]).abs() < 1e-5, "{p:?} vs {want:?}");
        }
    }
}
