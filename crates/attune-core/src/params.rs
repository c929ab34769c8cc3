//! Where the encoder's weights come from, and which of them train.
//!
//! [`ParamStore`] is a candle `SimpleBackend`, so model code builds itself with the familiar
//! `VarBuilder::pp("attention")` paths that mirror checkpoint names. Each lookup either returns
//! the checkpoint tensor as a constant (frozen: no gradient is computed for it at all, which is
//! what makes LoRA steps cheap), wraps it in a [`Var`] (trainable), or — for weights the
//! checkpoint lacks, such as a new classifier — initialises it from a *seeded* generator.
//! candle's own CPU initialisers use an unseedable thread RNG, which would break the promise
//! that the same seed gives the same run.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Decides from a parameter's full name whether it trains.
pub type TrainablePredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A seeded random generator shared by initialisers and dropout masks (xoshiro256++: fast
/// enough for a mask per activation, and fixed by its seed).
#[derive(Clone)]
pub struct SharedRng(Arc<Mutex<SmallRng>>);

impl std::fmt::Debug for SharedRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRng")
    }
}

impl SharedRng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))))
    }

    /// Runs `f` with exclusive access to the generator.
    pub fn with<T>(&self, f: impl FnOnce(&mut SmallRng) -> T) -> T {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Samples `n` values from N(mean, std) with the Box–Muller transform.
    pub fn normal(&self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        self.with(|rng| {
            (0..n)
                .map(|_| {
                    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = rng.random();
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    (mean + std * z) as f32
                })
                .collect()
        })
    }

    /// Samples `n` values uniformly from `[low, high)`.
    pub fn uniform(&self, n: usize, low: f64, high: f64) -> Vec<f32> {
        self.with(|rng| (0..n).map(|_| rng.random_range(low..high) as f32).collect())
    }
}

/// What happened to each parameter the model asked for.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Names taken from the checkpoint.
    pub loaded: Vec<String>,
    /// Names the checkpoint lacked, initialised afresh.
    pub initialised: Vec<String>,
}

struct Inner {
    tensors: Mutex<HashMap<String, Tensor>>,
    trainable: TrainablePredicate,
    vars: Mutex<Vec<(String, Var)>>,
    named: Mutex<Vec<(String, Tensor)>>,
    report: Mutex<LoadReport>,
    rng: SharedRng,
}

/// Source of model parameters; see the module docs.
#[derive(Clone)]
pub struct ParamStore(Arc<Inner>);

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore")
            .field("tensors", &lock(&self.0.tensors).len())
            .finish()
    }
}

impl ParamStore {
    /// A store over checkpoint tensors (canonical names), with a trainability rule and a seed for
    /// whatever must be initialised.
    pub fn new(tensors: HashMap<String, Tensor>, trainable: TrainablePredicate, seed: u64) -> Self {
        Self(Arc::new(Inner {
            tensors: Mutex::new(tensors),
            trainable,
            vars: Mutex::new(Vec::new()),
            named: Mutex::new(Vec::new()),
            report: Mutex::new(LoadReport::default()),
            rng: SharedRng::new(seed),
        }))
    }

    /// A `VarBuilder` reading from this store.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The trainable variables created so far, with their names, in creation order.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        lock(&self.0.vars).clone()
    }

    /// Every parameter the model asked for, by name: what a checkpoint must contain. Trainable
    /// ones share storage with their variables, so this reflects training updates.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        lock(&self.0.named).clone()
    }

    /// Which parameters came from the checkpoint and which were initialised.
    pub fn report(&self) -> LoadReport {
        lock(&self.0.report).clone()
    }

    /// The generator used for initialisation; dropout shares it so one seed fixes a run.
    pub fn rng(&self) -> SharedRng {
        self.0.rng.clone()
    }

    /// Names of checkpoint tensors the model never asked for (ignored buffers, foreign heads).
    pub fn unused(&self, used: &[String]) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.0.tensors)
            .keys()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// A checkpoint tensor by canonical name, as stored.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        lock(&self.0.tensors).get(name).cloned()
    }

    /// Drops every reference the store holds to `names`, so that weights the model replaced
    /// (quantised layers) are freed rather than kept alive for saving.
    pub fn release(&self, names: &[String]) {
        let mut tensors = lock(&self.0.tensors);
        for name in names {
            tensors.remove(name);
        }
        lock(&self.0.named).retain(|(name, _)| !names.contains(name));
    }

    /// Replaces a parameter's value (and shape) everywhere the store holds it, after the model
    /// changed it (pruned heads), so saving writes what the model now computes with.
    pub fn replace(&self, name: &str, tensor: Tensor) {
        lock(&self.0.tensors).insert(name.to_string(), tensor.clone());
        let mut named = lock(&self.0.named);
        match named.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = tensor,
            None => named.push((name.to_string(), tensor)),
        }
    }

    fn init(
        &self,
        shape: &Shape,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let values = match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Randn { mean, stdev } => self.0.rng.normal(n, mean, stdev),
            Init::Uniform { lo, up } => self.0.rng.uniform(n, lo, up),
            Init::Kaiming { .. } => {
                let fan_in = shape.dims().iter().skip(1).product::<usize>().max(1);
                let bound = (1.0 / fan_in as f64).sqrt();
                self.0.rng.uniform(n, -bound, bound)
            }
        };
        Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let stored = lock(&self.0.tensors).get(name).cloned();
        let tensor = match stored {
            Some(t) => {
                if t.shape() != &shape {
                    candle_core::bail!(
                        "weight {name} has shape {:?}, the config implies {:?}",
                        t.dims(),
                        shape.dims()
                    );
                }
                lock(&self.0.report).loaded.push(name.to_string());
                t.to_device(dev)?.to_dtype(dtype)?
            }
            None => {
                lock(&self.0.report).initialised.push(name.to_string());
                self.init(&shape, init, dtype, dev)?
            }
        };
        let tensor = if (self.0.trainable)(name) {
            let var = Var::from_tensor(&tensor)?;
            let t = var.as_tensor().clone();
            lock(&self.0.vars).push((name.to_string(), var));
            t
        } else {
            tensor.detach()
        };
        lock(&self.0.named).push((name.to_string(), tensor.clone()));
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match lock(&self.0.tensors).get(name) {
            Some(t) => t.to_device(dev)?.to_dtype(dtype),
            None => candle_core::bail!("no tensor named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        lock(&self.0.tensors).contains_key(name)
    }
}

/// Dropout whose masks come from the run's seeded generator (candle's own uses an unseedable
/// RNG on the CPU). A no-op outside training.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f64,
    rng: SharedRng,
}

impl Dropout {
    /// Drops each element with probability `p` and rescales the survivors by `1 / (1 - p)`.
    pub fn new(p: f64, rng: SharedRng) -> Self {
        Self { p, rng }
    }

    /// Applies dropout when `train` is set.
    pub fn forward(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if !train || self.p <= 0.0 {
            return Ok(xs.clone());
        }
        // One draw from the run's generator seeds the mask, whose chunks are drawn in parallel.
        let seed: u64 = self.rng.with(|rng| rng.random());
        let keep = crate::ops::dropout_keep_bits(xs.elem_count(), self.p, seed);
        crate::ops::dropout(xs, keep, (1.0 / (1.0 - self.p)) as f32)
            .map_err(candle_core::Error::wrap)
    }
}
