#!/usr/bin/env bash
# GPU benchmark for 10^4-10^6 patients (float32): forward (one year) and value-and-gradient
# w.r.t. dose amounts (24 weeks); needs jax with the CUDA plugin.  Writes results/gpu.md ($OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/bench_gpu.py
