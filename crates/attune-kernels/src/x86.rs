//! AVX-512 micro-kernels. Each tile computes `TILE_ROWS × PANEL` outputs (6 × 64) in 24
//! accumulator registers: per step, four 64-byte weight loads and six 4-byte activation
//! broadcasts feed 24 dot-product instructions, so loads stay well below the dot-product rate.
use std::arch::x86_64::*;

use crate::bf16::{Bf16Matrix, Bf16Rows, PAIR};
use crate::int8::{Int8Matrix, QuantizedRows, GROUP};
use crate::{LANES, PANEL, TILE_ROWS};

/// 16-column blocks per tile.
const BLOCKS: usize = PANEL / LANES;

/// Lanes of column block `first_col..` that hold real outputs, as a store mask.
fn column_mask(valid_cols: usize, first_col: usize) -> __mmask16 {
    let valid = valid_cols.saturating_sub(first_col).min(LANES);
    ((1u32 << valid) - 1) as __mmask16
}

/// Rows `row0..row0 + count` of the int8 product into `out` (`count × n`).
pub(crate) fn int8_rows(
    rows: &QuantizedRows,
    weight: &Int8Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    assert!(
        crate::simd_int8_available(),
        "int8 SIMD kernel on a CPU without AVX-512 VNNI"
    );
    assert!(out.len() >= count * weight.rows() && bias.len() == weight.n_padded());
    assert!(rows.data.len() >= (row0 + count).next_multiple_of(TILE_ROWS) * weight.k_padded());
    // SAFETY: the CPU features were checked above. Every read stays inside buffers padded by
    // construction: activation rows to a whole tile and to `k_padded` columns, weights, scales,
    // row sums and bias to a whole panel of columns. Stores are masked to the `count × n` output.
    unsafe { int8_rows_avx512(rows, weight, bias, row0, count, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int8_rows_avx512(
    rows: &QuantizedRows,
    weight: &Int8Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    let n = weight.rows();
    let k_padded = weight.k_padded();
    let groups = k_padded / GROUP;
    let block_stride = groups * LANES * GROUP;
    for panel in (0..weight.n_padded()).step_by(PANEL) {
        let b = weight.packed.as_ptr().add(panel / LANES * block_stride);
        let valid_cols = n.saturating_sub(panel).min(PANEL);
        for t in (0..count).step_by(TILE_ROWS) {
            let r = row0 + t;
            int8_tile(
                rows.data.as_ptr().add(r * k_padded),
                k_padded,
                b,
                block_stride,
                groups,
                &rows.scales[r..],
                &rows.zeros[r..],
                panel,
                weight,
                bias,
                out.as_mut_ptr().add(t * n + panel),
                n,
                (count - t).min(TILE_ROWS),
                valid_cols,
            );
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int8_tile(
    a: *const u8,
    lda: usize,
    b: *const i8,
    block_stride: usize,
    groups: usize,
    row_scales: &[f32],
    row_zeros: &[i32],
    panel: usize,
    weight: &Int8Matrix,
    bias: &[f32],
    out: *mut f32,
    ldo: usize,
    valid_rows: usize,
    valid_cols: usize,
) {
    let mut acc = [[_mm512_setzero_si512(); BLOCKS]; TILE_ROWS];
    let mut bv = [_mm512_setzero_si512(); BLOCKS];
    for g in 0..groups {
        for j in 0..BLOCKS {
            bv[j] = _mm512_loadu_si512(b.add(j * block_stride + g * LANES * GROUP).cast());
        }
        for i in 0..TILE_ROWS {
            let av = _mm512_set1_epi32(a.add(i * lda + g * GROUP).cast::<i32>().read_unaligned());
            for j in 0..BLOCKS {
                acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, bv[j]);
            }
        }
    }
    for j in 0..BLOCKS {
        let col = j * LANES;
        if col >= valid_cols {
            break;
        }
        let mask = column_mask(valid_cols, col);
        let scales = _mm512_loadu_ps(weight.scales.as_ptr().add(panel + col));
        let sums = _mm512_loadu_si512(weight.row_sums.as_ptr().add(panel + col).cast());
        let bias = _mm512_loadu_ps(bias.as_ptr().add(panel + col));
        for i in 0..valid_rows {
            let zero_term = _mm512_mullo_epi32(_mm512_set1_epi32(row_zeros[i]), sums);
            let corrected = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], zero_term));
            let scaled = _mm512_mul_ps(corrected, _mm512_set1_ps(row_scales[i]));
            _mm512_mask_storeu_ps(
                out.add(i * ldo + col),
                mask,
                _mm512_fmadd_ps(scaled, scales, bias),
            );
        }
    }
}

/// Rows `row0..row0 + count` of the bf16 product into `out` (`count × n`).
pub(crate) fn bf16_rows(
    rows: &Bf16Rows,
    weight: &Bf16Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    assert!(
        crate::simd_bf16_available(),
        "bf16 SIMD kernel on a CPU without AVX512-BF16"
    );
    assert!(out.len() >= count * weight.rows() && bias.len() == weight.n_padded());
    assert!(rows.data.len() >= (row0 + count).next_multiple_of(TILE_ROWS) * weight.k_padded());
    // SAFETY: as for `int8_rows`: features checked, reads inside padded buffers, masked stores.
    unsafe { bf16_rows_avx512(rows, weight, bias, row0, count, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_rows_avx512(
    rows: &Bf16Rows,
    weight: &Bf16Matrix,
    bias: &[f32],
    row0: usize,
    count: usize,
    out: &mut [f32],
) {
    let n = weight.rows();
    let k_padded = weight.k_padded();
    let pairs = k_padded / PAIR;
    let block_stride = pairs * LANES * PAIR;
    for panel in (0..weight.n_padded()).step_by(PANEL) {
        let b = weight.packed.as_ptr().add(panel / LANES * block_stride);
        let valid_cols = n.saturating_sub(panel).min(PANEL);
        for t in (0..count).step_by(TILE_ROWS) {
            bf16_tile(
                rows.data.as_ptr().add((row0 + t) * k_padded),
                k_padded,
                b,
                block_stride,
                pairs,
                bias.as_ptr().add(panel),
                out.as_mut_ptr().add(t * n + panel),
                n,
                (count - t).min(TILE_ROWS),
                valid_cols,
            );
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_tile(
    a: *const u16,
    lda: usize,
    b: *const u16,
    block_stride: usize,
    pairs: usize,
    bias: *const f32,
    out: *mut f32,
    ldo: usize,
    valid_rows: usize,
    valid_cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); BLOCKS]; TILE_ROWS];
    let mut bv = [_mm512_setzero_si512(); BLOCKS];
    for p in 0..pairs {
        for j in 0..BLOCKS {
            bv[j] = _mm512_loadu_si512(b.add(j * block_stride + p * LANES * PAIR).cast());
        }
        for i in 0..TILE_ROWS {
            let av = _mm512_set1_epi32(a.add(i * lda + p * PAIR).cast::<i32>().read_unaligned());
            for j in 0..BLOCKS {
                acc[i][j] = _mm512_dpbf16_ps(
                    acc[i][j],
                    std::mem::transmute::<__m512i, __m512bh>(av),
                    std::mem::transmute::<__m512i, __m512bh>(bv[j]),
                );
            }
        }
    }
    for j in 0..BLOCKS {
        let col = j * LANES;
        if col >= valid_cols {
            break;
        }
        let mask = column_mask(valid_cols, col);
        let bias = _mm512_loadu_ps(bias.add(col));
        for i in 0..valid_rows {
            _mm512_mask_storeu_ps(out.add(i * ldo + col), mask, _mm512_add_ps(acc[i][j], bias));
        }
    }
}
