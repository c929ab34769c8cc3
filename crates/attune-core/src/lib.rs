//! attune-core: a BERT-family encoder written on candle ops that, unlike
//! `candle-transformers`' BERT, hands back what it computes on the way — the attention
//! probabilities of every layer and head and every hidden state — while keeping them on the
//! autograd graph, so explanations can read them and training can put a loss on them.
//!
//! The crate also owns everything needed to get a model in and out of the HF ecosystem:
//! [`config`] mirrors `config.json`, [`tokenizer`] wraps `tokenizer.json`/`vocab.txt`,
//! [`checkpoint`] reads and writes HF and PEFT layouts, and [`lora`] adds low-rank adapters.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod infer;
pub mod lora;
pub mod model;
pub mod ops;
pub mod params;
pub mod quant;
pub mod tokenizer;

pub use candle_core::{DType, Device, Tensor};
pub use config::{BertConfig, Pooling, ProblemType};
pub use error::{Error, Result};
pub use model::{BertClassifier, ForwardOptions, ModelOutput};
pub use tokenizer::{length_sorted_batches, Batch, TextTokenizer};
