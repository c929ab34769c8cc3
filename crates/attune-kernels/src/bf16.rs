//! bf16 weights × bf16-rounded activations, accumulated in f32.
use rayon::prelude::*;

use crate::{check_len, for_row_tasks, round_up, Backend, KernelError, LANES, PANEL, TILE_ROWS};

/// Products per 32-bit lane of `vdpbf16ps`: the reduction dimension is padded to a multiple.
pub(crate) const PAIR: usize = 2;

/// Rounds to the nearest bf16 (ties to even), as `vcvtneps2bf16` does; NaN stays NaN.
pub fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// Widens a bf16 to f32 (exact).
pub fn bf16_to_f32(value: u16) -> f32 {
    f32::from_bits(u32::from(value) << 16)
}

/// A weight matrix `[n, k]` in bf16, packed 16 output columns × 2 inputs per 64-byte block.
#[derive(Debug, Clone)]
pub struct Bf16Matrix {
    n: usize,
    k: usize,
    k_padded: usize,
    /// `[n_padded / 16][k_padded / 2][16][2]`, zeros in the padding.
    pub(crate) packed: Vec<u16>,
}

impl Bf16Matrix {
    /// Rounds `weight` (`[n, k]` row-major, f32) to bf16.
    pub fn from_f32(weight: &[f32], n: usize, k: usize) -> Result<Self, KernelError> {
        check_len("weight", n * k, weight.len())?;
        let bits: Vec<u16> = weight.iter().map(|&v| f32_to_bf16(v)).collect();
        Self::from_bf16(&bits, n, k)
    }

    /// Packs bf16 bit patterns (`[n, k]` row-major), as read back from a checkpoint.
    pub fn from_bf16(bits: &[u16], n: usize, k: usize) -> Result<Self, KernelError> {
        check_len("bf16 weight", n * k, bits.len())?;
        let k_padded = round_up(k, PAIR);
        let n_padded = round_up(n, PANEL);
        let pairs = k_padded / PAIR;
        let mut packed = vec![0u16; n_padded * k_padded];
        for row in 0..n {
            let (block, lane) = (row / LANES, row % LANES);
            for col in 0..k {
                let (pair, offset) = (col / PAIR, col % PAIR);
                packed[((block * pairs + pair) * LANES + lane) * PAIR + offset] =
                    bits[row * k + col];
            }
        }
        Ok(Self {
            n,
            k,
            k_padded,
            packed,
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

    /// The bf16 bit patterns unpacked to `[n, k]` row-major (for saving).
    pub fn to_bf16(&self) -> Vec<u16> {
        let pairs = self.k_padded / PAIR;
        let mut out = vec![0u16; self.n * self.k];
        for row in 0..self.n {
            let (block, lane) = (row / LANES, row % LANES);
            for col in 0..self.k {
                let (pair, offset) = (col / PAIR, col % PAIR);
                out[row * self.k + col] =
                    self.packed[((block * pairs + pair) * LANES + lane) * PAIR + offset];
            }
        }
        out
    }

    /// The weights widened to f32 `[n, k]`: what the product computes with.
    pub fn to_f32(&self) -> Vec<f32> {
        self.to_bf16().into_iter().map(bf16_to_f32).collect()
    }

    /// Bytes held by the packed weights.
    pub fn bytes(&self) -> usize {
        2 * self.packed.len()
    }

    pub(crate) fn k_padded(&self) -> usize {
        self.k_padded
    }

    pub(crate) fn n_padded(&self) -> usize {
        self.packed.len() / self.k_padded.max(1)
    }
}

/// Activations rounded to bf16, `[m_padded][k_padded]` (zeros in the padding).
pub(crate) struct Bf16Rows {
    pub(crate) data: Vec<u16>,
    pub(crate) k_padded: usize,
}

fn round_rows(x: &[f32], m: usize, k: usize) -> Bf16Rows {
    let k_padded = round_up(k, PAIR);
    let mut data = vec![0u16; round_up(m, TILE_ROWS) * k_padded];
    if k > 0 {
        let convert = |(dst, src): (&mut [u16], &[f32])| {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32_to_bf16(s);
            }
        };
        if m * k >= 1 << 16 {
            data.par_chunks_exact_mut(k_padded)
                .zip(x.par_chunks_exact(k))
                .for_each(convert);
        } else {
            data.chunks_exact_mut(k_padded)
                .zip(x.chunks_exact(k))
                .for_each(convert);
        }
    }
    Bf16Rows { data, k_padded }
}

/// `out = x Wᵀ + bias` with `W` and `x` in bf16, sums in f32. `x` is `[m, k]`, `out` `[m, n]`.
pub fn bf16_linear(
    x: &[f32],
    m: usize,
    weight: &Bf16Matrix,
    bias: Option<&[f32]>,
    out: &mut [f32],
    backend: Backend,
) -> Result<(), KernelError> {
    let (n, k) = (weight.n, weight.k);
    check_len("activations", m * k, x.len())?;
    check_len("output", m * n, out.len())?;
    let padded_bias = crate::padded_bias(bias, n, weight.n_padded())?;
    if backend == Backend::Simd && !crate::simd_bf16_available() {
        return Err(KernelError::Unsupported("bf16"));
    }
    let rows = round_rows(x, m, k);
    for_row_tasks(out, m, n, n * k, |row0, count, chunk| match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::Simd => crate::x86::bf16_rows(&rows, weight, &padded_bias, row0, count, chunk),
        _ => portable_rows(&rows, weight, &padded_bias, row0, count, chunk),
    });
    Ok(())
}

/// Plain loops over the packed layout with 16 column accumulators per block, which compilers
/// vectorise on any SIMD width.
fn portable_rows(
    rows: &Bf16Rows,
    weight: &Bf16Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    let n = weight.n;
    let pairs = weight.k_padded / PAIR;
    let block_len = pairs * LANES * PAIR;
    for r in 0..count {
        let a = &rows.data[(row0 + r) * rows.k_padded..][..rows.k_padded];
        for (block, packed) in weight.packed.chunks_exact(block_len).enumerate() {
            let first = block * LANES;
            if first >= n {
                break;
            }
            let mut acc = [0f32; LANES];
            for (p, pair) in packed.chunks_exact(LANES * PAIR).enumerate() {
                let (x0, x1) = (bf16_to_f32(a[p * PAIR]), bf16_to_f32(a[p * PAIR + 1]));
                for (lane, w) in acc.iter_mut().zip(pair.chunks_exact(PAIR)) {
                    *lane = x1.mul_add(bf16_to_f32(w[1]), x0.mul_add(bf16_to_f32(w[0]), *lane));
                }
            }
            for (lane, &sum) in acc.iter().enumerate().take(n - first) {
                out[r * n + first + lane] = sum + bias[first + lane];
            }
        }
    }
}
