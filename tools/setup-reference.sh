#!/usr/bin/env bash
# Installs the Python side of `attune bench --reference` and the fixture/reference scripts under
# tools/: PyTorch (CPU is used), transformers, PEFT, ONNX Runtime, ONNX (for the export) and the
# scientific stack the fixture scripts use. Never needed to build or test attune.
set -euo pipefail
python3 -m pip install --quiet torch transformers peft onnxruntime onnx scipy scikit-learn networkx
python3 -c "import torch, transformers, peft, onnxruntime, onnx; print('reference ready: torch', torch.__version__, '/ onnxruntime', onnxruntime.__version__)"
