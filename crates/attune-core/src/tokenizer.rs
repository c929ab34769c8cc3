//! Tokenisation into padded tensor batches.
//!
//! Loads `tokenizer.json` when the model directory has one, and otherwise builds the standard
//! BERT WordPiece pipeline from `vocab.txt` (lower-casing per `tokenizer_config.json`'s
//! `do_lower_case`, default true). Padding is dynamic — each batch is padded to its longest
//! member, not to `max_len` — because attention cost grows with the square of the padded length.
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Encoding, Model, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// A batch ready for the encoder.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids `[batch, seq]` (u32), padded with the pad id.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding, `[batch, seq]` (u32).
    pub attention_mask: Tensor,
    /// Segment ids `[batch, seq]` (u32), all 0 for single texts.
    pub token_type_ids: Tensor,
    /// Number of real tokens of each text (special tokens included).
    pub lengths: Vec<usize>,
    /// The tokenizer's encodings (tokens, offsets, word ids) for mapping scores back to words.
    pub encodings: Vec<Encoding>,
}

/// A tokenizer plus the limits the encoder needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    source: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl TextTokenizer {
    /// Loads the tokenizer of a model directory: `tokenizer.json`, else `vocab.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            return Self::from_vocab(&vocab, lower_case_setting(dir));
        }
        Err(Error::ModelDir {
            path: dir.to_path_buf(),
            message: "no tokenizer.json or vocab.txt".into(),
        })
    }

    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(inner, path)
    }

    /// Builds BERT's WordPiece pipeline from a `vocab.txt`.
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self> {
        let path_str = path.to_str().ok_or_else(|| {
            Error::Tokenizer(format!("{}: path is not valid UTF-8", path.display()))
        })?;
        let model = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let cls = model.get_vocab().get("[CLS]").copied();
        let sep = model.get_vocab().get("[SEP]").copied();
        let (Some(cls), Some(sep)) = (cls, sep) else {
            return Err(Error::Tokenizer(format!(
                "{}: vocabulary lacks [CLS] or [SEP]",
                path.display()
            )));
        };
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )))
            .with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        Self::new(inner, path)
    }

    fn new(mut inner: Tokenizer, source: &Path) -> Result<Self> {
        // tokenizer.json files often carry fixed padding and truncation; we pad per batch and
        // truncate per call, so clear both.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self {
            inner,
            pad_id,
            source: source.to_path_buf(),
        })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes the tokenizer as `tokenizer.json` so a run directory is self-contained.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Id of the padding token: explanation baselines replace words by it.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of a vocabulary token such as `[MASK]`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenises `texts`, truncating each to `max_len` tokens (special tokens included).
    pub fn encode(&self, texts: &[&str], max_len: usize) -> Result<Vec<Encoding>> {
        if max_len < 2 {
            return Err(Error::InvalidArgument(format!(
                "max_len {max_len} leaves no room for [CLS] and [SEP]"
            )));
        }
        let mut tokenizer = self.inner.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Pads encodings to the longest one and stacks them into tensors.
    pub fn collate(&self, encodings: Vec<Encoding>, device: &Device) -> Result<Batch> {
        self.collate_padded(encodings, 1, device)
    }

    /// [`Self::collate`] of the encodings at `indices` (a batch from [`length_sorted_batches`]
    /// or an epoch's shuffle), cloned: the batch keeps its own.
    pub fn collate_at(
        &self,
        encodings: &[Encoding],
        indices: &[usize],
        device: &Device,
    ) -> Result<Batch> {
        self.collate(
            indices.iter().map(|&i| encodings[i].clone()).collect(),
            device,
        )
    }

    /// Like [`Self::collate`], padding to at least `min_seq` tokens (fixed shapes for
    /// benchmarks that must match a reference padded to `max_length`).
    pub fn collate_padded(
        &self,
        encodings: Vec<Encoding>,
        min_seq: usize,
        device: &Device,
    ) -> Result<Batch> {
        let batch = encodings.len();
        let seq = encodings
            .iter()
            .map(Encoding::len)
            .max()
            .unwrap_or(0)
            .max(min_seq)
            .max(1);
        let mut ids = vec![self.pad_id; batch * seq];
        let mut mask = vec![0u32; batch * seq];
        let mut types = vec![0u32; batch * seq];
        let mut lengths = Vec::with_capacity(batch);
        for (row, enc) in encodings.iter().enumerate() {
            let n = enc.len();
            let base = row * seq;
            ids[base..base + n].copy_from_slice(enc.get_ids());
            mask[base..base + n].copy_from_slice(enc.get_attention_mask());
            types[base..base + n].copy_from_slice(enc.get_type_ids());
            lengths.push(n);
        }
        Ok(Batch {
            input_ids: Tensor::from_vec(ids, (batch, seq), device)?,
            attention_mask: Tensor::from_vec(mask, (batch, seq), device)?,
            token_type_ids: Tensor::from_vec(types, (batch, seq), device)?,
            lengths,
            encodings,
        })
    }

    /// [`Self::encode`] then [`Self::collate`].
    pub fn batch(&self, texts: &[&str], max_len: usize, device: &Device) -> Result<Batch> {
        let encodings = self.encode(texts, max_len)?;
        self.collate(encodings, device)
    }
}

/// `do_lower_case` from `tokenizer_config.json`; BERT's default (true) when absent or unreadable.
fn lower_case_setting(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("do_lower_case").and_then(serde_json::Value::as_bool))
        .unwrap_or(true)
}

/// Indices of `encodings` in batches of `batch_size` (at least 1), shortest texts first, so each
/// batch pads little. Sorting is stable: equal lengths keep their input order.
pub fn length_sorted_batches(encodings: &[Encoding], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}
