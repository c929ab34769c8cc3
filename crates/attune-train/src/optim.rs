//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), a linear warmup/decay schedule
//! and global gradient-norm clipping — the recipe of HF `Trainer`.
//!
//! candle-nn's `AdamW` decays every parameter; BERT fine-tuning exempts biases and LayerNorm
//! weights, so this optimizer takes a per-parameter decay flag.
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;

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
    m: Vec<f32>,
    v: Vec<f32>,
    decay: bool,
}

/// AdamW over a list of named variables. Moments live in plain `Vec<f32>`s and each parameter
/// is updated in one fused pass: the tensor-op formulation costs ~10 full-size temporaries per
/// parameter per step.
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

fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

impl AdamW {
    /// An optimizer over `vars`; decay is applied per [`takes_weight_decay`].
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> candle_core::Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| Slot {
                m: vec![0.0; var.elem_count()],
                v: vec![0.0; var.elem_count()],
                decay: takes_weight_decay(&name),
                var,
            })
            .collect();
        Ok(Self {
            slots,
            config,
            step: 0,
        })
    }

    /// One update at learning rate `lr`. With `max_grad_norm`, gradients are first scaled so
    /// their global L2 norm is at most that value (PyTorch's `clip_grad_norm_`). Returns the
    /// norm before clipping.
    pub fn step(
        &mut self,
        grads: &GradStore,
        lr: f64,
        max_grad_norm: Option<f64>,
    ) -> candle_core::Result<f64> {
        let grads: Vec<Option<Vec<f32>>> = self
            .slots
            .iter()
            .map(|slot| grads.get(slot.var.as_tensor()).map(to_f32_vec).transpose())
            .collect::<candle_core::Result<_>>()?;
        let norm = grads
            .iter()
            .flatten()
            .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .sum::<f64>()
            .sqrt();
        let clip = match max_grad_norm {
            Some(max) if max > 0.0 && norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = (1.0 - c.beta1.powi(t)) as f32;
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt() as f32;
        let (beta1, beta2, eps, lr32, clip) = (
            c.beta1 as f32,
            c.beta2 as f32,
            c.eps as f32,
            lr as f32,
            clip as f32,
        );
        for (slot, grad) in self.slots.iter_mut().zip(grads) {
            let Some(grad) = grad else {
                continue;
            };
            let mut theta = to_f32_vec(slot.var.as_tensor())?;
            let decay = if slot.decay {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            };
            theta
                .par_chunks_mut(8192)
                .zip(slot.m.par_chunks_mut(8192))
                .zip(slot.v.par_chunks_mut(8192))
                .zip(grad.par_chunks(8192))
                .for_each(|(((th, m), v), g)| {
                    for i in 0..th.len() {
                        let gi = g[i] * clip;
                        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                        // m̂ / (√v̂ + eps) with the bias corrections folded in.
                        let update = (m[i] / bias1) / (v[i].sqrt() / bias2_sqrt + eps);
                        th[i] = th[i] * decay - lr32 * update;
                    }
                });
            let shape = slot.var.shape().clone();
            let dtype = slot.var.dtype();
            let device = slot.var.device().clone();
            slot.var
                .set(&Tensor::from_vec(theta, shape, &device)?.to_dtype(dtype)?)?;
        }
        Ok(norm)
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
        let norm = opt.step(&grads, 0.1, None).unwrap();
        assert!((norm - 26f64.sqrt()).abs() < 1e-6, "norm {norm}");
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

    /// Clipping scales every gradient by max/norm; on step 1 Adam's update is scale-invariant
    /// (m̂/√v̂ = sign), so check the second step against a hand-run of the recurrences.
    #[test]
    fn clipping_scales_gradients_globally() {
        let w = Var::new(&[0.0f32, 0.0], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.0,
            eps: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], cfg).unwrap();
        let grads_for = |a: f32, b: f32| {
            let target = Tensor::new(&[a, b], &Device::Cpu).unwrap();
            (w.as_tensor() * &target)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let n1 = opt.step(&grads_for(3.0, 4.0), 0.1, Some(1.0)).unwrap();
        assert!((n1 - 5.0).abs() < 1e-6);
        let n2 = opt.step(&grads_for(0.3, 0.4), 0.1, Some(1.0)).unwrap();
        assert!((n2 - 0.5).abs() < 1e-6);
        // Clipped g1 = (0.6, 0.8), g2 unclipped = (0.3, 0.4): per coordinate g2 = g1 / 2.
        let (b1, b2) = (0.9f64, 0.999f64);
        let expected: Vec<f64> = [0.6f64, 0.8]
            .iter()
            .map(|&g1| {
                let first = -0.1 * g1.signum();
                let g2 = g1 / 2.0;
                let m = b1 * (1.0 - b1) * g1 + (1.0 - b1) * g2;
                let v = b2 * (1.0 - b2) * g1 * g1 + (1.0 - b2) * g2 * g2;
                let m_hat = m / (1.0 - b1 * b1);
                let v_hat = v / (1.0 - b2 * b2);
                first - 0.1 * m_hat / v_hat.sqrt()
            })
            .collect();
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((*g as f64 - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
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
