//! Quantised matrix products for inference: `y = x Wᵀ + b` with `W` stored as int8 (one scale per
//! output row) or bf16, and `x` in f32.
//!
//! Why our own kernels: candle's GEMM has no int8 path, GGML's `QMatMul` (Q8_0) measured *slower*
//! than f32 for encoder-sized batches, and the `gemm` crate's AVX-512 and bf16 kernels need a
//! nightly compiler. The CPUs we serve on have AVX-512 VNNI (`vpdpbusd`: 64 u8×i8 products per
//! instruction, four times an f32 FMA's 16) and AVX512-BF16 (`vdpbf16ps`: 32 products).
//!
//! * **int8**: weights are quantised symmetrically per output row (`q = round(w / s)`,
//!   `s = max|w| / 127`); activations are quantised per row at run time, asymmetrically to u8
//!   (`a = round(x / s_x) + z`, with 0 exactly representable), which keeps GELU outputs (mostly
//!   positive) at full 8-bit resolution. The integer product is exact; the epilogue undoes the
//!   zero point with the weight row sums: `y = s_x s_w (Σ a q − z Σ q) + b`.
//! * **bf16**: weights and activations are rounded to bf16 (nearest even), products accumulate in
//!   f32.
//!
//! Each format has a SIMD path (chosen at run time from CPU features) and a portable path. For
//! int8 both compute the same integer sums, so tests compare them exactly before any rounding.
//!
//! It also wraps the `gemm` crate's f32 product (the one candle's matmul runs) behind a checked,
//! safe call, for custom ops that need a product on raw buffers.
#![allow(unsafe_code)] // SIMD intrinsics and raw-pointer loads (`x86`), the `gemm` call (`f32_product`).

mod bf16;
mod f32_product;
mod int8;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use bf16::{bf16_linear, bf16_to_f32, f32_to_bf16, Bf16Matrix};
pub use f32_product::{matmul_f32, MatRef};
pub use int8::{int8_linear, quantize_rows, Int8Matrix, QuantizedRows};

/// Output columns per SIMD block (one 512-bit register of f32 or i32).
pub(crate) const LANES: usize = 16;
/// Column blocks per micro-tile: packed weights are padded to a multiple of this many columns.
pub(crate) const PANEL: usize = 4 * LANES;
/// Rows per micro-tile (24 accumulators + 4 weight registers + 1 broadcast of the 32 available).
pub(crate) const TILE_ROWS: usize = 6;
/// Rows per parallel task: 16 tiles, so a task's activations (≤ 96 × 1536 bytes) stay in L2.
pub(crate) const TASK_ROWS: usize = 16 * TILE_ROWS;

/// Which implementation runs a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AVX-512 VNNI (int8) or AVX512-BF16 (bf16).
    Simd,
    /// Plain loops; any CPU.
    Portable,
}

impl Backend {
    /// The fastest backend this CPU runs for int8 products.
    pub fn best_int8() -> Self {
        if simd_int8_available() {
            Self::Simd
        } else {
            Self::Portable
        }
    }

    /// The fastest backend this CPU runs for bf16 products.
    pub fn best_bf16() -> Self {
        if simd_bf16_available() {
            Self::Simd
        } else {
            Self::Portable
        }
    }
}

/// Whether this CPU has the instructions the int8 SIMD kernel uses.
pub fn simd_int8_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has the instructions the bf16 SIMD kernel uses.
pub fn simd_bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Shape errors, named so the caller can say which layer was wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KernelError {
    /// A buffer's length does not match the dimensions given with it.
    #[error("{what}: expected {expected} values, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// The SIMD backend was asked for on a CPU without the instructions.
    #[error("this CPU lacks the instructions for the SIMD {0} kernel")]
    Unsupported(&'static str),
    /// A weight scale is negative, infinite or NaN.
    #[error("scale {index} is {value}; scales must be finite and non-negative")]
    BadScale { index: usize, value: f32 },
}

pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::Length {
            what,
            expected,
            got,
        })
    }
}

/// The bias (or zeros) padded to the packed weight's columns, so tiles read whole panels.
pub(crate) fn padded_bias(
    bias: Option<&[f32]>,
    n: usize,
    n_padded: usize,
) -> Result<Vec<f32>, KernelError> {
    let mut padded = match bias {
        Some(b) => {
            check_len("bias", n, b.len())?;
            b.to_vec()
        }
        None => Vec::new(),
    };
    padded.resize(n_padded, 0.0);
    Ok(padded)
}

pub(crate) fn round_up(value: usize, multiple: usize) -> usize {
    value.div_ceil(multiple) * multiple
}

/// Runs `tile(row_start, rows, out_rows)` over the output in parallel tasks of [`TASK_ROWS`]
/// rows; small products stay on the calling thread.
pub(crate) fn for_row_tasks(
    out: &mut [f32],
    m: usize,
    n: usize,
    work_per_row: usize,
    tile: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    use rayon::prelude::*;
    if m == 0 || n == 0 {
        return;
    }
    // Below ~1M multiply-adds a thread hand-off costs more than it saves.
    if m <= TASK_ROWS || m * work_per_row < 1 << 20 {
        tile(0, m, out);
        return;
    }
    out.par_chunks_mut(TASK_ROWS * n)
        .enumerate()
        .for_each(|(task, chunk)| tile(task * TASK_ROWS, chunk.len() / n, chunk));
}
