//! Throughput of the quantised products against the f32 GEMM candle uses (the `gemm` crate), at
//! the encoder's shapes, on all threads; GOP/s (2 operations per multiply-add). The portable
//! columns are what CPUs without AVX-512 VNNI / BF16 run (32 sentences × 128 tokens = 4 096 rows). `cargo bench -p attune-kernels`.
use std::time::Instant;

use attune_kernels::{bf16_linear, int8_linear, Backend, Bf16Matrix, Int8Matrix};
use candle_core::{Device, Tensor};

fn median_gops(m: usize, k: usize, n: usize, mut run: impl FnMut()) -> f64 {
    run();
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            run();
            2.0 * (m * k * n) as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    println!(
        "{:<18} {:>12} {:>10} {:>10} {:>14} {:>14}",
        "m x k x n", "f32 (candle)", "bf16", "int8", "bf16 portable", "int8 portable"
    );
    for (m, k, n) in [
        (4096, 384, 384),
        (4096, 384, 1536),
        (4096, 1536, 384),
        (2048, 384, 1536),
    ] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104_729) % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        let mut out = vec![0f32; m * n];
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap();
        let f32_rate = median_gops(m, k, n, || {
            xt.matmul(&wt.t().unwrap()).unwrap();
        });
        let bf16 = Bf16Matrix::from_f32(&w, n, k).unwrap();
        let bf16_rate = median_gops(m, k, n, || {
            bf16_linear(&x, m, &bf16, None, &mut out, Backend::best_bf16()).unwrap()
        });
        let int8 = Int8Matrix::quantize(&w, n, k).unwrap();
        let int8_rate = median_gops(m, k, n, || {
            int8_linear(&x, m, &int8, None, &mut out, Backend::best_int8()).unwrap()
        });
        let bf16_portable = median_gops(m, k, n, || {
            bf16_linear(&x, m, &bf16, None, &mut out, Backend::Portable).unwrap()
        });
        let int8_portable = median_gops(m, k, n, || {
            int8_linear(&x, m, &int8, None, &mut out, Backend::Portable).unwrap()
        });
        println!(
            "{:<18} {:>12.1} {:>10.1} {:>10.1} {:>14.1} {:>14.1}",
            format!("{m}x{k}x{n}"),
            f32_rate,
            bf16_rate,
            int8_rate,
            bf16_portable,
            int8_portable
        );
    }
}
