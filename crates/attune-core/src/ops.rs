//! Fused CPU kernels with their own backward passes.
//!
//! candle 0.11's `candle_nn::ops::layer_norm` and `softmax_last_dim` are custom ops *without*
//! backward: gradients silently stop at them and only the classifier head trains. The composed
//! versions (`layer_norm_slow`, `softmax`) are differentiable but run several passes over memory
//! and allocate a tensor per step. The ops here compute the forward pass in one pass per row and
//! define `bwd` with a second fused kernel, so the encoder is both trainable and fast. On devices
//! other than the CPU (the `cuda` feature) they fall back to the composed, differentiable ops.
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::error::Result;
use attune_kernels::MatRef;

/// Below this many elements per row chunk, rayon's scheduling costs more than it saves.
const MIN_ROWS_PER_TASK: usize = 16;

fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        _ => candle_core::bail!("{op}: only f32 is supported on the fused CPU path"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

fn use_fused(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// `exp` for f32 without libm: range reduction to `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-6
/// Taylor polynomial for `e^r` (relative error < 2e-7) and `2^n` built from the exponent bits.
/// libm's `expf` is a call per element and takes a slow errno path for every underflow — which
/// every masked attention score (−1e9) hits.
///
/// Below −87 the result is exactly 0, not the smallest normal float: a padding key's probability
/// of 1e-38 multiplied by a value below 1 in the next GEMM makes a subnormal product, and each
/// one costs the CPU a microcode assist. Padded batches ran 10–50× slower in `gemm` before
/// this (a HateXplain epoch at 5 sentences/s instead of 40).
/// 1.5·2²³: adding it to a float of magnitude below 2²² leaves that number rounded to an integer
/// (ties to even) in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;

#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ from the exponent bits. Adding 1.5·2²³ puts the integer n + 127 (in 1..=255 after the
    // clamp) in the low mantissa bits, and the shift drops everything else: no float-to-int
    // conversion, whose saturating semantics cost several instructions per lane.
    let value = f32::from_bits((n + (MAGIC + 127.0)).to_bits() << 23) * p;
    if x < -87.0 {
        0.0
    } else {
        value
    }
}

/// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * gamma + beta`.
pub fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if !use_fused(xs) {
        return Ok(candle_nn::ops::layer_norm_slow(
            xs, gamma, beta, eps as f32,
        )?);
    }
    let xs = xs.contiguous()?;
    Ok(xs.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )?)
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and reciprocal standard deviation of one row, computed in f64 for stability: rows are
/// short (hidden size) so the extra precision is free — as long as the sums run in 8 independent
/// lanes: one running f64 sum is a chain of dependent adds (4 cycles each) that LLVM may not
/// reorder, which made these statistics cost as much as the normalisation itself several times.
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = lanes_sum_f64(row, f64::from) / n;
    let var = lanes_sum_f64(row, |v| (f64::from(v) - mean).powi(2)) / n;
    (mean as f32, (1.0 / (var + f64::from(eps)).sqrt()) as f32)
}

/// `Σ f(v)` in f64 over 8 independent lanes: one accumulator is a chain of dependent adds
/// (4 cycles each) that LLVM may not reorder; eight run in parallel and vectorise.
#[inline(always)]
pub fn lanes_sum_f64(row: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    const W: usize = 8;
    let mut acc = [0f64; W];
    let chunks = row.chunks_exact(W);
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// `row ← (row − mean) / std · gamma + beta`.
#[inline(always)]
fn normalize_in_place(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let (mean, rstd) = row_stats(row, eps);
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * rstd * g + b;
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "attune-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let beta = contiguous_f32(s3, l3, self.name())?;
        let dim = l1.dims()[l1.dims().len() - 1];
        if gamma.len() != dim || beta.len() != dim {
            candle_core::bail!(
                "layer-norm: gamma/beta have {} values for rows of {dim}",
                gamma.len()
            );
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(dim)
            .with_min_len(MIN_ROWS_PER_TASK)
            .zip(xs.par_chunks(dim))
            .for_each(|(dst, row)| {
                dst.copy_from_slice(row);
                normalize_in_place(dst, gamma, beta, self.eps);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dim = xs.dim(D::Minus1)?;
        let rows = xs.elem_count() / dim;
        let packed = xs.apply_op3_no_bwd(
            gamma,
            &grad.contiguous()?,
            &LayerNormBwdOp { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows)?.reshape(xs.shape())?;
        let dgamma = packed.narrow(0, rows, 1)?.reshape(gamma.shape())?;
        let dbeta = packed.narrow(0, rows + 1, 1)?.reshape(gamma.shape())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Backward of [`LayerNormOp`]. A custom op yields one tensor, so it returns `[rows + 2, dim]`:
/// the input gradient followed by the gamma and beta gradients.
struct LayerNormBwdOp {
    eps: f32,
}

impl CustomOp3 for LayerNormBwdOp {
    fn name(&self) -> &'static str {
        "attune-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let grad = contiguous_f32(s3, l3, self.name())?;
        let dim = gamma.len();
        let rows = xs.len() / dim;
        let mut out = vec![0f32; (rows + 2) * dim];
        let (dx, param_grads) = out.split_at_mut(rows * dim);
        // Per-chunk partial sums of dgamma/dbeta, reduced afterwards: keeps the row loop parallel.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(dim * MIN_ROWS_PER_TASK)
            .zip(xs.par_chunks(dim * MIN_ROWS_PER_TASK))
            .zip(grad.par_chunks(dim * MIN_ROWS_PER_TASK))
            .map(|((dx_chunk, x_chunk), g_chunk)| {
                let mut acc = vec![0f32; 2 * dim];
                for ((dst, row), g) in dx_chunk
                    .chunks_mut(dim)
                    .zip(x_chunk.chunks(dim))
                    .zip(g_chunk.chunks(dim))
                {
                    let (mean, rstd) = row_stats(row, self.eps);
                    let mut mean_dy = 0f32;
                    let mut mean_dy_xhat = 0f32;
                    for i in 0..dim {
                        let xhat = (row[i] - mean) * rstd;
                        let dy = g[i] * gamma[i];
                        mean_dy += dy;
                        mean_dy_xhat += dy * xhat;
                        acc[i] += g[i] * xhat;
                        acc[dim + i] += g[i];
                    }
                    mean_dy /= dim as f32;
                    mean_dy_xhat /= dim as f32;
                    for i in 0..dim {
                        let xhat = (row[i] - mean) * rstd;
                        dst[i] = rstd * (g[i] * gamma[i] - mean_dy - xhat * mean_dy_xhat);
                    }
                }
                acc
            })
            .collect();
        for acc in partials {
            for (dst, v) in param_grads.iter_mut().zip(acc) {
                *dst += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, dim))))
    }
}

/// Lanes of the independent accumulators in [`lane_sum`] and [`lane_max`].
const LANES: usize = 16;

/// Sum over 16 independent accumulators. A single running f32 sum is a serial dependency that
/// LLVM may not reorder, so that loop (and everything fused into it) runs one element at a time;
/// this one vectorises.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Maximum over 16 independent lanes (see [`lane_sum`]).
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    acc.iter().copied().fold(rest, f32::max)
}

/// `dst = softmax(scale·row + mask)`, in passes that each vectorise: scale and mask, maximum,
/// exponentials, sum, normalisation.
#[inline(always)]
fn softmax_row(row: &[f32], dst: &mut [f32], scale: f32, mask: &[f32]) {
    for ((d, &v), &m) in dst.iter_mut().zip(row).zip(mask) {
        *d = v * scale + m;
    }
    let max = lane_max(dst);
    dst.iter_mut().for_each(|d| *d = fast_exp(*d - max));
    let inv = 1.0 / lane_sum(dst);
    dst.iter_mut().for_each(|d| *d *= inv);
}

/// Attention probabilities `softmax(scale · scores + mask)` in one pass: `scores` is `[batch,
/// heads, q, k]`, `mask` the additive key mask `[batch, k]` (0 keep, large negative drop).
/// Saves two full passes (scaling, broadcast add) over the largest activation of the encoder.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if !use_fused(scores) {
        let (b, _, _, k) = scores.dims4()?;
        let scaled = (scores * scale)?.broadcast_add(&mask.reshape((b, 1, 1, k))?)?;
        return Ok(candle_nn::ops::softmax(&scaled, D::Minus1)?);
    }
    Ok(scores.contiguous()?.apply_op2(
        &mask.contiguous()?,
        MaskedSoftmaxOp {
            scale: scale as f32,
        },
    )?)
}

struct MaskedSoftmaxOp {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmaxOp {
    fn name(&self) -> &'static str {
        "attune-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32(s1, l1, self.name())?;
        let mask = contiguous_f32(s2, l2, self.name())?;
        let dims = l1.dims();
        if dims.len() != 4 || l2.dims() != [dims[0], dims[3]] {
            candle_core::bail!(
                "masked-softmax: scores {dims:?} and mask {:?} do not fit",
                l2.dims()
            );
        }
        let k = dims[3];
        let rows_per_batch = dims[1] * dims[2];
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(k)
            .with_min_len(MIN_ROWS_PER_TASK)
            .zip(scores.par_chunks(k))
            .enumerate()
            .for_each(|(r, (dst, row))| {
                let b = r / rows_per_batch;
                softmax_row(row, dst, self.scale, &mask[b * k..(b + 1) * k]);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBwdOp)?;
        Ok((Some((dx * self.scale as f64)?), None))
    }
}

/// `dx = y * (dy - sum(dy * y))` row by row, with `y` the softmax output.
struct SoftmaxBwdOp;

impl CustomOp2 for SoftmaxBwdOp {
    fn name(&self) -> &'static str {
        "attune-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ys = contiguous_f32(s1, l1, self.name())?;
        let grad = contiguous_f32(s2, l2, self.name())?;
        let dim = l1.dims()[l1.dims().len() - 1];
        let mut out = vec![0f32; ys.len()];
        out.par_chunks_mut(dim)
            .with_min_len(MIN_ROWS_PER_TASK)
            .zip(ys.par_chunks(dim))
            .zip(grad.par_chunks(dim))
            .for_each(|((dst, y), g)| {
                let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                for i in 0..dim {
                    dst[i] = y[i] * (g[i] - dot);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `x · Wᵀ` for `x` `[rows, in]` and `W` `[out, in]`, differentiable in whichever of the two
/// needs a gradient.
///
/// candle's `x.matmul(&W.t())` backward computes `dWᵀ = xᵀ · dy` and then copies it, transposed,
/// into `W`'s gradient element by element — 0.6–1.1 ms per dense layer at 224 rows, as long as
/// the product itself — and for a frozen `W` it still computes that product. Here the products
/// run on `W`'s own layout (a transpose is only a change of strides), `dW = dyᵀ · x` comes out
/// in `W`'s shape, and a frozen `W` costs no weight-gradient product.
pub fn linear(xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if !use_fused(xs) || xs.rank() != 2 || weight.rank() != 2 || weight.dtype() != DType::F32 {
        return Ok(xs.matmul(&weight.t()?)?);
    }
    let (xs, weight) = (xs.contiguous()?, weight.contiguous()?);
    Ok(if xs.track_op() || weight.track_op() {
        xs.apply_op2(&weight, LinearOp)?
    } else {
        xs.apply_op2_no_bwd(&weight, &LinearOp)?
    })
}

struct LinearOp;

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "attune-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let weight = contiguous_f32(s2, l2, self.name())?;
        let (rows, inputs) = l1.shape().dims2()?;
        let (outputs, weight_inputs) = l2.shape().dims2()?;
        if inputs != weight_inputs {
            candle_core::bail!(
                "linear: input {:?} and weight {:?} do not fit",
                l1.dims(),
                l2.dims()
            );
        }
        let ys = attune_kernels::matmul_f32(
            MatRef::row_major(xs, rows, inputs),
            MatRef::row_major(weight, outputs, inputs).t(),
        )
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(ys), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if xs.track_op() {
            Some(grad.matmul(weight)?)
        } else {
            None
        };
        let dw = if weight.track_op() {
            Some(grad.t()?.matmul(xs)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Elements per independently seeded dropout chunk (a multiple of 64: chunks own whole words of
/// the keep-bits).
const DROPOUT_CHUNK: usize = 1 << 15;

/// Dropout's keep-bits for `n` elements: bit `i` is set when element `i` survives (probability
/// `1 − p`). Each chunk of 32,768 elements draws from its own generator, seeded from
/// `seed` and the chunk index, so masks are made in parallel yet depend only on the seed; each
/// 64-bit draw decides two elements (its halves against `p · 2³²`).
pub fn dropout_keep_bits(n: usize, p: f64, seed: u64) -> Vec<u64> {
    let threshold = (p * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32;
    let mut bits = vec![0u64; n.div_ceil(64)];
    bits.par_chunks_mut(DROPOUT_CHUNK / 64)
        .enumerate()
        .for_each(|(chunk, words)| {
            let mut rng =
                SmallRng::seed_from_u64(seed ^ (chunk as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for word in words {
                let mut keep = 0u64;
                for pair in 0..32 {
                    let draw: u64 = rng.random();
                    let low = u64::from(draw as u32 >= threshold);
                    let high = u64::from((draw >> 32) as u32 >= threshold);
                    keep |= (low | high << 1) << (2 * pair);
                }
                *word = keep;
            }
        });
    bits
}

/// `xs · mask · scale` with the mask given as keep-bits ([`dropout_keep_bits`]), differentiable:
/// one pass each way, and the mask kept as bits (1/32 of an f32 mask) for the backward. The
/// composed form wrote an f32 mask, multiplied by it, and multiplied the gradient again.
pub fn dropout(xs: &Tensor, keep: Vec<u64>, scale: f32) -> Result<Tensor> {
    if keep.len() != xs.elem_count().div_ceil(64) {
        return Err(candle_core::Error::Msg(format!(
            "dropout: {} keep-bit words for {} elements",
            keep.len(),
            xs.elem_count()
        ))
        .into());
    }
    let op = DropoutOp { keep, scale };
    if !use_fused(xs) {
        let mask: Vec<f32> = (0..xs.elem_count()).map(|i| op.factor(i)).collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        return Ok(xs.mul(&mask)?);
    }
    let xs = xs.contiguous()?;
    Ok(if xs.track_op() {
        xs.apply_op1(op)?
    } else {
        xs.apply_op1_no_bwd(&op)?
    })
}

struct DropoutOp {
    keep: Vec<u64>,
    scale: f32,
}

impl DropoutOp {
    /// `scale` for a kept element, 0 for a dropped one.
    #[inline(always)]
    fn factor(&self, i: usize) -> f32 {
        if (self.keep[i / 64] >> (i % 64)) & 1 == 1 {
            self.scale
        } else {
            0.0
        }
    }
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "attune-dropout"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(DROPOUT_CHUNK)
            .zip(xs.par_chunks(DROPOUT_CHUNK))
            .enumerate()
            .for_each(|(chunk, (dst, src))| {
                let words = &self.keep[chunk * DROPOUT_CHUNK / 64..];
                for ((d64, s64), &word) in dst.chunks_mut(64).zip(src.chunks(64)).zip(words) {
                    for (bit, (d, &x)) in d64.iter_mut().zip(s64).enumerate() {
                        let kept = ((word >> bit) & 1) as f32;
                        *d = x * kept * self.scale;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// The same mask on the gradient.
    fn bwd(
        &self,
        _xs: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// `ys` (a product computed outside the graph) re-attached to `xs` through an op whose backward
/// is `dx = dy · W`: the gradient path of frozen and quantised dense layers.
pub(crate) fn attach_input_gradient(xs: &Tensor, ys: &Tensor, weight: Tensor) -> Result<Tensor> {
    Ok(xs.apply_op2(&ys.detach(), InputGradOnly { weight })?)
}

/// Forward: returns its second argument (the precomputed product). Backward: routes the
/// gradient to the first argument through the frozen weight.
struct InputGradOnly {
    weight: Tensor,
}

impl CustomOp2 for InputGradOnly {
    fn name(&self) -> &'static str {
        "attune-frozen-linear"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (s2, l2.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => Ok((
                CpuStorage::F32(data[start..end].to_vec()),
                l2.shape().clone(),
            )),
            (CpuStorage::F64(data), Some((start, end))) => Ok((
                CpuStorage::F64(data[start..end].to_vec()),
                l2.shape().clone(),
            )),
            _ => candle_core::bail!("frozen-linear: product must be contiguous f32 or f64"),
        }
    }

    fn bwd(
        &self,
        _xs: &Tensor,
        _ys: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.weight)?), None))
    }
}

/// `LayerNorm(x + residual + bias)`: the post-sublayer step of every BERT layer in one pass
/// (the plain formulation spends two extra full passes, forward and backward, on the adds).
/// `bias` is `None` when it was already added (before dropout, in training).
pub fn add_layer_norm(
    xs: &Tensor,
    residual: &Tensor,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if !use_fused(xs) {
        let sum = (xs + residual)?;
        let sum = match bias {
            Some(b) => sum.broadcast_add(b)?,
            None => sum,
        };
        return layer_norm(&sum, gamma, beta, eps);
    }
    let bias = match bias {
        Some(b) => b.clone(),
        None => gamma.zeros_like()?,
    };
    let params = Tensor::stack(&[&bias, gamma, beta], 0)?;
    Ok(xs.contiguous()?.apply_op3(
        &residual.contiguous()?,
        &params,
        AddLayerNormOp { eps: eps as f32 },
    )?)
}

struct AddLayerNormOp {
    eps: f32,
}

impl CustomOp3 for AddLayerNormOp {
    fn name(&self) -> &'static str {
        "attune-add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let residual = contiguous_f32(s2, l2, self.name())?;
        let params = contiguous_f32(s3, l3, self.name())?;
        let dim = params.len() / 3;
        if xs.len() != residual.len() || l1.dims()[l1.dims().len() - 1] != dim {
            candle_core::bail!(
                "add-layer-norm: shapes {:?}, {:?}, params {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let (bias, rest) = params.split_at(dim);
        let (gamma, beta) = rest.split_at(dim);
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(dim)
            .with_min_len(MIN_ROWS_PER_TASK)
            .zip(xs.par_chunks(dim))
            .zip(residual.par_chunks(dim))
            .for_each(|((dst, x), r)| {
                for i in 0..dim {
                    dst[i] = x[i] + r[i] + bias[i];
                }
                normalize_in_place(dst, gamma, beta, self.eps);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        residual: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let bias = params.get(0)?;
        let gamma = params.get(1)?;
        let sum = (xs + residual)?.broadcast_add(&bias)?;
        let dim = xs.dim(D::Minus1)?;
        let rows = xs.elem_count() / dim;
        let packed = sum.apply_op3_no_bwd(
            &gamma,
            &grad.contiguous()?,
            &LayerNormBwdOp { eps: self.eps },
        )?;
        let dsum = packed.narrow(0, 0, rows)?;
        let dbias = dsum.sum_keepdim(0)?;
        let dparams = Tensor::cat(&[&dbias, &packed.narrow(0, rows, 2)?], 0)?;
        let dsum = dsum.reshape(xs.shape())?;
        Ok((Some(dsum.clone()), Some(dsum), Some(dparams)))
    }
}

/// `GELU(x + bias)` with `bias` broadcast over rows: the feed-forward activation without a
/// separate bias pass.
pub fn bias_gelu(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !use_fused(xs) {
        return Ok(xs.broadcast_add(bias)?.gelu_erf()?);
    }
    Ok(xs
        .contiguous()?
        .apply_op2(&bias.contiguous()?, BiasGeluOp)?)
}

struct BiasGeluOp;

impl CustomOp2 for BiasGeluOp {
    fn name(&self) -> &'static str {
        "attune-bias-gelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let bias = contiguous_f32(s2, l2, self.name())?;
        let dim = bias.len();
        if l1.dims()[l1.dims().len() - 1] != dim {
            candle_core::bail!(
                "bias-gelu: rows of {:?} and bias of {dim} do not fit",
                l1.dims()
            );
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(dim)
            .with_min_len(MIN_ROWS_PER_TASK)
            .zip(xs.par_chunks(dim))
            .for_each(|(dst, row)| {
                for i in 0..dim {
                    let x = row[i] + bias[i];
                    dst[i] = 0.5 * x * (1.0 + erf_f32(x * FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let pre = xs.broadcast_add(bias)?;
        let dx = pre.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwdOp)?;
        let dim = bias.elem_count();
        let dbias = dx.reshape(((), dim))?.sum(0)?.reshape(bias.shape())?;
        Ok((Some(dx), Some(dbias)))
    }
}

/// Exact (erf) GELU, `0.5·x·(1 + erf(x/√2))`, HF's `"gelu"`.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if !use_fused(xs) {
        return Ok(xs.gelu_erf()?);
    }
    Ok(xs.contiguous()?.apply_op1(GeluOp)?)
}

/// erf for f32 by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the polynomial PyTorch's
/// vectorised CPU GELU uses. Branch-free apart from the sign, so LLVM vectorises the loops that
/// call it; candle's GELU calls a scalar f64 erf per element.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - poly * fast_exp(-a * a);
    y.copysign(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π), the standard normal density at 0.
const INV_SQRT_2PI: f32 = 0.398_942_3;

struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "attune-gelu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(storage, layout, self.name())?;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(4096)
            .zip(xs.par_chunks(4096))
            .for_each(|(dst, src)| {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = 0.5 * x * (1.0 + erf_f32(x * FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwdOp)?))
    }
}

/// `d/dx GELU(x) = Φ(x) + x·φ(x)`, times the upstream gradient.
struct GeluBwdOp;

impl CustomOp2 for GeluBwdOp {
    fn name(&self) -> &'static str {
        "attune-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = contiguous_f32(s1, l1, self.name())?;
        let grad = contiguous_f32(s2, l2, self.name())?;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(4096)
            .zip(xs.par_chunks(4096))
            .zip(grad.par_chunks(4096))
            .for_each(|((dst, x), g)| {
                for i in 0..dst.len() {
                    let cdf = 0.5 * (1.0 + erf_f32(x[i] * FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * fast_exp(-0.5 * x[i] * x[i]);
                    dst[i] = g[i] * (cdf + x[i] * pdf);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Rows of the output computed together in the attention products: 4 rows × 32 columns of
/// accumulators fit the 16 AVX2 registers with room for the operands.
const ATT_ROWS: usize = 4;
const ATT_COLS: usize = 32;

/// `q · kᵀ` for every (batch, head): `[b, h, q, d] × [b, h, s, d] → [b, h, q, s]`, at inference.
///
/// candle hands each of the b·h small products to its GEMM, which packs both operands and
/// splits every product across threads behind a barrier; here each thread takes whole
/// (batch, head) pairs and runs a register-blocked loop with no packing.
pub fn attention_scores(q: &Tensor, k: &Tensor) -> Result<Tensor> {
    let fits = q.rank() == 4
        && k.rank() == 4
        && q.dims()[..2] == k.dims()[..2]
        && q.dims()[3] == k.dims()[3];
    if q.track_op() || k.track_op() || !use_fused(q) || !fits {
        return Ok(q.matmul(&k.t()?)?);
    }
    Ok(q.contiguous()?.apply_op2_no_bwd(
        &k.contiguous()?,
        &AttentionProduct {
            transpose_rhs: true,
        },
    )?)
}

/// `p · v` for every (batch, head): `[b, h, q, s] × [b, h, s, d] → [b, h, q, d]`, at inference.
pub fn attention_context(p: &Tensor, v: &Tensor) -> Result<Tensor> {
    if p.track_op() || v.track_op() || !use_fused(p) {
        return Ok(p.matmul(v)?);
    }
    Ok(p.contiguous()?.apply_op2_no_bwd(
        &v.contiguous()?,
        &AttentionProduct {
            transpose_rhs: false,
        },
    )?)
}

struct AttentionProduct {
    transpose_rhs: bool,
}

/// `out[i, :] = Σ_t a[i, t] · b[t, :]` for `a` `[m, kk]`, `b` `[kk, n]` (row-major), rows in
/// blocks of 4 and columns in blocks of 32 held in registers.
fn small_matmul(a: &[f32], b: &[f32], m: usize, kk: usize, n: usize, out: &mut [f32]) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(ATT_ROWS);
        let mut j = 0;
        while j < n {
            let cols = (n - j).min(ATT_COLS);
            let mut acc = [[0f32; ATT_COLS]; ATT_ROWS];
            if cols == ATT_COLS && rows == ATT_ROWS {
                for t in 0..kk {
                    let brow: &[f32; ATT_COLS] = b[t * n + j..t * n + j + ATT_COLS]
                        .try_into()
                        .expect("32 columns");
                    for r in 0..ATT_ROWS {
                        let x = a[(i + r) * kk + t];
                        for c in 0..ATT_COLS {
                            acc[r][c] = x.mul_add(brow[c], acc[r][c]);
                        }
                    }
                }
            } else {
                for t in 0..kk {
                    for r in 0..rows {
                        let x = a[(i + r) * kk + t];
                        for c in 0..cols {
                            acc[r][c] = x.mul_add(b[t * n + j + c], acc[r][c]);
                        }
                    }
                }
            }
            for r in 0..rows {
                out[(i + r) * n + j..(i + r) * n + j + cols].copy_from_slice(&acc[r][..cols]);
            }
            j += ATT_COLS;
        }
        i += ATT_ROWS;
    }
}

impl CustomOp2 for AttentionProduct {
    fn name(&self) -> &'static str {
        "attune-attention-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let lhs = contiguous_f32(s1, l1, self.name())?;
        let rhs = contiguous_f32(s2, l2, self.name())?;
        let (b, h, m, kk) = l1.shape().dims4()?;
        let (rb, rh, r0, r1) = l2.shape().dims4()?;
        // scores: rhs is k [s, d], used transposed: n = s, inner = d.
        let (n, inner) = if self.transpose_rhs {
            (r0, r1)
        } else {
            (r1, r0)
        };
        if (rb, rh) != (b, h) || inner != kk {
            candle_core::bail!(
                "attention product: {:?} and {:?} do not fit",
                l1.dims(),
                l2.dims()
            );
        }
        let pairs = b * h;
        let mut out = vec![0f32; pairs * m * n];
        out.par_chunks_mut(m * n)
            .zip(lhs.par_chunks(m * kk).zip(rhs.par_chunks(r0 * r1)))
            .for_each(|(dst, (a, bm))| {
                if self.transpose_rhs {
                    // kᵀ once per pair ([d, s]), so the inner loop reads contiguous columns.
                    let mut transposed = vec![0f32; r0 * r1];
                    for row in 0..r0 {
                        for col in 0..r1 {
                            transposed[col * r0 + row] = bm[row * r1 + col];
                        }
                    }
                    small_matmul(a, &transposed, m, kk, n, dst);
                } else {
                    small_matmul(a, bm, m, kk, n, dst);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let rng = crate::params::SharedRng::new(seed);
        let n = shape.iter().product();
        Tensor::from_vec(rng.normal(n, 0.3, 1.5), shape, &Device::Cpu).unwrap()
    }

    fn var(shape: &[usize], seed: u64) -> Var {
        Var::from_tensor(&random(shape, seed)).unwrap()
    }

    #[test]
    fn attention_products_match_candle_matmul() {
        // Sizes off the 4-row and 32-column blocks as well as on them.
        for (b, h, s, d) in [(2, 3, 128, 32), (1, 2, 7, 5), (3, 1, 37, 33), (1, 1, 1, 1)] {
            let q = random(&[b, h, s, d], 1);
            let k = random(&[b, h, s, d], 2);
            // Tolerance relative to the largest expected value.
            let check = |got: Tensor, expected: Tensor, what: &str| {
                let scale = max_diff(&expected, &expected.zeros_like().unwrap());
                assert!(
                    max_diff(&got, &expected) <= 1e-5 * scale.max(1.0),
                    "{what} {b}x{h}x{s}x{d}"
                );
            };
            check(
                attention_scores(&q, &k).unwrap(),
                q.matmul(&k.t().unwrap()).unwrap(),
                "scores",
            );
            let p = random(&[b, h, s, s], 3);
            let v = random(&[b, h, s, d], 4);
            check(
                attention_context(&p, &v).unwrap(),
                p.matmul(&v).unwrap(),
                "context",
            );
        }
        // With a gradient to carry, candle's differentiable matmul runs instead.
        let q = var(&[1, 2, 5, 4], 5);
        let k = random(&[1, 2, 5, 4], 6);
        let grads = attention_scores(q.as_tensor(), &k)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(q.as_tensor()).is_some());
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn linear_matches_candle_matmul_and_skips_frozen_weights() {
        for (rows, inputs, outputs) in [(7, 5, 3), (224, 384, 1536), (1, 33, 17)] {
            let x = var(&[rows, inputs], 1);
            let w = var(&[outputs, inputs], 2);
            let scale = (inputs as f32).sqrt();
            assert_matches_composed(
                linear(x.as_tensor(), w.as_tensor()).unwrap(),
                x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(),
                &[("x", &x), ("w", &w)],
                1e-5 * scale * 10.0,
                1e-4 * (rows as f32).sqrt() * scale,
            );
        }
        // A frozen weight (a plain tensor) gets no gradient; the input still does.
        let x = var(&[4, 6], 3);
        let frozen = random(&[5, 6], 4);
        let grads = linear(x.as_tensor(), &frozen)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&frozen).is_none());
        let expected = Tensor::ones((4, 5), DType::F32, &Device::Cpu)
            .unwrap()
            .matmul(&frozen)
            .unwrap();
        assert!(max_diff(grads.get(x.as_tensor()).unwrap(), &expected) < 1e-5);
    }

    #[test]
    fn dropout_matches_multiplying_by_its_mask_and_drops_p() {
        let x = var(&[3, 1000, 37], 21);
        let keep = dropout_keep_bits(x.elem_count(), 0.1, 5);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|i| ((keep[i / 64] >> (i % 64)) & 1) as f32 / 0.9)
            .collect();
        let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
        // 111,000 Bernoulli(0.1) draws: standard deviation 0.0009.
        assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
        let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu).unwrap();
        assert_matches_composed(
            dropout(x.as_tensor(), keep.clone(), 1.0 / 0.9).unwrap(),
            x.as_tensor().mul(&mask).unwrap(),
            &[("x", &x)],
            1e-6,
            1e-6,
        );
        // Same seed, same mask; another seed, another mask.
        assert_eq!(keep, dropout_keep_bits(x.elem_count(), 0.1, 5));
        assert_ne!(keep, dropout_keep_bits(x.elem_count(), 0.1, 6));
        assert!(dropout(x.as_tensor(), vec![0; 3], 1.0).is_err());
    }

    /// A fused kernel must agree with candle's composed (differentiable) ops built from the same
    /// variables: in value within `fwd_tol`, and in the gradient of `Σ out · upstream` with
    /// respect to every variable within `bwd_tol`.
    fn assert_matches_composed(
        fused: Tensor,
        composed: Tensor,
        vars: &[(&str, &Var)],
        fwd_tol: f32,
        bwd_tol: f32,
    ) {
        let d = max_diff(&fused, &composed);
        assert!(d < fwd_tol, "forward differs by {d}");
        let upstream = random(fused.dims(), 99);
        let gf = (fused * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gc = (composed * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in vars {
            let d = max_diff(
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
            );
            assert!(d < bwd_tol, "{name} gradient differs by {d}");
        }
    }

    #[test]
    fn fused_layer_norm_matches_composed() {
        let (x, gamma, beta) = (var(&[3, 5, 24], 1), var(&[24], 2), var(&[24], 3));
        let (xt, gt, bt) = (x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
        assert_matches_composed(
            layer_norm(xt, gt, bt, 1e-12).unwrap(),
            candle_nn::ops::layer_norm_slow(xt, gt, bt, 1e-12).unwrap(),
            &[("x", &x), ("gamma", &gamma), ("beta", &beta)],
            1e-5,
            1e-4,
        );
    }

    #[test]
    fn add_layer_norm_matches_composed() {
        let (x, r, b) = (var(&[3, 4, 16], 21), var(&[3, 4, 16], 22), var(&[16], 23));
        let (gamma, beta) = (var(&[16], 24), var(&[16], 25));
        let (xt, rt, bt) = (x.as_tensor(), r.as_tensor(), b.as_tensor());
        let (gt, btt) = (gamma.as_tensor(), beta.as_tensor());
        let sum = (xt + rt).unwrap().broadcast_add(bt).unwrap();
        assert_matches_composed(
            add_layer_norm(xt, rt, Some(bt), gt, btt, 1e-12).unwrap(),
            candle_nn::ops::layer_norm_slow(&sum, gt, btt, 1e-12).unwrap(),
            &[
                ("x", &x),
                ("residual", &r),
                ("bias", &b),
                ("gamma", &gamma),
                ("beta", &beta),
            ],
            1e-5,
            1e-4,
        );
        let no_bias = add_layer_norm(xt, rt, None, gt, btt, 1e-12).unwrap();
        let plain = candle_nn::ops::layer_norm_slow(&(xt + rt).unwrap(), gt, btt, 1e-12).unwrap();
        assert!(max_diff(&no_bias, &plain) < 1e-5);
    }

    #[test]
    fn fused_gelu_matches_composed() {
        let x = Var::from_tensor(&(random(&[4, 1000], 7) * 2.0).unwrap()).unwrap();
        assert_matches_composed(
            gelu_erf(x.as_tensor()).unwrap(),
            x.as_tensor().gelu_erf().unwrap(),
            &[("x", &x)],
            1e-6,
            1e-5,
        );
    }

    #[test]
    fn bias_gelu_matches_composed() {
        let (x, b) = (var(&[5, 32], 27), var(&[32], 28));
        assert_matches_composed(
            bias_gelu(x.as_tensor(), b.as_tensor()).unwrap(),
            x.as_tensor()
                .broadcast_add(b.as_tensor())
                .unwrap()
                .gelu_erf()
                .unwrap(),
            &[("x", &x), ("bias", &b)],
            1e-6,
            1e-5,
        );
    }

    #[test]
    fn masked_softmax_matches_composed() {
        let x = var(&[2, 3, 5, 6], 9);
        let mask = Tensor::new(
            &[[0f32, 0., 0., 0., -1e9, -1e9], [0., 0., 0., 0., 0., 0.]],
            &Device::Cpu,
        )
        .unwrap();
        let scaled = (x.as_tensor() * 0.3).unwrap();
        let composed = candle_nn::ops::softmax(
            &scaled
                .broadcast_add(&mask.reshape((2, 1, 1, 6)).unwrap())
                .unwrap(),
            D::Minus1,
        )
        .unwrap();
        assert_matches_composed(
            masked_softmax(x.as_tensor(), &mask, 0.3).unwrap(),
            composed,
            &[("x", &x)],
            1e-6,
            1e-6,
        );
    }

    #[test]
    fn fast_exp_is_accurate_over_the_useful_range() {
        let mut worst = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let rel = ((fast_exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        // Masked scores give exact zeros, never subnormal numbers (see `fast_exp`).
        assert_eq!(fast_exp(-1e9), 0.0);
        assert_eq!(fast_exp(-87.01), 0.0);
        assert!(fast_exp(-86.99).is_normal());
    }
}
