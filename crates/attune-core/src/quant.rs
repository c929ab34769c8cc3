//! Quantised weights for inference: the encoder's dense layers in int8 or bf16.
//!
//! Only the encoder's and pooler's dense layers change format: they hold 98 % of the
//! multiply-adds. Embeddings are table lookups, LayerNorm parameters and biases are tiny, and
//! the classifier head decides the label, so all of those stay f32.
//!
//! The product runs in `attune-kernels`. Gradients (saliency, integrated gradients on a quantised
//! model) flow to the input through the dequantised weight — the straight-through estimator for
//! the activation rounding, which is how the explanation of a quantised model is defined here.
use std::sync::Arc;

use attune_kernels::{Backend, Bf16Matrix, Int8Matrix};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use serde::{Deserialize, Serialize};

/// Storage format of the encoder's dense weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Full precision (as trained).
    #[default]
    F32,
    /// bfloat16 weights and activations, f32 accumulation (AVX512-BF16).
    Bf16,
    /// int8 weights (per output row), activations quantised per token at run time (VNNI).
    Int8,
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "int8" => Ok(Self::Int8),
            other => Err(format!(
                "unknown weight format {other:?} (f32, bf16 or int8)"
            )),
        }
    }
}

/// A dense layer's weight in a quantised format, packed for the kernels.
#[derive(Debug, Clone)]
pub enum PackedWeight {
    /// int8 with per-row scales.
    Int8(Arc<Int8Matrix>),
    /// bf16.
    Bf16(Arc<Bf16Matrix>),
}

impl PackedWeight {
    /// Converts an f32 weight `[out, in]`. With `scales` (int8 only) the rows are quantised
    /// with those steps: reloading a saved int8 model recovers its exact integers.
    pub fn from_weight(
        weight: &Tensor,
        format: WeightFormat,
        scales: Option<&[f32]>,
    ) -> candle_core::Result<Option<Self>> {
        if format == WeightFormat::F32 {
            return Ok(None);
        }
        let (n, k) = weight.dims2()?;
        let values = weight
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let packed = match format {
            WeightFormat::Bf16 => {
                Bf16Matrix::from_f32(&values, n, k).map(|m| Self::Bf16(Arc::new(m)))
            }
            _ => match scales {
                None => Int8Matrix::quantize(&values, n, k),
                Some(scales) => Int8Matrix::quantize_with_scales(&values, scales, n, k),
            }
            .map(|m| Self::Int8(Arc::new(m))),
        }
        .map_err(candle_core::Error::wrap)?;
        Ok(Some(packed))
    }

    /// The format this weight is stored in.
    pub fn format(&self) -> WeightFormat {
        match self {
            Self::Int8(_) => WeightFormat::Int8,
            Self::Bf16(_) => WeightFormat::Bf16,
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Int8(m) => (m.rows(), m.cols()),
            Self::Bf16(m) => (m.rows(), m.cols()),
        }
    }

    /// The weight the product effectively uses, as f32 `[out, in]`.
    pub fn dequantize(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        let values = match self {
            Self::Int8(m) => m.dequantize(),
            Self::Bf16(m) => m.to_f32(),
        };
        Tensor::from_vec(values, self.dims(), device)
    }

    /// Bytes the packed weight occupies.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Int8(m) => m.bytes(),
            Self::Bf16(m) => m.bytes(),
        }
    }

    /// `x Wᵀ (+ bias)` for `x` `[rows, in]`; differentiable with respect to `x`.
    pub fn linear(&self, xs: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let bias = match bias {
            Some(b) => Some(b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?),
            None => None,
        };
        xs.apply_op1_no_bwd(&QuantizedLinear {
            weight: self.clone(),
            bias,
        })
        .and_then(|ys| {
            if xs.track_op() {
                crate::ops::attach_input_gradient(xs, &ys, self.dequantize(xs.device())?)
                    .map_err(candle_core::Error::wrap)
            } else {
                Ok(ys)
            }
        })
    }
}

struct QuantizedLinear {
    weight: PackedWeight,
    bias: Option<Vec<f32>>,
}

impl CustomOp1 for QuantizedLinear {
    fn name(&self) -> &'static str {
        "attune-quantized-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, in_dim) = layout.shape().dims2()?;
        let (out_dim, k) = self.weight.dims();
        if in_dim != k {
            candle_core::bail!("quantized linear: input has {in_dim} features, weight expects {k}");
        }
        let xs = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            _ => candle_core::bail!("quantized linear: input must be contiguous f32"),
        };
        let mut out = vec![0f32; rows * out_dim];
        let bias = self.bias.as_deref();
        match &self.weight {
            PackedWeight::Int8(m) => {
                attune_kernels::int8_linear(xs, rows, m, bias, &mut out, Backend::best_int8())
            }
            PackedWeight::Bf16(m) => {
                attune_kernels::bf16_linear(xs, rows, m, bias, &mut out, Backend::best_bf16())
            }
        }
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), Shape::from((rows, out_dim))))
    }
}
