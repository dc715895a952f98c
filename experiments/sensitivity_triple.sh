#!/usr/bin/env bash
# Which parameters drive the triple-combination benefit?  Endpoint: log tumour-burden ratio at
# day 180, log(viable cells under WNT974 + pembrolizumab + CB-839 / viable cells untreated), same
# virtual patients.  1) local autodiff sensitivities to every parameter across a cohort;
# 2) Sobol indices of the local top parameters (log-uniform, ±2 log-normal SD or ×/÷2).
set -euo pipefail
OUT=${1:-runs/sensitivity_triple}
TRIPLE="triple=wnt974 10 mg qd + pembrolizumab 200 mg every 21 d over 30 min + cb839 800 mg bid"
COMMON=(--days 180 --arm "$TRIPLE" --versus untreated --endpoint log_tumour_cells)
vcohort sensitivity --method local --patients "${PATIENTS:-48}" --seed 2026 "${COMMON[@]}" \
    --top 15 --out "$OUT/local"
vcohort sensitivity --method sobol --samples "${SAMPLES:-256}" --seed 2026 "${COMMON[@]}" \
    --params "${PARAMS:-v_N,h_PD1,q_T8,d_T8,d_N,k_M1,K_M1C,K_cap}" --out "$OUT/sobol"
