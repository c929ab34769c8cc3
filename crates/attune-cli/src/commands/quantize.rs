//! `attune quantize`: a trained model with its encoder in int8 or bf16.
use anyhow::Context;
use attune_core::quant::WeightFormat;

use crate::cli::QuantizeArgs;

/// Key in the quantised model's `config.json` naming the model it was made from, which `eval`
/// compares against by default.
pub const SOURCE_KEY: &str = "attune_quantized_from";

/// Files of a run directory that describe how to use the model, copied alongside.
const RUN_FILES: [&str; 1] = ["train_config.json"];

pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let format: WeightFormat = args.dtype.parse().map_err(anyhow::Error::msg)?;
    if format == WeightFormat::F32 {
        anyhow::bail!("--dtype f32 would copy the model; choose int8 or bf16");
    }
    if args.out == args.model {
        anyhow::bail!("--out must differ from --model: the f32 model is the reference for eval");
    }
    let mut model = super::load_trained(&args.model)?;
    let before: usize = model
        .model
        .dense_layers()
        .iter()
        .filter_map(|l| l.dense_weight())
        .map(|w| w.elem_count() * 4)
        .sum();
    model.quantize(format)?;
    let after: usize = model
        .model
        .dense_layers()
        .iter()
        .filter_map(|l| l.packed_weight())
        .map(|w| w.bytes())
        .sum();
    let source = std::fs::canonicalize(&args.model).unwrap_or_else(|_| args.model.clone());
    model
        .config
        .extra
        .insert(SOURCE_KEY.into(), source.display().to_string().into());
    model.save(&args.out)?;
    for file in RUN_FILES {
        let from = args.model.join(file);
        if from.is_file() {
            std::fs::copy(&from, args.out.join(file))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let on_disk = std::fs::metadata(args.out.join(attune_core::checkpoint::WEIGHTS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{} dense layers to {format}: {:.1} MB -> {:.1} MB in memory; weights file {:.1} MB",
        model.model.dense_layers().len(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        on_disk as f64 / 1e6
    );
    if format == WeightFormat::Int8 && !attune_kernels::simd_int8_available() {
        eprintln!("note: this CPU lacks AVX-512 VNNI; int8 runs on the slow portable path here");
    }
    if format == WeightFormat::Bf16 && !attune_kernels::simd_bf16_available() {
        eprintln!("note: this CPU lacks AVX512-BF16; bf16 runs on the slow portable path here");
    }
    println!(
        "wrote {}; compare with `attune eval --model {} --data DATA`",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
