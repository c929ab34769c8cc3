//! The quantised products against an f64 reference product, with error bounds derived from the
//! quantisation steps (so they hold for every input, not just typical ones), and the SIMD kernels
//! against the portable ones.
use attune_kernels::{
    bf16_linear, bf16_to_f32, f32_to_bf16, int8_linear, matmul_f32, quantize_rows, Backend,
    Bf16Matrix, Int8Matrix, KernelError, MatRef,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Shapes that exercise every padding path: rows not a multiple of the 6-row tile or of the
/// 96-row task, reductions not a multiple of 4, outputs not a multiple of 16 or 64, and the
/// encoder's real sizes (384 → 1536 at 4 096 rows goes through the parallel path).
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (7, 3, 2),
    (13, 5, 17),
    (100, 30, 65),
    (97, 384, 384),
    (33, 1536, 384),
    (250, 384, 1536),
    (4096, 384, 384),
    (6, 64, 130),
];

/// Values concentrated near 0 with 2 % outliers six times larger, like trained weights and
/// BERT activations (whose outliers set the per-row quantisation step).
fn random(rng: &mut SmallRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let u: f32 = rng.random_range(-1.0..1.0);
            scale * u * u * u.signum() * if rng.random_bool(0.02) { 6.0 } else { 1.0 }
        })
        .collect()
}

/// Approximately Gaussian values (sum of four uniforms), without outliers.
fn smooth(rng: &mut SmallRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (0..4).map(|_| rng.random_range(-0.5f32..0.5)).sum::<f32>())
        .collect()
}

fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for r in 0..m {
        for c in 0..n {
            let dot: f64 = (0..k)
                .map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i]))
                .sum();
            out[r * n + c] = dot + f64::from(bias[c]);
        }
    }
    out
}

fn backends(simd_available: bool) -> Vec<Backend> {
    if simd_available {
        vec![Backend::Portable, Backend::Simd]
    } else {
        eprintln!("note: CPU lacks the SIMD instructions; only the portable path is checked");
        vec![Backend::Portable]
    }
}

#[test]
fn int8_product_is_within_its_quantisation_bound() {
    let mut rng = SmallRng::seed_from_u64(7);
    for (m, k, n) in SHAPES {
        let x = random(&mut rng, m * k, 2.0);
        let w = random(&mut rng, n * k, 0.1);
        let bias = random(&mut rng, n, 0.5);
        let exact = reference(&x, &w, &bias, m, k, n);
        let weight = Int8Matrix::quantize(&w, n, k).unwrap();
        let rows = quantize_rows(&x, m, k).unwrap();
        for backend in backends(attune_kernels::simd_int8_available()) {
            let mut out = vec![f32::NAN; m * n];
            int8_linear(&x, m, &weight, Some(&bias), &mut out, backend).unwrap();
            for r in 0..m {
                let (_, x_scale, _) = rows.row(r);
                for c in 0..n {
                    let w_scale = weight.scales()[c];
                    // |x̂ŵ − xw| ≤ |x|·|ŵ − w| + |ŵ|·|x̂ − x| with steps s_w/2 and s_x/2, plus
                    // f32 rounding of the epilogue.
                    let bound: f64 = (0..k)
                        .map(|i| {
                            let (xv, wv) = (x[r * k + i].abs(), w[c * k + i].abs());
                            f64::from(xv * w_scale / 2.0 + (wv + w_scale / 2.0) * x_scale / 2.0)
                        })
                        .sum::<f64>()
                        + 1e-5 * exact[r * n + c].abs()
                        + 1e-6;
                    let got = f64::from(out[r * n + c]);
                    assert!(
                        (got - exact[r * n + c]).abs() <= bound,
                        "{backend:?} {m}x{k}x{n} at ({r},{c}): {got} vs {} (bound {bound})",
                        exact[r * n + c]
                    );
                }
            }
        }
    }
}

#[test]
fn int8_typical_error_is_small() {
    // The bound above is worst-case; on Gaussian-like data the error is far smaller (≈ 0.5 %
    // expected from the two 8-bit steps). A kernel that, say, mishandled the zero point would
    // fail here by orders of magnitude.
    let mut rng = SmallRng::seed_from_u64(11);
    let (m, k, n) = (64, 384, 384);
    let x = smooth(&mut rng, m * k, 2.0);
    let w = smooth(&mut rng, n * k, 0.1);
    let bias = vec![0.0; n];
    let exact = reference(&x, &w, &bias, m, k, n);
    let weight = Int8Matrix::quantize(&w, n, k).unwrap();
    let mut out = vec![0f32; m * n];
    int8_linear(&x, m, &weight, None, &mut out, Backend::best_int8()).unwrap();
    let err: f64 = out
        .iter()
        .zip(&exact)
        .map(|(&o, &e)| (f64::from(o) - e).powi(2))
        .sum();
    let norm: f64 = exact.iter().map(|e| e * e).sum();
    let relative = (err / norm).sqrt();
    assert!(relative < 0.02, "relative RMS error {relative}");
}

#[test]
fn int8_simd_and_portable_compute_the_same_sums() {
    if !attune_kernels::simd_int8_available() {
        eprintln!("note: no AVX-512 VNNI; nothing to compare");
        return;
    }
    let mut rng = SmallRng::seed_from_u64(3);
    for (m, k, n) in SHAPES {
        let x = random(&mut rng, m * k, 3.0);
        let w = random(&mut rng, n * k, 0.2);
        let bias = random(&mut rng, n, 0.5);
        let weight = Int8Matrix::quantize(&w, n, k).unwrap();
        let mut simd = vec![0f32; m * n];
        let mut portable = vec![0f32; m * n];
        int8_linear(&x, m, &weight, Some(&bias), &mut simd, Backend::Simd).unwrap();
        int8_linear(
            &x,
            m,
            &weight,
            Some(&bias),
            &mut portable,
            Backend::Portable,
        )
        .unwrap();
        // Same integer sums and the same epilogue operations: identical up to the last ulp.
        for (i, (s, p)) in simd.iter().zip(&portable).enumerate() {
            assert!(
                (s - p).abs() <= 1e-6 * p.abs().max(1e-3),
                "{m}x{k}x{n} at {i}: {s} vs {p}"
            );
        }
    }
}

#[test]
fn bf16_product_is_within_its_rounding_bound() {
    let mut rng = SmallRng::seed_from_u64(5);
    for (m, k, n) in SHAPES {
        let x = random(&mut rng, m * k, 2.0);
        let w = random(&mut rng, n * k, 0.1);
        let bias = random(&mut rng, n, 0.5);
        let exact = reference(&x, &w, &bias, m, k, n);
        let weight = Bf16Matrix::from_f32(&w, n, k).unwrap();
        for backend in backends(attune_kernels::simd_bf16_available()) {
            let mut out = vec![f32::NAN; m * n];
            bf16_linear(&x, m, &weight, Some(&bias), &mut out, backend).unwrap();
            for r in 0..m {
                for c in 0..n {
                    // Each operand is off by at most 2⁻⁸ relative (8 significant bits, nearest);
                    // f32 accumulation adds k·2⁻²⁴ relative to Σ|xw|.
                    let magnitude: f64 = (0..k)
                        .map(|i| f64::from(x[r * k + i].abs() * w[c * k + i].abs()))
                        .sum();
                    let bound = magnitude
                        * (2.0 * 2f64.powi(-8) + 2f64.powi(-16) + k as f64 * 2f64.powi(-24))
                        + 1e-6 * (1.0 + f64::from(bias[c].abs()));
                    let got = f64::from(out[r * n + c]);
                    assert!(
                        (got - exact[r * n + c]).abs() <= bound,
                        "{backend:?} {m}x{k}x{n} at ({r},{c}): {got} vs {} (bound {bound})",
                        exact[r * n + c]
                    );
                }
            }
        }
    }
}

#[test]
fn stored_forms_round_trip() {
    let mut rng = SmallRng::seed_from_u64(9);
    let (n, k) = (70, 37);
    let w = random(&mut rng, n * k, 0.3);
    let int8 = Int8Matrix::quantize(&w, n, k).unwrap();
    let again = Int8Matrix::from_quantized(&int8.quantized(), int8.scales(), n, k).unwrap();
    assert_eq!(int8.quantized(), again.quantized());
    for (row, (deq, orig)) in int8.dequantize().chunks(k).zip(w.chunks(k)).enumerate() {
        let step = int8.scales()[row];
        for (d, o) in deq.iter().zip(orig) {
            assert!((d - o).abs() <= step / 2.0 + 1e-7, "row {row}: {d} vs {o}");
        }
    }
    let bf16 = Bf16Matrix::from_f32(&w, n, k).unwrap();
    let bits = bf16.to_bf16();
    assert_eq!(Bf16Matrix::from_bf16(&bits, n, k).unwrap().to_bf16(), bits);
    for (d, o) in bf16.to_f32().iter().zip(&w) {
        assert!((d - o).abs() <= o.abs() * 2f32.powi(-8), "{d} vs {o}");
    }
}

#[test]
fn bf16_rounding_is_to_nearest_even() {
    // 1 + 2⁻⁸ lies halfway between bf16 neighbours 1 and 1 + 2⁻⁷: ties go to the even one (1).
    assert!((bf16_to_f32(f32_to_bf16(1.0 + 2f32.powi(-8))) - 1.0).abs() < 1e-9);
    // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
    let up = bf16_to_f32(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)));
    assert!((up - (1.0 + 2f32.powi(-6))).abs() < 1e-9, "{up}");
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    assert!(bf16_to_f32(f32_to_bf16(f32::INFINITY)).is_infinite());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let w = vec![0.5f32; 12];
    let weight = Int8Matrix::quantize(&w, 3, 4).unwrap();
    let mut out = vec![0f32; 6];
    assert_eq!(
        int8_linear(&[0.0; 7], 2, &weight, None, &mut out, Backend::Portable),
        Err(KernelError::Length {
            what: "activations",
            expected: 8,
            got: 7
        })
    );
    assert!(matches!(
        int8_linear(
            &[0.0; 8],
            2,
            &weight,
            Some(&[0.0; 2]),
            &mut out,
            Backend::Portable
        ),
        Err(KernelError::Length { what: "bias", .. })
    ));
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        Int8Matrix::quantize(&nan, 3, 4),
        Err(KernelError::BadScale { index: 1, .. })
    ));
    assert!(matches!(
        Int8Matrix::from_quantized(&[0; 12], &[1.0, -1.0, 1.0], 3, 4),
        Err(KernelError::BadScale { index: 1, .. })
    ));
    let bf16 = Bf16Matrix::from_f32(&w, 3, 4).unwrap();
    assert!(matches!(
        bf16_linear(&[0.0; 8], 2, &bf16, None, &mut [0.0; 5], Backend::Portable),
        Err(KernelError::Length { what: "output", .. })
    ));
}

/// The f32 product on strided views: every combination of transposed operands against the f64
/// reference (relative error of a k-term f32 sum), and views that reach past their slice refused.
#[test]
fn f32_product_on_transposed_views_matches_the_reference() {
    let mut rng = SmallRng::seed_from_u64(7);
    for &(m, k, n) in &SHAPES {
        let x = random(&mut rng, m * k, 1.0);
        let w = random(&mut rng, n * k, 1.0);
        let zeros = vec![0f32; n];
        let expected = reference(&x, &w, &zeros, m, k, n);
        let x_t: Vec<f32> = (0..k * m).map(|i| x[(i % m) * k + i / m]).collect();
        let w_t: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let lhs_forms = [
            MatRef::row_major(&x, m, k),
            MatRef::row_major(&x_t, k, m).t(),
        ];
        let rhs_forms = [
            MatRef::row_major(&w, n, k).t(),
            MatRef::row_major(&w_t, k, n),
        ];
        for lhs in lhs_forms {
            for rhs in rhs_forms {
                let got = matmul_f32(lhs, rhs).unwrap();
                let bound = 1e-6 * k as f64 * 36.0;
                for (g, e) in got.iter().zip(&expected) {
                    assert!(
                        (f64::from(*g) - e).abs() <= bound,
                        "{m}x{k}x{n}: {g} vs {e}"
                    );
                }
            }
        }
    }
    let data = vec![1f32; 6];
    let too_long = MatRef::row_major(&data, 3, 3);
    assert!(matches!(
        matmul_f32(too_long, MatRef::row_major(&data, 3, 2)),
        Err(KernelError::Length { .. })
    ));
    let short_inner = MatRef::row_major(&data, 2, 3);
    assert!(matches!(
        matmul_f32(short_inner, MatRef::row_major(&data, 2, 3)),
        Err(KernelError::Length { .. })
    ));
}
