//! The BERT encoder and its sequence-classification head, top to bottom in the order data
//! flows: embeddings → self-attention → feed-forward → pooler → classifier.
//!
//! Unlike `candle-transformers`' `bert.rs`, dropout really drops (with the run's seeded
//! generator) and every layer's attention probabilities can be returned, still attached to the
//! autograd graph, so a loss can be put on them.
//!
//! Reference implementation:
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::config::{BertConfig, HiddenAct, Pooling, ProblemType};
use crate::lora::{Linear, LoraConfig};
use crate::ops;
use crate::params::{Dropout, SharedRng};
use crate::quant::WeightFormat;
use crate::tokenizer::Batch;

/// Additive mask value for padding keys. HF uses the dtype minimum; any value whose `exp`
/// underflows to 0 after max-subtraction gives identical probabilities.
const MASK_VALUE: f64 = -1e9;

/// What a forward pass should compute and keep.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Training mode: dropout active.
    pub train: bool,
    /// Keep every layer's attention probabilities `[batch, heads, seq, seq]`.
    pub output_attentions: bool,
    /// Keep the embedding output and every layer's output `[batch, seq, hidden]`.
    pub output_hidden_states: bool,
    /// HF-style head mask `[layers, heads]`: attention probabilities of head `h` in layer `l` are
    /// multiplied by `head_mask[l, h]` (0 silences a head).
    pub head_mask: Option<Tensor>,
}

impl ForwardOptions {
    /// Inference with attention maps.
    pub fn with_attentions() -> Self {
        Self {
            output_attentions: true,
            ..Self::default()
        }
    }
}

/// Everything a forward pass produced.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Classification scores `[batch, num_labels]` (pre-softmax/sigmoid).
    pub logits: Tensor,
    /// Last layer's hidden states `[batch, seq, hidden]` when hidden states were requested or
    /// the head mean-pools; otherwise `[batch, 1, hidden]`, the `[CLS]` row alone (the only row a
    /// `[CLS]` head reads, so the last layer computes no other).
    pub last_hidden: Tensor,
    /// `num_layers + 1` tensors (embeddings first) when requested, else empty.
    pub hidden_states: Vec<Tensor>,
    /// One `[batch, heads, seq, seq]` tensor per layer when requested, else empty. Rows are
    /// query positions, columns key positions; probabilities are taken before attention dropout.
    pub attentions: Vec<Tensor>,
}

struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(vb: VarBuilder<'_>, dim: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            beta: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(xs, &self.gamma, &self.beta, self.eps).map_err(candle_core::Error::wrap)
    }

    /// `LayerNorm(xs + residual + bias)` in one fused pass.
    fn forward_residual(
        &self,
        xs: &Tensor,
        residual: &Tensor,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        ops::add_layer_norm(xs, residual, bias, &self.gamma, &self.beta, self.eps)
            .map_err(candle_core::Error::wrap)
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    layer_norm: LayerNorm,
    dropout: Dropout,
}

impl Embeddings {
    fn load(vb: VarBuilder<'_>, cfg: &BertConfig, rng: &SharedRng) -> candle_core::Result<Self> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: cfg.initializer_range,
        };
        Ok(Self {
            word: vb.pp("word_embeddings").get_with_hints(
                (cfg.vocab_size, cfg.hidden_size),
                "weight",
                init,
            )?,
            position: vb.pp("position_embeddings").get_with_hints(
                (cfg.max_position_embeddings, cfg.hidden_size),
                "weight",
                init,
            )?,
            token_type: vb.pp("token_type_embeddings").get_with_hints(
                (cfg.type_vocab_size, cfg.hidden_size),
                "weight",
                init,
            )?,
            layer_norm: LayerNorm::load(vb.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob, rng.clone()),
        })
    }

    /// Word embeddings alone: the input that gradient-based explanations differentiate against.
    fn word_embeddings(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        self.word
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((batch, seq, ()))
    }

    fn forward(
        &self,
        word_embeds: &Tensor,
        token_type_ids: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, hidden) = word_embeds.dims3()?;
        let positions = self.position.narrow(0, 0, seq)?;
        let types = self
            .token_type
            .index_select(&token_type_ids.flatten_all()?, 0)?
            .reshape((batch, seq, hidden))?;
        let xs = word_embeds.broadcast_add(&positions)?.add(&types)?;
        let xs = self.layer_norm.forward(&xs)?;
        self.dropout.forward(&xs, train)
    }
}

struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Original indices of the heads this layer has (fewer than the config's after pruning).
    head_ids: Vec<usize>,
    num_heads: usize,
    head_dim: usize,
    dropout: Dropout,
}

impl SelfAttention {
    fn load(
        vb: VarBuilder<'_>,
        cfg: &BertConfig,
        head_ids: Vec<usize>,
        lora: Option<&LoraConfig>,
        rng: &SharedRng,
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let width = head_ids.len() * cfg.head_dim();
        let std = cfg.initializer_range;
        Ok(Self {
            query: Linear::load(vb.pp("query"), h, width, std, lora, rng)?,
            key: Linear::load(vb.pp("key"), h, width, std, lora, rng)?,
            value: Linear::load(vb.pp("value"), h, width, std, lora, rng)?,
            num_heads: head_ids.len(),
            head_ids,
            head_dim: cfg.head_dim(),
            dropout: Dropout::new(cfg.attention_probs_dropout_prob, rng.clone()),
        })
    }

    /// Removes the heads whose original indices are in `remove` (rows of query/key/value, and
    /// the matching input columns of the output projection, which the caller passes).
    fn prune(&mut self, remove: &[usize], output: &mut Linear) -> candle_core::Result<()> {
        let keep: Vec<usize> = (0..self.num_heads)
            .filter(|&p| !remove.contains(&self.head_ids[p]))
            .collect();
        if keep.len() == self.num_heads {
            return Ok(());
        }
        if keep.is_empty() {
            candle_core::bail!("pruning would remove every head of a layer; keep at least one");
        }
        let rows: Vec<u32> = keep
            .iter()
            .flat_map(|&p| (p * self.head_dim..(p + 1) * self.head_dim).map(|r| r as u32))
            .collect();
        let device = self
            .query
            .bias()
            .map_or(Device::Cpu, |b| b.device().clone());
        let rows = Tensor::new(rows, &device)?;
        for linear in [&mut self.query, &mut self.key, &mut self.value] {
            linear.keep_outputs(&rows)?;
        }
        output.keep_inputs(&rows)?;
        self.head_ids = keep.iter().map(|&p| self.head_ids[p]).collect();
        self.num_heads = keep.len();
        Ok(())
    }

    /// `[batch, seq, hidden]` → `[batch, heads, seq, head_dim]`.
    fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq, _) = xs.dims3()?;
        xs.reshape((batch, seq, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Returns the context `[batch, rows, hidden]` and the attention probabilities `[batch, heads,
    /// rows, seq]`, where `rows` is every position or `[CLS]` alone (see [`Rows`]); keys and values
    /// always come from every position of `xs`.
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        head_mask: Option<&Tensor>,
        train: bool,
        rows: Rows,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let queries = match rows {
            Rows::Cls { all_maps: false } => xs.narrow(1, 0, 1)?.contiguous()?,
            Rows::All | Rows::Cls { all_maps: true } => xs.clone(),
        };
        let (batch, _, _) = xs.dims3()?;
        let width = self.num_heads * self.head_dim;
        let q = self.split_heads(&self.query.forward(&queries, train)?)?;
        let k = self.split_heads(&self.key.forward(xs, train)?)?;
        let v = self.split_heads(&self.value.forward(xs, train)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = ops::attention_scores(&q, &k).map_err(candle_core::Error::wrap)?;
        let probs = ops::masked_softmax(&scores, mask, scale).map_err(candle_core::Error::wrap)?;
        let used = match rows {
            Rows::Cls { all_maps: true } => probs.narrow(2, 0, 1)?,
            Rows::All | Rows::Cls { all_maps: false } => probs.clone(),
        };
        let out_rows = used.dim(2)?;
        let mut weights = self.dropout.forward(&used, train)?;
        if let Some(head_mask) = head_mask {
            weights = weights.broadcast_mul(&head_mask.reshape((1, self.num_heads, 1, 1))?)?;
        }
        let context = ops::attention_context(&weights, &v)
            .map_err(candle_core::Error::wrap)?
            .transpose(1, 2)?
            .reshape((batch, out_rows, width))?;
        Ok((context, probs))
    }
}

/// Which positions a layer computes its output for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Every position.
    All,
    /// Position 0 (`[CLS]`) alone, still attending over every position: all a `[CLS]`-pooling head
    /// reads from the last layer, for 1/seq of its output and feed-forward work. With
    /// `all_maps` the attention maps are still computed for every query row (they are returned),
    /// but only `[CLS]`'s row goes on.
    Cls { all_maps: bool },
}

struct Layer {
    attention: SelfAttention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    activation: HiddenAct,
    dropout: Dropout,
}

impl Layer {
    fn load(
        vb: VarBuilder<'_>,
        cfg: &BertConfig,
        index: usize,
        lora: Option<&LoraConfig>,
        rng: &SharedRng,
    ) -> candle_core::Result<Self> {
        let (h, i, std) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.initializer_range,
        );
        let eps = cfg.layer_norm_eps;
        let heads = cfg.kept_heads(index);
        let width = heads.len() * cfg.head_dim();
        let attention_output =
            Linear::load(vb.pp("attention.output.dense"), width, h, std, lora, rng)?;
        Ok(Self {
            attention: SelfAttention::load(vb.pp("attention").pp("self"), cfg, heads, lora, rng)?,
            attention_output,
            attention_norm: LayerNorm::load(vb.pp("attention.output.LayerNorm"), h, eps)?,
            intermediate: Linear::load(vb.pp("intermediate.dense"), h, i, std, lora, rng)?,
            output: Linear::load(vb.pp("output.dense"), i, h, std, lora, rng)?,
            output_norm: LayerNorm::load(vb.pp("output.LayerNorm"), h, eps)?,
            activation: cfg.hidden_act,
            dropout: Dropout::new(cfg.hidden_dropout_prob, rng.clone()),
        })
    }

    /// Returns `[batch, seq, hidden]`, or `[batch, 1, hidden]` with [`Rows::Cls`].
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        head_mask: Option<&Tensor>,
        train: bool,
        rows: Rows,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (context, probs) = self.attention.forward(xs, mask, head_mask, train, rows)?;
        let residual = match rows {
            Rows::All => xs.clone(),
            Rows::Cls { .. } => xs.narrow(1, 0, 1)?.contiguous()?,
        };
        let xs = self.sublayer_output(
            &self.attention_output,
            &self.attention_norm,
            &context,
            &residual,
            train,
        )?;
        // Bias and GELU fuse at inference; in training the fused backward measured slower than
        // candle's broadcast-add backward followed by ours for GELU.
        let inner = match (self.activation, self.intermediate.bias()) {
            (HiddenAct::Gelu, Some(bias)) if !train => {
                let inner = self.intermediate.forward_without_bias(&xs, false)?;
                ops::bias_gelu(&inner, bias).map_err(candle_core::Error::wrap)?
            }
            (activation, _) => {
                let inner = self.intermediate.forward(&xs, train)?;
                match activation {
                    HiddenAct::Gelu => ops::gelu_erf(&inner).map_err(candle_core::Error::wrap)?,
                    HiddenAct::GeluApprox => inner.gelu()?,
                    HiddenAct::Relu => inner.relu()?,
                }
            }
        };
        let out = self.sublayer_output(&self.output, &self.output_norm, &inner, &xs, train)?;
        Ok((out, probs))
    }

    /// `LayerNorm(dropout(dense(input)) + residual)`. Outside training dropout is the identity,
    /// so bias and residual join one fused pass. In training the plain ops are kept: the fused
    /// op's backward (which must recompute the sum) measured 7 % slower per step.
    fn sublayer_output(
        &self,
        dense: &Linear,
        norm: &LayerNorm,
        input: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        if train {
            let ys = self.dropout.forward(&dense.forward(input, true)?, true)?;
            norm.forward(&(ys + residual)?)
        } else {
            let ys = dense.forward_without_bias(input, false)?;
            norm.forward_residual(&ys, residual, dense.bias())
        }
    }

    fn linears(&self) -> [&Linear; 6] {
        [
            &self.attention.query,
            &self.attention.key,
            &self.attention.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }

    fn linears_mut(&mut self) -> [&mut Linear; 6] {
        [
            &mut self.attention.query,
            &mut self.attention.key,
            &mut self.attention.value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}

/// A BERT encoder with a sequence-classification head (HF `BertForSequenceClassification`, plus
/// optional mean pooling).
pub struct BertClassifier {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    classifier: Linear,
    classifier_dropout: Dropout,
    num_labels: usize,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for BertClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertClassifier")
            .field("layers", &self.layers.len())
            .field("hidden_size", &self.config.hidden_size)
            .field("num_labels", &self.num_labels)
            .finish()
    }
}

impl BertClassifier {
    /// Builds the model from `vb`, whose root holds `bert.*` and `classifier.*`.
    pub fn load(
        vb: VarBuilder<'_>,
        config: &BertConfig,
        num_labels: usize,
        lora: Option<&LoraConfig>,
        rng: &SharedRng,
    ) -> candle_core::Result<Self> {
        if num_labels == 0 {
            candle_core::bail!("a classifier needs at least one label");
        }
        let bert = vb.pp("bert");
        let embeddings = Embeddings::load(bert.pp("embeddings"), config, rng)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(bert.pp(format!("encoder.layer.{i}")), config, i, lora, rng))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let h = config.hidden_size;
        let std = config.initializer_range;
        let pooler = match config.pooling() {
            Pooling::Cls => Some(Linear::load(bert.pp("pooler.dense"), h, h, std, lora, rng)?),
            Pooling::Mean => None,
        };
        let classifier = Linear::load(vb.pp("classifier"), h, num_labels, std, None, rng)?;
        Ok(Self {
            config: config.clone(),
            embeddings,
            layers,
            pooler,
            classifier,
            classifier_dropout: Dropout::new(config.classifier_dropout_prob(), rng.clone()),
            num_labels,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Number of output classes.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Word embeddings `[batch, seq, hidden]` of `input_ids`, before positions and segments are
    /// added: gradient saliency differentiates the output with respect to these.
    pub fn word_embeddings(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        self.embeddings.word_embeddings(input_ids)
    }

    /// The word-embedding matrix `[vocab, hidden]`: the trainer looks rows up outside the
    /// autograd graph when it trains (see `attune_train::optim::RowGradients`).
    pub fn word_embedding_matrix(&self) -> &Tensor {
        &self.embeddings.word
    }

    /// Runs a tokenised batch.
    pub fn forward(
        &self,
        batch: &Batch,
        opts: &ForwardOptions,
    ) -> candle_core::Result<ModelOutput> {
        let embeds = self.word_embeddings(&batch.input_ids)?;
        self.forward_embeds(&embeds, &batch.token_type_ids, &batch.attention_mask, opts)
    }

    /// Runs from word embeddings (see [`Self::word_embeddings`]); `attention_mask` is `[batch,
    /// seq]` with 1 for real tokens and 0 for padding.
    pub fn forward_embeds(
        &self,
        word_embeds: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        opts: &ForwardOptions,
    ) -> candle_core::Result<ModelOutput> {
        let (_, seq, _) = word_embeds.dims3()?;
        if seq > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {seq} tokens exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let mask_f = attention_mask.to_dtype(self.dtype)?;
        let additive = ((1.0 - &mask_f)? * MASK_VALUE)?;
        let mut xs = self
            .embeddings
            .forward(word_embeds, token_type_ids, opts.train)?;
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        if opts.output_hidden_states {
            hidden_states.push(xs.clone());
        }
        for (index, layer) in self.layers.iter().enumerate() {
            let _span = tracing::trace_span!("layer", index).entered();
            // Head masks are indexed by original head, so one mask fits a pruned model too.
            let head_mask = match &opts.head_mask {
                Some(m) => {
                    let row = m.get(index)?.to_dtype(self.dtype)?;
                    let ids = &layer.attention.head_ids;
                    if ids.len() == row.dim(0)? {
                        Some(row)
                    } else {
                        let ids: Vec<u32> = ids.iter().map(|&h| h as u32).collect();
                        Some(row.index_select(&Tensor::new(ids, row.device())?, 0)?)
                    }
                }
                None => None,
            };
            // Nothing reads the last layer's other rows unless its hidden states were asked
            // for: a [CLS] pooler sees row 0 only (mean pooling needs them all).
            let rows = if index + 1 == self.layers.len()
                && self.pooler.is_some()
                && !opts.output_hidden_states
            {
                Rows::Cls {
                    all_maps: opts.output_attentions,
                }
            } else {
                Rows::All
            };
            let (next, probs) =
                layer.forward(&xs, &additive, head_mask.as_ref(), opts.train, rows)?;
            xs = next;
            if opts.output_hidden_states {
                hidden_states.push(xs.clone());
            }
            if opts.output_attentions {
                attentions.push(probs);
            }
        }
        let pooled = match &self.pooler {
            Some(pooler) => pooler
                .forward(&xs.narrow(1, 0, 1)?.squeeze(1)?, opts.train)?
                .tanh()?,
            None => {
                let weights = mask_f.unsqueeze(2)?;
                let summed = xs.broadcast_mul(&weights)?.sum(1)?;
                let counts = weights.sum(1)?.clamp(1.0, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        let pooled = self.classifier_dropout.forward(&pooled, opts.train)?;
        let logits = self.classifier.forward(&pooled, opts.train)?;
        Ok(ModelOutput {
            logits,
            last_hidden: xs,
            hidden_states,
            attentions,
        })
    }

    /// Probabilities from logits: softmax for single-label, sigmoid for multi-label models.
    pub fn probabilities(&self, logits: &Tensor) -> candle_core::Result<Tensor> {
        match self.config.problem_type.unwrap_or_default() {
            ProblemType::SingleLabelClassification => candle_nn::ops::softmax(logits, D::Minus1),
            ProblemType::MultiLabelClassification => candle_nn::ops::sigmoid(logits),
        }
    }

    /// Folds every LoRA adapter into its base weight.
    pub fn merge_lora(&mut self) -> candle_core::Result<()> {
        for linear in self.dense_layers_mut() {
            linear.merge()?;
        }
        Ok(())
    }

    /// Whether any layer still carries an unmerged adapter.
    pub fn has_unmerged_lora(&self) -> bool {
        self.dense_layers().iter().any(|l| l.has_adapter())
    }

    /// The encoder's and pooler's dense layers: the ones LoRA adapts and quantisation converts
    /// (the classifier head is neither).
    pub fn dense_layers(&self) -> Vec<&Linear> {
        let mut out: Vec<&Linear> = self.layers.iter().flat_map(Layer::linears).collect();
        out.extend(self.pooler.as_ref());
        out
    }

    fn dense_layers_mut(&mut self) -> Vec<&mut Linear> {
        let mut out: Vec<&mut Linear> = self
            .layers
            .iter_mut()
            .flat_map(Layer::linears_mut)
            .collect();
        out.extend(self.pooler.as_mut());
        out
    }

    /// Converts every dense layer of the encoder and pooler to `format` (see [`crate::quant`]).
    /// `scales(name)` gives the stored int8 row steps of layer `name` when reloading a saved
    /// model.
    pub fn quantize(
        &mut self,
        format: WeightFormat,
        scales: impl Fn(&str) -> Option<Vec<f32>>,
    ) -> candle_core::Result<()> {
        if !self.device.is_cpu() {
            candle_core::bail!("quantised weights run on the CPU only");
        }
        for linear in self.dense_layers_mut() {
            let steps = scales(linear.name());
            linear.quantize(format, steps.as_deref())?;
        }
        self.config.attune_weight_format = (format != WeightFormat::F32).then_some(format);
        Ok(())
    }

    /// Removes attention heads: `heads[layer]` lists original head indices (as in HF's
    /// `prune_heads`). Every layer keeps at least one head. Returns the names of the parameters
    /// whose shapes changed.
    pub fn prune_heads(
        &mut self,
        heads: &std::collections::BTreeMap<usize, Vec<usize>>,
    ) -> candle_core::Result<Vec<String>> {
        let mut changed = Vec::new();
        for (&index, remove) in heads {
            let Some(layer) = self.layers.get_mut(index) else {
                candle_core::bail!(
                    "layer {index} does not exist ({} layers)",
                    self.layers.len()
                );
            };
            let before = layer.attention.num_heads;
            layer.attention.prune(remove, &mut layer.attention_output)?;
            if layer.attention.num_heads != before {
                for linear in [
                    &layer.attention.query,
                    &layer.attention.key,
                    &layer.attention.value,
                ] {
                    changed.push(format!("{}.weight", linear.name()));
                    changed.push(format!("{}.bias", linear.name()));
                }
                changed.push(format!("{}.weight", layer.attention_output.name()));
                let entry = self.config.pruned_heads.entry(index).or_default();
                for &h in remove {
                    if !entry.contains(&h) {
                        entry.push(h);
                    }
                }
                entry.sort_unstable();
            }
        }
        Ok(changed)
    }

    /// Heads each layer still has (original indices).
    pub fn heads(&self) -> Vec<Vec<usize>> {
        self.layers
            .iter()
            .map(|l| l.attention.head_ids.clone())
            .collect()
    }

    /// The format of the encoder's dense weights.
    pub fn weight_format(&self) -> WeightFormat {
        self.config.attune_weight_format.unwrap_or_default()
    }
}
