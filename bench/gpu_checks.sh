#!/bin/sh
# The GPU checks in one run, for a machine with a CUDA device: the cuda-marked tests, then the
# GPU path's samples per second (a conv VAE on 32x32 inputs, batch 128: the hand-written loop,
# fit eager, captured and compiled). Figures go to $OUT/gpu.json (default: the current folder).
set -e
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -m pytest -q -p no:cacheprovider -m cuda tests
python bench/overhead.py --device cuda --models conv --rounds 3 --ll-samples 0 \
    --json "${OUT:-.}/gpu.json"
