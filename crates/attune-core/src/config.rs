//! Model configuration, mirroring HF `config.json` for BERT so that any local BERT checkpoint
//! loads and a fine-tuned attune model loads back into `transformers`.
//!
//! Upstream definition:
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/configuration_bert.py>
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Activation function of the feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HiddenAct {
    /// Exact GELU with erf, as HF's `"gelu"`.
    Gelu,
    /// Tanh approximation of GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluApprox,
    /// Rectified linear unit.
    Relu,
}

/// How the classification head summarises the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// HF's `BertForSequenceClassification`: the pooler (dense + tanh) over the `[CLS]` state.
    #[default]
    Cls,
    /// Mean of the last hidden states over non-padding tokens (sentence-transformers style).
    Mean,
}

/// Single-label (softmax) or multi-label (sigmoid) classification, HF's `problem_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// One label per text; softmax + cross-entropy.
    #[default]
    SingleLabelClassification,
    /// Any number of labels per text; sigmoid + binary cross-entropy.
    MultiLabelClassification,
}

/// BERT configuration as found in HF `config.json`. Unknown keys are kept in `extra` so that a
/// config written back out loses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertConfig {
    /// Size of the WordPiece vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "default_act")]
    pub hidden_act: HiddenAct,
    /// Dropout on embeddings and sub-layer outputs.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position embeddings cover.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Number of segment (token type) embeddings.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Std of the normal init used for weights absent from the checkpoint.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only `"absolute"` is supported.
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
    /// `"bert"` for BERT-family checkpoints.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Dropout before the classifier; HF falls back to `hidden_dropout_prob` when null.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Class names by index, as HF writes them (`{"0": "negative", ...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Inverse of `id2label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
    /// Single- or multi-label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<ProblemType>,
    /// attune extension: how the classification head pools (absent = CLS, HF's behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attune_pooling: Option<Pooling>,
    /// Heads removed from each layer, by original index (HF's `pruned_heads` key): the
    /// checkpoint's query/key/value and attention-output weights have the reduced shapes.
    /// `transformers` 4.x applies it on load (checked with 4.57); 5.x dropped head pruning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_heads: BTreeMap<usize, Vec<usize>>,
    /// attune extension: storage format of the encoder's dense weights (absent = f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attune_weight_format: Option<crate::quant::WeightFormat>,
    /// Every other key of the file, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn default_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}
fn default_pos_type() -> String {
    "absolute".to_string()
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config
            .validate()
            .map_err(|message| Error::UnsupportedConfig {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(config)
    }

    /// Checks that the encoder can run this configuration; returns the offending field otherwise.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(model_type) = &self.model_type {
            if model_type != "bert" {
                return Err(format!(
                    "model_type {model_type:?} is not a BERT architecture (expected \"bert\")"
                ));
            }
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(format!("{field} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (&layer, heads) in &self.pruned_heads {
            if layer >= self.num_hidden_layers {
                return Err(format!(
                    "pruned_heads names layer {layer}; the model has {}",
                    self.num_hidden_layers
                ));
            }
            if let Some(h) = heads.iter().find(|&&h| h >= self.num_attention_heads) {
                return Err(format!(
                    "pruned_heads names head {h} of layer {layer}; layers have {}",
                    self.num_attention_heads
                ));
            }
            if self.kept_heads(layer).is_empty() {
                return Err(format!("pruned_heads removes every head of layer {layer}"));
            }
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} (only \"absolute\" is supported)",
                self.position_embedding_type
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{field} must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Original indices of the heads layer `layer` still has (all of them unless pruned).
    pub fn kept_heads(&self, layer: usize) -> Vec<usize> {
        let pruned = self.pruned_heads.get(&layer);
        (0..self.num_attention_heads)
            .filter(|h| !pruned.is_some_and(|p| p.contains(h)))
            .collect()
    }

    /// Dropout before the classifier, falling back to the hidden dropout as HF does.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Class names in index order, if the config has them.
    pub fn labels(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        let mut labels = vec![String::new(); map.len()];
        for (id, name) in map {
            let index: usize = id.parse().ok()?;
            *labels.get_mut(index)? = name.clone();
        }
        Some(labels)
    }

    /// Records class names (and `label2id`) so the saved config is self-describing.
    pub fn set_labels(&mut self, labels: &[String]) {
        self.id2label = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
        );
        self.label2id = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i))
                .collect(),
        );
    }

    /// Pooling of the classification head.
    pub fn pooling(&self) -> Pooling {
        self.attune_pooling.unwrap_or_default()
    }

    /// A small configuration for tests and examples.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 32,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            pad_token_id: 0,
            position_embedding_type: default_pos_type(),
            model_type: Some("bert".into()),
            classifier_dropout: None,
            id2label: None,
            label2id: None,
            problem_type: None,
            attune_pooling: None,
            attune_weight_format: None,
            pruned_heads: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}
