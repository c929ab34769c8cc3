#!/usr/bin/env bash
# Attention supervision on HateXplain (docs/alignment.md): fine-tunes all-MiniLM-L6-v2 on the
# validation split (15 % held out for early stopping), with attention-loss weights λ and seeds,
# then measures test accuracy / macro-F1 (`attune eval`) and plausibility / faithfulness
# (`attune align`) of each run. Results land in runs/hatexplain/.
#   tools/hatexplain_experiment.sh "0 1 10 100" "42 1 2"
set -euo pipefail
cd "$(dirname "$0")/.."
lambdas=${1:-"0 1 10 100"}
seeds=${2:-"42"}
data=../shared/data/rationales/hatexplain/hatexplain.jsonl
bin=${ATTUNE_BIN:-./target/release/attune}
for seed in $seeds; do
  for lambda in $lambdas; do
    run=runs/hatexplain/l${lambda}-s${seed}
    if [ ! -f "$run/test_eval/eval.json" ]; then
      $bin train --model models/all-MiniLM-L6-v2 --train "$data" --where split=val \
        --rationales rationale_mean --attention-loss-weight "$lambda" \
        --dev-fraction 0.15 --epochs 5 --batch-size 16 --lr 5e-5 --max-len 128 \
        --metric macro_f1 --seed "$seed" --out "$run" > "$run.train.log" 2>&1
      $bin eval --model "$run" --data "$data" --where split=test --out "$run/test_eval" > "$run.eval.log" 2>&1
    fi
    if [ ! -f "$run/align/align.json" ]; then
      $bin align --model "$run" --human "$data" --split test \
        --methods raw,rollout,saliency --out "$run/align" > "$run.align.log" 2>&1
    fi
    echo "done lambda=$lambda seed=$seed"
  done
done
