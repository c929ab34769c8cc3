//! int8 weights × dynamically quantised u8 activations → f32.
use rayon::prelude::*;

use crate::{check_len, for_row_tasks, round_up, Backend, KernelError, LANES, PANEL, TILE_ROWS};

/// Products per 32-bit lane of `vpdpbusd`: the reduction dimension is padded to a multiple.
pub(crate) const GROUP: usize = 4;

/// A weight matrix `[n, k]` (PyTorch's `[out, in]`), quantised to int8 per output row and packed
/// for the kernel: 16 output columns × 4 consecutive inputs per 64-byte block.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    n: usize,
    k: usize,
    k_padded: usize,
    /// `[n_padded / 16][k_padded / 4][16][4]`, zeros in the padding.
    pub(crate) packed: Vec<i8>,
    /// Per output row, `n_padded` long (zeros in the padding).
    pub(crate) scales: Vec<f32>,
    /// `Σ_k q[row, k]` per output row: the zero-point correction.
    pub(crate) row_sums: Vec<i32>,
}

impl Int8Matrix {
    /// Quantises `weight` (`[n, k]`, row-major) with one symmetric scale per row,
    /// `max|w| / 127`, rounding to nearest (ties to even).
    pub fn quantize(weight: &[f32], n: usize, k: usize) -> Result<Self, KernelError> {
        check_len("weight", n * k, weight.len())?;
        let mut scales = vec![0f32; n];
        for (row, src) in weight.chunks_exact(k.max(1)).take(n).enumerate() {
            let max_abs = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            if !max_abs.is_finite() || src.iter().any(|v| v.is_nan()) {
                return Err(KernelError::BadScale {
                    index: row,
                    value: max_abs,
                });
            }
            scales[row] = max_abs / 127.0;
        }
        Self::quantize_with_scales(weight, &scales, n, k)
    }

    /// Quantises `weight` (`[n, k]`, row-major) with given per-row steps: `q = round(w / s)`
    /// (ties to even, clamped to ±127). Reloading a saved model this way from its dequantised
    /// weights and stored scales recovers the stored integers exactly.
    pub fn quantize_with_scales(
        weight: &[f32],
        scales: &[f32],
        n: usize,
        k: usize,
    ) -> Result<Self, KernelError> {
        check_len("weight", n * k, weight.len())?;
        check_len("int8 weight scales", n, scales.len())?;
        let mut quantized = vec![0i8; n * k];
        for ((dst, src), &scale) in quantized
            .chunks_exact_mut(k.max(1))
            .zip(weight.chunks_exact(k.max(1)))
            .zip(scales)
        {
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in dst.iter_mut().zip(src) {
                *q = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
        Self::from_quantized(&quantized, scales, n, k)
    }

    /// Packs already-quantised weights (`[n, k]` row-major) with their per-row scales, as read
    /// back from a checkpoint.
    pub fn from_quantized(
        quantized: &[i8],
        scales: &[f32],
        n: usize,
        k: usize,
    ) -> Result<Self, KernelError> {
        check_len("int8 weight", n * k, quantized.len())?;
        check_len("int8 weight scales", n, scales.len())?;
        if let Some((index, &value)) = scales
            .iter()
            .enumerate()
            .find(|(_, s)| !s.is_finite() || **s < 0.0)
        {
            return Err(KernelError::BadScale { index, value });
        }
        let k_padded = round_up(k, GROUP);
        let n_padded = round_up(n, PANEL);
        let groups = k_padded / GROUP;
        let mut packed = vec![0i8; n_padded * k_padded];
        let mut row_sums = vec![0i32; n_padded];
        for row in 0..n {
            let (block, lane) = (row / LANES, row % LANES);
            for col in 0..k {
                let (group, offset) = (col / GROUP, col % GROUP);
                let value = quantized[row * k + col];
                packed[((block * groups + group) * LANES + lane) * GROUP + offset] = value;
                row_sums[row] += i32::from(value);
            }
        }
        let mut padded_scales = scales.to_vec();
        padded_scales.resize(n_padded, 0.0);
        Ok(Self {
            n,
            k,
            k_padded,
            packed,
            scales: padded_scales,
            row_sums,
        })
    }

    /// Output features (`n`).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Input features (`k`).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Per-row scales, `n` long.
    pub fn scales(&self) -> &[f32] {
        &self.scales[..self.n]
    }

    /// The quantised weights unpacked to `[n, k]` row-major (for saving).
    pub fn quantized(&self) -> Vec<i8> {
        let groups = self.k_padded / GROUP;
        let mut out = vec![0i8; self.n * self.k];
        for row in 0..self.n {
            let (block, lane) = (row / LANES, row % LANES);
            for col in 0..self.k {
                let (group, offset) = (col / GROUP, col % GROUP);
                out[row * self.k + col] =
                    self.packed[((block * groups + group) * LANES + lane) * GROUP + offset];
            }
        }
        out
    }

    /// `q · s` as f32 `[n, k]`: what the product computes with, for gradients and checks.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out: Vec<f32> = self.quantized().into_iter().map(f32::from).collect();
        for (row, chunk) in out.chunks_exact_mut(self.k.max(1)).enumerate() {
            let scale = self.scales[row];
            chunk.iter_mut().for_each(|v| *v *= scale);
        }
        out
    }

    /// Bytes held (packed weights and per-row data).
    pub fn bytes(&self) -> usize {
        self.packed.len() + 8 * self.scales.len()
    }

    pub(crate) fn k_padded(&self) -> usize {
        self.k_padded
    }

    pub(crate) fn n_padded(&self) -> usize {
        self.scales.len()
    }
}

/// Activations quantised per row to u8 with a zero point: `x ≈ s · (a − z)`.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    /// `[m_padded][k_padded]`; rows padded to a whole tile, columns to a group of 4 (zeros).
    pub(crate) data: Vec<u8>,
    pub(crate) scales: Vec<f32>,
    pub(crate) zeros: Vec<i32>,
    pub(crate) k_padded: usize,
}

impl QuantizedRows {
    /// Row `r`'s quantised values (`k_padded` long), scale and zero point.
    pub fn row(&self, r: usize) -> (&[u8], f32, i32) {
        (
            &self.data[r * self.k_padded..(r + 1) * self.k_padded],
            self.scales[r],
            self.zeros[r],
        )
    }
}

/// 1.5·2²³: adding it to a float in `[0, 2²²)` rounds it to an integer (ties to even) held in
/// the low mantissa bits, so the low byte of the sum's bits is the u8 value — a conversion that
/// vectorises, unlike Rust's saturating `as u8`.
const MAGIC: f32 = 12_582_912.0;

/// Row minimum and maximum with 16 independent lanes (a single running min/max is a serial
/// dependency that does not vectorise); 0 is always included.
fn row_range(src: &[f32]) -> (f32, f32) {
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    let chunks = src.chunks_exact(16);
    let (mut rest_lo, mut rest_hi) = (0f32, 0f32);
    // Comparisons rather than `f32::min`/`max`, whose NaN rules cost extra instructions per
    // lane; a NaN input then simply does not move the range.
    for &v in chunks.remainder() {
        rest_lo = if v < rest_lo { v } else { rest_lo };
        rest_hi = if v > rest_hi { v } else { rest_hi };
    }
    for chunk in chunks {
        for i in 0..16 {
            lo[i] = if chunk[i] < lo[i] { chunk[i] } else { lo[i] };
            hi[i] = if chunk[i] > hi[i] { chunk[i] } else { hi[i] };
        }
    }
    (
        lo.iter().copied().fold(rest_lo, f32::min),
        hi.iter().copied().fold(rest_hi, f32::max),
    )
}

fn quantize_row(src: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let (lo, hi) = row_range(src);
    let range = hi - lo;
    if range <= 0.0 || !range.is_finite() {
        dst.fill(0);
        return (1.0, 0);
    }
    let scale = range / 255.0;
    let inverse = 1.0 / scale;
    let zero = (-lo * inverse).round_ties_even().clamp(0.0, 255.0);
    for (q, &v) in dst.iter_mut().zip(src) {
        *q = ((v * inverse + zero).clamp(0.0, 255.0) + MAGIC).to_bits() as u8;
    }
    (scale, zero as i32)
}

/// Quantises `x` (`[m, k]` row-major) per row: `s = (max − min) / 255` over the row with 0
/// included in the range (so 0 and padding are exact), `z = round(−min / s)`.
pub fn quantize_rows(x: &[f32], m: usize, k: usize) -> Result<QuantizedRows, KernelError> {
    check_len("activations", m * k, x.len())?;
    let k_padded = round_up(k, GROUP);
    let m_padded = round_up(m, TILE_ROWS);
    let mut data = vec![0u8; m_padded * k_padded];
    let mut params = vec![(1f32, 0i32); m_padded];
    if k > 0 {
        let quantize = |((dst, src), p): ((&mut [u8], &[f32]), &mut (f32, i32))| {
            *p = quantize_row(src, &mut dst[..k]);
        };
        if m * k >= 1 << 16 {
            data.par_chunks_exact_mut(k_padded)
                .zip(x.par_chunks_exact(k))
                .zip(params.par_iter_mut())
                .for_each(quantize);
        } else {
            data.chunks_exact_mut(k_padded)
                .zip(x.chunks_exact(k))
                .zip(params.iter_mut())
                .for_each(quantize);
        }
    }
    let (scales, zeros) = params.into_iter().unzip();
    Ok(QuantizedRows {
        data,
        scales,
        zeros,
        k_padded,
    })
}

/// `out = x Wᵀ + bias` with `W` int8 and `x` quantised per row on the fly. `x` is `[m, k]`,
/// `out` `[m, n]`, both row-major.
pub fn int8_linear(
    x: &[f32],
    m: usize,
    weight: &Int8Matrix,
    bias: Option<&[f32]>,
    out: &mut [f32],
    backend: Backend,
) -> Result<(), KernelError> {
    let (n, k) = (weight.n, weight.k);
    check_len("output", m * n, out.len())?;
    let padded_bias = crate::padded_bias(bias, n, weight.n_padded())?;
    if backend == Backend::Simd && !crate::simd_int8_available() {
        return Err(KernelError::Unsupported("int8"));
    }
    let rows = quantize_rows(x, m, k)?;
    for_row_tasks(out, m, n, n * k, |row0, count, chunk| match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::Simd => crate::x86::int8_rows(&rows, weight, &padded_bias, row0, count, chunk),
        _ => portable_rows(&rows, weight, &padded_bias, row0, count, chunk),
    });
    Ok(())
}

/// The same integer sums and epilogue as the SIMD kernel, in plain loops over the packed layout:
/// 16 column accumulators per block, which compilers vectorise on any SIMD width. Integer sums
/// do not depend on order, so the result equals the SIMD kernel's.
fn portable_rows(
    rows: &QuantizedRows,
    weight: &Int8Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    let n = weight.n;
    let groups = weight.k_padded / GROUP;
    let block_len = groups * LANES * GROUP;
    for r in 0..count {
        let (a, scale, zero) = rows.row(row0 + r);
        for (block, packed) in weight.packed.chunks_exact(block_len).enumerate() {
            let first = block * LANES;
            if first >= n {
                break;
            }
            let mut acc = [0i32; LANES];
            for (g, group) in packed.chunks_exact(LANES * GROUP).enumerate() {
                let x = &a[g * GROUP..(g + 1) * GROUP];
                for (lane, w) in acc.iter_mut().zip(group.chunks_exact(GROUP)) {
                    *lane += (0..GROUP)
                        .map(|o| i32::from(x[o]) * i32::from(w[o]))
                        .sum::<i32>();
                }
            }
            for (lane, &sum) in acc.iter().enumerate().take(n - first) {
                let col = first + lane;
                let corrected = (sum - zero * weight.row_sums[col]) as f32;
                out[r * n + col] = (corrected * scale).mul_add(weight.scales[col], bias[col]);
            }
        }
    }
}
