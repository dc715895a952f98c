#!/usr/bin/env bash
# Monotherapies vs the triple combination (WNT974 + pembrolizumab + CB-839) on the same virtual patients.
set -euo pipefail
OUT=${1:-runs/monotherapies_vs_triple}
vcohort simulate --patients "${PATIENTS:-1000}" --days 365 --seed 2026 --precision float32 \
    --arm "untreated=untreated" \
    --arm "wnt974=wnt974 10 mg qd" \
    --arm "pembrolizumab=pembrolizumab 200 mg every 21 d over 30 min" \
    --arm "cb839=cb839 800 mg bid" \
    --arm "triple=wnt974 10 mg qd + pembrolizumab 200 mg every 21 d over 30 min + cb839 800 mg bid" \
    --out "$OUT"
