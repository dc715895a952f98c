#!/usr/bin/env bash
# Forward GPU benchmark for 10^4-10^6 patients (float32); needs jax with the CUDA plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/bench_gpu.py
