//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), a linear warmup/decay schedule
//! and global gradient-norm clipping — the recipe of HF `Trainer`.
//!
//! candle-nn's `AdamW` decays every parameter; BERT fine-tuning exempts biases and LayerNorm
//! weights, so this optimizer takes a per-parameter decay flag.
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Optimizer settings.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay for parameters that take it.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 2e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Slot {
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over a list of named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
    step: usize,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("params", &self.slots.len())
            .field("step", &self.step)
            .finish()
    }
}

/// HF's rule: no weight decay on biases and LayerNorm weights.
pub fn takes_weight_decay(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

impl AdamW {
    /// An optimizer over `vars`; decay is applied per [`takes_weight_decay`].
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> candle_core::Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    m: var.zeros_like()?,
                    v: var.zeros_like()?,
                    decay: takes_weight_decay(&name),
                    var,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            slots,
            config,
            step: 0,
        })
    }

    /// Global L2 norm of all gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut total = 0f64;
        for slot in &self.slots {
            if let Some(g) = grads.get(slot.var.as_tensor()) {
                total += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(total.sqrt())
    }

    /// One update at learning rate `lr`, after scaling gradients by `grad_scale` (for clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = if grad_scale != 1.0 {
                (g * grad_scale)?
            } else {
                g.clone()
            };
            slot.m = ((&slot.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&slot.m / bias1)?;
            let v_hat = (&slot.v / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let theta = slot.var.as_tensor();
            let decayed = if slot.decay && c.weight_decay > 0.0 {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta.clone()
            };
            slot.var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// Linear warmup from 0 to the peak over `warmup` steps, then linear decay to 0 at `total`
/// (HF `get_linear_schedule_with_warmup`).
pub fn linear_schedule(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    peak * (remaining / span).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(linear_schedule(0, 10, 100, 1.0), 0.0);
        assert!((linear_schedule(5, 10, 100, 1.0) - 0.5).abs() < 1e-12);
        assert!((linear_schedule(10, 10, 100, 1.0) - 1.0).abs() < 1e-12);
        assert!((linear_schedule(55, 10, 100, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(linear_schedule(100, 10, 100, 1.0), 0.0);
    }

    /// One AdamW step on a scalar, against the update written out by hand (as in PyTorch's
    /// `torch.optim.AdamW` documentation): the first step moves by `lr` in the sign direction.
    #[test]
    fn adamw_step_matches_the_formula() {
        let w = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.5f32], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new(
            vec![("w".into(), w.clone()), ("x.bias".into(), b.clone())],
            cfg,
        )
        .unwrap();
        // loss = 3 w0 + w1² + b  → grads (3, -4), 1
        let loss = ((w.as_tensor().get(0).unwrap() * 3.0).unwrap()
            + w.as_tensor().get(1).unwrap().sqr().unwrap()
            + b.as_tensor().get(0).unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        let w = w.as_tensor().to_vec1::<f32>().unwrap();
        // w ← w(1 − lr·wd) − lr · m̂/(√v̂ + eps), with m̂/√v̂ = sign(g) on step 1.
        assert!((w[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (-2.0 * 0.95 + 0.1)).abs() < 1e-6, "{w:?}");
        let b = b.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (b[0] - (0.5 - 0.1)).abs() < 1e-6,
            "bias takes no decay: {b:?}"
        );
    }

    #[test]
    fn decay_exemptions_follow_hf() {
        assert!(takes_weight_decay(
            "bert.encoder.layer.0.attention.self.query.weight"
        ));
        assert!(!takes_weight_decay(
            "bert.encoder.layer.0.attention.self.query.bias"
        ));
        assert!(!takes_weight_decay("bert.embeddings.LayerNorm.weight"));
    }
}
