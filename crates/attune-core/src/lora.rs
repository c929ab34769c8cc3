//! Linear layers with optional LoRA adapters (Hu et al. 2021, <https://arxiv.org/abs/2106.09685>),
//! named and configured as in PEFT so adapters move between attune and Python unchanged.
//!
//! `y = x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ`, with `A ∈ ℝ^{r×in}` (Kaiming-uniform) and
//! `B ∈ ℝ^{out×r}` (zeros), so a fresh adapter leaves the model unchanged.
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::params::{Dropout, SharedRng};
use crate::quant::{PackedWeight, WeightFormat};

/// PEFT's `adapter_config.json` (the fields LoRA uses; others are kept in `extra`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Adapter rank `r`.
    pub r: usize,
    /// Scaling numerator: the update is multiplied by `lora_alpha / r`.
    pub lora_alpha: f64,
    /// Dropout applied to the adapter's input.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names that receive adapters, matched as PEFT does: a layer whose path equals the
    /// name or ends with `.name` (so `dense` covers every `dense` layer, pooler included).
    pub target_modules: Vec<String>,
    /// Modules trained in full and saved beside the adapters (the classifier head).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Always `"LORA"`.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// `"SEQ_CLS"` for classifiers.
    #[serde(default = "default_task_type")]
    pub task_type: String,
    /// Only `"none"` is supported: biases stay frozen.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// Whether weights are stored transposed (Conv1D models); must be false for BERT.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Directory of the base model the adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Every other key, written back unchanged.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_task_type() -> String {
    "SEQ_CLS".into()
}
fn default_bias() -> String {
    "none".into()
}

impl LoraConfig {
    /// A LoRA configuration for sequence classification.
    pub fn new(r: usize, lora_alpha: f64, lora_dropout: f64, target_modules: Vec<String>) -> Self {
        Self {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            modules_to_save: Some(vec!["classifier".into(), "score".into()]),
            peft_type: default_peft_type(),
            task_type: default_task_type(),
            bias: default_bias(),
            fan_in_fan_out: false,
            base_model_name_or_path: None,
            extra: Default::default(),
        }
    }

    /// Whether the linear layer at `path` (e.g. `bert.encoder.layer.0.attention.self.query`)
    /// gets an adapter.
    pub fn targets(&self, path: &str) -> bool {
        self.target_modules
            .iter()
            .any(|t| path == t || path.ends_with(&format!(".{t}")))
    }

    /// `lora_alpha / r`.
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// Checks the options this implementation supports.
    pub fn validate(&self) -> Result<(), String> {
        if self.r == 0 {
            return Err("r must be positive".into());
        }
        if self.peft_type != "LORA" {
            return Err(format!(
                "peft_type {:?} (only LORA is supported)",
                self.peft_type
            ));
        }
        if self.bias != "none" {
            return Err(format!("bias {:?} (only \"none\" is supported)", self.bias));
        }
        if self.fan_in_fan_out {
            return Err("fan_in_fan_out must be false for BERT".into());
        }
        if self.target_modules.is_empty() {
            return Err("target_modules is empty".into());
        }
        Ok(())
    }
}

/// Whether a parameter name (PEFT naming) is a LoRA adapter matrix.
pub fn is_adapter_param(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

#[derive(Debug, Clone)]
struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: Dropout,
}

/// A dense layer's weight: an f32 tensor (trainable or frozen) or a packed quantised matrix.
#[derive(Debug, Clone)]
enum Weight {
    Dense(Tensor),
    Packed(PackedWeight),
}

/// A dense layer `x Wᵀ + b`, optionally with a LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Checkpoint path of the layer (`bert.encoder.layer.0.attention.self.query`).
    name: String,
    weight: Weight,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
}

impl Linear {
    /// Loads `weight` (`[out, in]`) and `bias` under `vb`, adding an adapter when `lora` targets
    /// this layer's path.
    pub fn load(
        vb: VarBuilder<'_>,
        in_dim: usize,
        out_dim: usize,
        init_std: f64,
        lora: Option<&LoraConfig>,
        rng: &SharedRng,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: init_std,
            },
        )?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        let adapter = match lora {
            Some(cfg) if cfg.targets(&vb.prefix()) => {
                let bound = 1.0 / (in_dim as f64).sqrt();
                let a = vb.pp("lora_A").get_with_hints(
                    (cfg.r, in_dim),
                    "weight",
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )?;
                let b =
                    vb.pp("lora_B")
                        .get_with_hints((out_dim, cfg.r), "weight", Init::Const(0.0))?;
                Some(Adapter {
                    a,
                    b,
                    scale: cfg.scale(),
                    dropout: Dropout::new(cfg.lora_dropout, rng.clone()),
                })
            }
            _ => None,
        };
        Ok(Self {
            name: vb.prefix(),
            weight: Weight::Dense(weight),
            bias: Some(bias),
            adapter,
        })
    }

    /// Applies the layer to `[..., in]`, flattening leading dimensions into one GEMM.
    pub fn forward(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.apply(xs, train, true)
    }

    /// `x Wᵀ` (plus the adapter's update) without the bias, for callers that fuse the bias
    /// into the next operation (see [`Self::bias`]).
    pub fn forward_without_bias(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.apply(xs, train, false)
    }

    /// The bias is added on the flattened `[rows, out]` product: broadcasting over one leading
    /// dimension is markedly cheaper in candle, forward and backward, than over two.
    fn apply(&self, xs: &Tensor, train: bool, with_bias: bool) -> candle_core::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / in_dim;
        let flat = xs.reshape((rows, in_dim))?;
        let mut ys = match &self.weight {
            Weight::Dense(weight) => {
                crate::ops::linear(&flat, weight).map_err(candle_core::Error::wrap)?
            }
            // The kernel adds the bias in its epilogue.
            Weight::Packed(packed) => {
                packed.linear(&flat, self.bias.as_ref().filter(|_| with_bias))?
            }
        };
        if let (true, Some(bias), Weight::Dense(_)) = (with_bias, &self.bias, &self.weight) {
            ys = ys.broadcast_add(bias)?;
        }
        if let Some(adapter) = &self.adapter {
            let dropped = adapter.dropout.forward(&flat, train)?;
            let update = dropped.matmul(&adapter.a.t()?)?.matmul(&adapter.b.t()?)?;
            ys = (ys + (update * adapter.scale)?)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = ys.dim(D::Minus1)?;
        ys.reshape(out_dims)
    }

    /// Folds the adapter into the weight (`W + (α/r)·B A`), for inference at base-model speed.
    pub fn merge(&mut self) -> candle_core::Result<()> {
        if let Some(adapter) = self.adapter.take() {
            let Weight::Dense(weight) = &self.weight else {
                candle_core::bail!(
                    "{}: cannot merge an adapter into a quantised weight",
                    self.name
                );
            };
            let delta = (adapter.b.matmul(&adapter.a)? * adapter.scale)?;
            self.weight = Weight::Dense((weight.detach() + delta.detach())?);
        }
        Ok(())
    }

    /// Converts the weight to `format` for inference. `scales` (int8) are the row steps to
    /// quantise with, when reloading a saved model; `None` derives them from the weight. Layers
    /// with an unmerged adapter are refused: merge first.
    pub fn quantize(
        &mut self,
        format: WeightFormat,
        scales: Option<&[f32]>,
    ) -> candle_core::Result<()> {
        if self.adapter.is_some() {
            candle_core::bail!("{}: merge the LoRA adapter before quantising", self.name);
        }
        let weight = match &self.weight {
            Weight::Dense(weight) => weight.clone(),
            Weight::Packed(packed) if packed.format() == format => return Ok(()),
            Weight::Packed(packed) => packed.dequantize(&candle_core::Device::Cpu)?,
        };
        self.weight = match PackedWeight::from_weight(&weight, format, scales)? {
            Some(packed) => Weight::Packed(packed),
            None => Weight::Dense(weight),
        };
        Ok(())
    }

    /// Keeps only the output features (weight rows, bias entries) listed in `rows`.
    pub fn keep_outputs(&mut self, rows: &Tensor) -> candle_core::Result<()> {
        let weight = self.dense_for_surgery()?;
        self.weight = Weight::Dense(weight.index_select(rows, 0)?);
        if let Some(bias) = &self.bias {
            self.bias = Some(bias.detach().index_select(rows, 0)?);
        }
        Ok(())
    }

    /// Keeps only the input features (weight columns) listed in `cols`.
    pub fn keep_inputs(&mut self, cols: &Tensor) -> candle_core::Result<()> {
        let weight = self.dense_for_surgery()?;
        self.weight = Weight::Dense(weight.index_select(cols, 1)?);
        Ok(())
    }

    /// The f32 weight of a layer whose shape may change: no adapter, not quantised.
    fn dense_for_surgery(&self) -> candle_core::Result<Tensor> {
        if self.adapter.is_some() {
            candle_core::bail!("{}: merge the LoRA adapter before pruning", self.name);
        }
        match &self.weight {
            Weight::Dense(weight) => Ok(weight.detach()),
            Weight::Packed(_) => candle_core::bail!(
                "{}: prune the f32 model, then quantise (weights are {})",
                self.name,
                self.packed_weight()
                    .map_or(WeightFormat::F32, PackedWeight::format)
            ),
        }
    }

    /// Checkpoint path of the layer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The f32 weight `[out, in]`, unless the layer is quantised.
    pub fn dense_weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(weight) => Some(weight),
            Weight::Packed(_) => None,
        }
    }

    /// The packed weight of a quantised layer.
    pub fn packed_weight(&self) -> Option<&PackedWeight> {
        match &self.weight {
            Weight::Dense(_) => None,
            Weight::Packed(packed) => Some(packed),
        }
    }

    /// Whether an unmerged adapter is attached.
    pub fn has_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}
