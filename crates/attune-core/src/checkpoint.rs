//! Reading and writing model directories in the layouts the HF ecosystem uses.
//!
//! * Input: any local HF BERT directory — `config.json`, `model.safetensors` (a
//!   `pytorch_model.bin` alone gets an error that says how to convert it), `tokenizer.json` or
//!   `vocab.txt`. Keys may be `bert.`-prefixed (`BertFor*` checkpoints) or bare (`BertModel`,
//!   e.g. sentence-transformers' MiniLM); old `gamma`/`beta` LayerNorm names are accepted.
//! * Output of a full fine-tune: HF layout that `AutoModelForSequenceClassification` loads.
//! * Output of a LoRA fine-tune: PEFT layout (`adapter_config.json`,
//!   `adapter_model.safetensors` with `base_model.model.` keys) plus `config.json` with labels.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::lora::LoraConfig;
use crate::model::BertClassifier;
use crate::params::{ParamStore, TrainablePredicate};
use crate::quant::{PackedWeight, WeightFormat};
use crate::tokenizer::TextTokenizer;

/// File names of the HF layout.
pub const CONFIG_FILE: &str = "config.json";
/// Weights of a full model.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Tokenizer file written into every saved model.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// PEFT adapter configuration.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT adapter weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Prefix PEFT puts before every key of a wrapped model.
const PEFT_PREFIX: &str = "base_model.model.";

/// Which parameters train.
#[derive(Debug, Clone, Default)]
pub enum TrainMode {
    /// Inference: nothing trains, no gradients are tracked.
    #[default]
    Frozen,
    /// Every parameter trains.
    Full,
    /// Only LoRA adapters and the classifier head train.
    Lora(LoraConfig),
}

/// How to build a classifier from a directory.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Class names for a new head; `None` keeps the checkpoint's `id2label`.
    pub labels: Option<Vec<String>>,
    /// What trains.
    pub mode: TrainMode,
    /// Seed for the weights the checkpoint lacks and for dropout.
    pub seed: u64,
    /// Where to run.
    pub device: Device,
    /// Parameter dtype.
    pub dtype: DType,
    /// Overrides the head's pooling.
    pub pooling: Option<crate::config::Pooling>,
    /// Sets single- or multi-label classification for a new head.
    pub problem_type: Option<crate::config::ProblemType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            labels: None,
            mode: TrainMode::Frozen,
            seed: 42,
            device: Device::Cpu,
            dtype: DType::F32,
            pooling: None,
            problem_type: None,
        }
    }
}

/// A classifier together with everything needed to use and save it.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: BertClassifier,
    /// Its configuration, including labels.
    pub config: BertConfig,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Class names in index order.
    pub labels: Vec<String>,
    /// Parameter source: trainable variables and the names needed to save.
    pub params: ParamStore,
    /// The adapter configuration when the model carries LoRA adapters.
    pub lora: Option<LoraConfig>,
    /// Directory of the base weights.
    pub base_dir: PathBuf,
}

/// Suffix of the per-row scales stored beside an int8 weight (`…dense.weight_scale`).
pub const SCALE_SUFFIX: &str = "_scale";

/// Reads a safetensors file into canonical names (see [`canonical_name`]).
///
/// Tensors are read one at a time (the header, then each tensor's bytes), so loading needs the
/// model's size in memory plus its largest tensor — not twice the file, as reading the whole file
/// first would (that transient was most of a serving process's peak RSS).
///
/// int8 weights (attune's quantised checkpoints) come back dequantised with their row scales
/// (`<name>_scale`), so the model builds as from any checkpoint; [`load`] then packs them again,
/// recovering the stored integers exactly.
pub fn load_weights(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    use std::io::{Read, Seek, SeekFrom};
    let weights_error = |message: String| Error::Weights {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut size = [0u8; 8];
    file.read_exact(&mut size)
        .map_err(|e| weights_error(format!("cannot read safetensors: no header size ({e})")))?;
    let header_len = u64::from_le_bytes(size);
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if header_len > file_len.saturating_sub(8) || header_len > 100 << 20 {
        return Err(weights_error(format!(
            "cannot read safetensors: a header of {header_len} bytes does not fit a \
             {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| weights_error(format!("cannot read safetensors: header ({e})")))?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| {
            weights_error(format!(
                "cannot read safetensors: header is not valid JSON ({e})"
            ))
        })?;
    let data_start = 8 + header_len;
    let mut entries: Vec<(String, RawEntry)> = Vec::with_capacity(header.len());
    for (key, value) in header {
        if key == "__metadata__" {
            continue;
        }
        let entry: RawEntry = serde_json::from_value(value)
            .map_err(|e| weights_error(format!("tensor {key}: bad header entry: {e}")))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || data_start + end as u64 > file_len {
            return Err(weights_error(format!(
                "tensor {key}: data lies outside the file"
            )));
        }
        entries.push((key, entry));
    }
    // int8 weights last: they need their scales, read as ordinary f32 tensors first.
    entries.sort_by_key(|(_, e)| e.dtype == "I8");
    let mut raw_scales: HashMap<String, Vec<f32>> = HashMap::new();
    let mut out = HashMap::with_capacity(entries.len());
    for (key, entry) in entries {
        let [begin, end] = entry.data_offsets;
        file.seek(SeekFrom::Start(data_start + begin as u64))
            .map_err(|e| weights_error(format!("tensor {key}: {e}")))?;
        let elements: usize = entry.shape.iter().product();
        if entry.dtype == "F32" && cfg!(target_endian = "little") && elements * 4 == end - begin {
            // The common case straight into its final buffer: no second copy of the largest
            // tensors (the word embeddings are half of MiniLM).
            let mut values = vec![0f32; elements];
            file.read_exact(bytemuck::cast_slice_mut(&mut values))
                .map_err(|e| weights_error(format!("tensor {key}: {e}")))?;
            if key.ends_with(SCALE_SUFFIX) {
                raw_scales.insert(key.clone(), values.clone());
            }
            let tensor = Tensor::from_vec(values, entry.shape.as_slice(), device)
                .map_err(|e| weights_error(format!("tensor {key}: {e}")))?;
            if let Some(name) = canonical_name(&key) {
                out.insert(name, tensor);
            }
            continue;
        }
        let mut bytes = vec![0u8; end - begin];
        file.read_exact(&mut bytes)
            .map_err(|e| weights_error(format!("tensor {key}: {e}")))?;
        let width = match entry.dtype.as_str() {
            "F64" | "I64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" => 2,
            _ => 1,
        };
        if elements * width != bytes.len() {
            return Err(weights_error(format!(
                "tensor {key}: shape {:?} of {} needs {} bytes, the file has {}",
                entry.shape,
                entry.dtype,
                elements * width,
                bytes.len()
            )));
        }
        let tensor = if entry.dtype == "I8" {
            dequantize_int8(&key, &entry.shape, &bytes, &raw_scales).map_err(weights_error)?
        } else {
            let dtype = match entry.dtype.as_str() {
                "F32" => DType::F32,
                "F64" => DType::F64,
                "F16" => DType::F16,
                "BF16" => DType::BF16,
                "I64" => DType::I64,
                "I32" => DType::I32,
                "I16" => DType::I16,
                "U32" => DType::U32,
                "U8" => DType::U8,
                other => {
                    return Err(weights_error(format!(
                        "tensor {key}: unsupported dtype {other}"
                    )))
                }
            };
            if key.ends_with(SCALE_SUFFIX) && dtype == DType::F32 {
                raw_scales.insert(
                    key.clone(),
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                );
            }
            Tensor::from_raw_buffer(&bytes, dtype, &entry.shape, device)
                .map_err(|e| weights_error(format!("tensor {key}: {e}")))?
        };
        if let Some(name) = canonical_name(&key) {
            out.insert(name, tensor);
        }
    }
    Ok(out)
}

/// One tensor's entry in a safetensors header.
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

fn dequantize_int8(
    key: &str,
    shape: &[usize],
    bytes: &[u8],
    scales: &HashMap<String, Vec<f32>>,
) -> std::result::Result<Tensor, String> {
    let &[rows, cols] = shape else {
        return Err(format!(
            "int8 tensor {key} has shape {shape:?}; only matrices are supported"
        ));
    };
    let scale_key = format!("{key}{SCALE_SUFFIX}");
    let steps = scales
        .get(&scale_key)
        .ok_or_else(|| format!("int8 tensor {key} has no f32 {scale_key}"))?;
    if steps.len() != rows {
        return Err(format!(
            "{scale_key} has {} values for {rows} rows",
            steps.len()
        ));
    }
    let values: Vec<f32> = bytes
        .iter()
        .enumerate()
        .map(|(i, &q)| f32::from(q as i8) * steps[i / cols.max(1)])
        .collect();
    Tensor::from_vec(values, (rows, cols), &Device::Cpu).map_err(|e| e.to_string())
}

/// Maps a checkpoint key to attune's names (HF `BertForSequenceClassification` names), or
/// `None` for buffers the model does not use (`position_ids`).
pub fn canonical_name(key: &str) -> Option<String> {
    if key.ends_with("position_ids") {
        return None;
    }
    let key = key.strip_prefix(PEFT_PREFIX).unwrap_or(key);
    let key = key.strip_prefix("model.").unwrap_or(key);
    let mut name = if key.starts_with("bert.") || key.starts_with("classifier.") {
        key.to_string()
    } else if ["embeddings.", "encoder.", "pooler."]
        .iter()
        .any(|p| key.starts_with(p))
    {
        format!("bert.{key}")
    } else {
        key.to_string()
    };
    if name.contains("LayerNorm.") {
        if let Some(stem) = name.strip_suffix(".gamma") {
            name = format!("{stem}.weight");
        } else if let Some(stem) = name.strip_suffix(".beta") {
            name = format!("{stem}.bias");
        }
    }
    Some(name)
}

fn weights_path(dir: &Path) -> Result<PathBuf> {
    let st = dir.join(WEIGHTS_FILE);
    if st.is_file() {
        return Ok(st);
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            message: "only pytorch_model.bin found; convert it to model.safetensors first, e.g. \
                      `python tools/convert_to_safetensors.py DIR`"
                .into(),
        });
    }
    Err(Error::ModelDir {
        path: dir.to_path_buf(),
        message: "no model.safetensors (is this a model directory?)".into(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Loads a classifier from `dir`: a base HF BERT directory, a full fine-tune, or a LoRA run
/// (a directory with `adapter_config.json`, whose base model path it names).
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            message: "model directory does not exist".into(),
        });
    }
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            message: "no config.json (is this a model directory?)".into(),
        });
    }
    let mut config = BertConfig::from_file(&config_path)?;
    let adapter_path = dir.join(ADAPTER_CONFIG_FILE);
    let saved_lora = if adapter_path.is_file() {
        let cfg: LoraConfig = read_json(&adapter_path)?;
        cfg.validate().map_err(|message| Error::UnsupportedConfig {
            path: adapter_path.clone(),
            message,
        })?;
        Some(cfg)
    } else {
        None
    };
    let (base_dir, mut tensors) = match &saved_lora {
        Some(lora) => {
            let base = lora
                .base_model_name_or_path
                .as_deref()
                .ok_or_else(|| Error::ModelDir {
                    path: adapter_path.clone(),
                    message: "adapter_config.json has no base_model_name_or_path".into(),
                })?;
            let base = resolve_relative(dir, base);
            let mut tensors = load_weights(&weights_path(&base)?, &opts.device)?;
            let adapter_file = dir.join(ADAPTER_WEIGHTS_FILE);
            if !adapter_file.is_file() {
                return Err(Error::ModelDir {
                    path: dir.to_path_buf(),
                    message: format!("{ADAPTER_WEIGHTS_FILE} is missing"),
                });
            }
            tensors.extend(load_weights(&adapter_file, &opts.device)?);
            (base, tensors)
        }
        None => (
            dir.to_path_buf(),
            load_weights(&weights_path(dir)?, &opts.device)?,
        ),
    };
    let tokenizer = TextTokenizer::from_dir(dir)?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::UnsupportedConfig {
            path: config_path,
            message: format!(
                "tokenizer has {} tokens but vocab_size is {}",
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        });
    }
    let labels = match (&opts.labels, config.labels()) {
        (Some(new), _) => {
            if config.labels().as_deref() != Some(new.as_slice()) {
                // A new task: the old head (if any) does not fit, start it afresh.
                tensors.retain(|k, _| !k.starts_with("classifier."));
            }
            new.clone()
        }
        (None, Some(existing)) => existing,
        (None, None) => {
            return Err(Error::ModelDir {
                path: dir.to_path_buf(),
                message: "config.json has no id2label: this is a base model, fine-tune it first"
                    .into(),
            })
        }
    };
    config.set_labels(&labels);
    if let Some(pooling) = opts.pooling {
        config.attune_pooling = Some(pooling);
    }
    if let Some(problem_type) = opts.problem_type {
        config.problem_type = Some(problem_type);
    }
    let (trainable, lora): (TrainablePredicate, Option<LoraConfig>) = match (&opts.mode, saved_lora)
    {
        (TrainMode::Frozen, saved) => (std::sync::Arc::new(|_: &str| false), saved),
        (TrainMode::Full, None) => (std::sync::Arc::new(|_: &str| true), None),
        (TrainMode::Lora(cfg), None) => {
            cfg.validate().map_err(Error::InvalidArgument)?;
            let mut cfg = cfg.clone();
            cfg.base_model_name_or_path = Some(absolute(&base_dir).display().to_string());
            (std::sync::Arc::new(trains_with_lora), Some(cfg))
        }
        (_, Some(_)) => {
            return Err(Error::InvalidArgument(format!(
                "{}: training on top of a LoRA run is not supported; start from its base model",
                dir.display()
            )))
        }
    };
    let params = ParamStore::new(tensors, trainable, opts.seed);
    let vb = params.var_builder(opts.dtype, &opts.device);
    let model = BertClassifier::load(vb, &config, labels.len(), lora.as_ref(), &params.rng())
        .map_err(|e| Error::Weights {
            path: base_dir.join(WEIGHTS_FILE),
            message: e.to_string(),
        })?;
    let mut loaded = LoadedModel {
        model,
        config,
        tokenizer,
        labels,
        params,
        lora,
        base_dir,
    };
    let format = loaded.config.attune_weight_format.unwrap_or_default();
    if format != WeightFormat::F32 {
        if !matches!(opts.mode, TrainMode::Frozen) {
            return Err(Error::InvalidArgument(format!(
                "{}: a {format} model is for inference; train from the f32 model it was made from",
                dir.display()
            )));
        }
        loaded.quantize(format)?;
    }
    Ok(loaded)
}

/// What a LoRA run trains and saves in its adapter file: the adapters and the classifier head
/// (PEFT's `modules_to_save`).
fn trains_with_lora(name: &str) -> bool {
    crate::lora::is_adapter_param(name) || name.starts_with("classifier.")
}

fn resolve_relative(dir: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        dir.join(p)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl LoadedModel {
    /// Removes attention heads (`heads[layer]`: original indices, as HF's `prune_heads`) from
    /// the f32 model, records them in `config.pruned_heads` and updates the stored parameters,
    /// so a saved model has the reduced shapes (the layout `transformers` 4.x reads back).
    pub fn prune_heads(
        &mut self,
        heads: &std::collections::BTreeMap<usize, Vec<usize>>,
    ) -> Result<()> {
        self.merge_adapters()?;
        let changed = self.model.prune_heads(heads)?;
        self.config.pruned_heads = self.model.config().pruned_heads.clone();
        for layer in self.model.dense_layers() {
            let weight = format!("{}.weight", layer.name());
            if changed.contains(&weight) {
                if let Some(w) = layer.dense_weight() {
                    self.params.replace(&weight, w.clone());
                }
            }
            let bias = format!("{}.bias", layer.name());
            if changed.contains(&bias) {
                if let Some(b) = layer.bias() {
                    self.params.replace(&bias, b.clone());
                }
            }
        }
        Ok(())
    }

    /// Folds LoRA adapters into the weights for good: the stored parameters become the merged
    /// weights and the adapters are dropped, so the model saves as a plain HF model.
    pub fn merge_adapters(&mut self) -> Result<()> {
        if !self.model.has_unmerged_lora() {
            return Ok(());
        }
        self.model.merge_lora()?;
        self.lora = None;
        for layer in self.model.dense_layers() {
            if let Some(w) = layer.dense_weight() {
                self.params
                    .replace(&format!("{}.weight", layer.name()), w.clone());
            }
        }
        let adapters: Vec<String> = self
            .params
            .named_tensors()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| crate::lora::is_adapter_param(name))
            .collect();
        self.params.release(&adapters);
        Ok(())
    }

    /// Converts the encoder's dense weights to `format` in place (see [`crate::quant`]) and
    /// frees their f32 copies. Stored int8 scales (a reloaded quantised model) are reused, so
    /// the integers come back exactly. LoRA adapters are merged first.
    pub fn quantize(&mut self, format: WeightFormat) -> Result<()> {
        self.merge_adapters()?;
        let params = self.params.clone();
        let scales = |layer: &str| {
            params
                .tensor(&format!("{layer}.weight{SCALE_SUFFIX}"))
                .and_then(|t| t.to_vec1::<f32>().ok())
        };
        self.model.quantize(format, scales)?;
        let fast = match format {
            WeightFormat::Int8 => attune_kernels::simd_int8_available(),
            WeightFormat::Bf16 => attune_kernels::simd_bf16_available(),
            WeightFormat::F32 => true,
        };
        if !fast {
            tracing::warn!(
                "this CPU lacks the AVX-512 instructions for {format}; the portable kernels run, \
                 slower than f32 here"
            );
        }
        self.config.attune_weight_format = self.model.config().attune_weight_format;
        let replaced: Vec<String> = self
            .model
            .dense_layers()
            .iter()
            .filter(|l| l.packed_weight().is_some())
            .flat_map(|l| {
                [
                    format!("{}.weight", l.name()),
                    format!("{}.weight{SCALE_SUFFIX}", l.name()),
                ]
            })
            .collect();
        self.params.release(&replaced);
        Ok(())
    }

    /// Saves the model: HF layout for a full model, PEFT layout (plus `config.json` and
    /// `tokenizer.json`) for one with adapters.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.extra.insert(
            "architectures".into(),
            serde_json::json!(["BertForSequenceClassification"]),
        );
        if config.problem_type.is_none() {
            config.problem_type = Some(crate::config::ProblemType::SingleLabelClassification);
        }
        write_json(&dir.join(CONFIG_FILE), &config)?;
        self.tokenizer.save(&dir.join(TOKENIZER_FILE))?;
        let tensors = self.params.named_tensors();
        match &self.lora {
            None if self.model.weight_format() != WeightFormat::F32 => {
                save_quantized(&dir.join(WEIGHTS_FILE), tensors, &self.model)
            }
            None => {
                let path = dir.join(WEIGHTS_FILE);
                save_safetensors(&path, tensors)
            }
            Some(lora) => {
                write_json(&dir.join(ADAPTER_CONFIG_FILE), lora)?;
                let adapter: Vec<(String, Tensor)> = tensors
                    .into_iter()
                    .filter(|(k, _)| trains_with_lora(k))
                    .map(|(k, t)| (format!("{PEFT_PREFIX}{k}"), t))
                    .collect();
                save_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), adapter)
            }
        }
    }
}

fn save_safetensors(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&map, path).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

/// One tensor of a quantised checkpoint, in the bytes safetensors stores.
struct RawTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for RawTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes a quantised model: f32 tensors as usual, int8 weights as `I8` with `<name>_scale`
/// (f32, one per output row), bf16 weights as `BF16` — dtypes any safetensors reader knows.
fn save_quantized(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    model: &BertClassifier,
) -> Result<()> {
    let mut raw: Vec<(String, RawTensor)> = Vec::new();
    for (name, tensor) in tensors {
        let values = tensor
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        raw.push((
            name,
            RawTensor {
                dtype: safetensors::Dtype::F32,
                shape: tensor.dims().to_vec(),
                data: f32_bytes(&values),
            },
        ));
    }
    for layer in model.dense_layers() {
        let Some(packed) = layer.packed_weight() else {
            continue;
        };
        let (rows, cols) = packed.dims();
        let name = format!("{}.weight", layer.name());
        match packed {
            PackedWeight::Int8(matrix) => {
                raw.push((
                    format!("{name}{SCALE_SUFFIX}"),
                    RawTensor {
                        dtype: safetensors::Dtype::F32,
                        shape: vec![rows],
                        data: f32_bytes(matrix.scales()),
                    },
                ));
                raw.push((
                    name,
                    RawTensor {
                        dtype: safetensors::Dtype::I8,
                        shape: vec![rows, cols],
                        data: matrix.quantized().into_iter().map(|q| q as u8).collect(),
                    },
                ));
            }
            PackedWeight::Bf16(matrix) => raw.push((
                name,
                RawTensor {
                    dtype: safetensors::Dtype::BF16,
                    shape: vec![rows, cols],
                    data: matrix
                        .to_bf16()
                        .into_iter()
                        .flat_map(u16::to_le_bytes)
                        .collect(),
                },
            )),
        }
    }
    safetensors::serialize_to_file(raw, None, path).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}
