#!/usr/bin/env bash
# The main job on the built-in synthetic data, on the CPU; every step is recorded in the ledger
# results/demo/ledger.db, and the last step prints a table rebuilt from it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MEDREF_LEDGER="sqlite:///results/demo/ledger.db"
M=".venv/bin/medref"
CFG=(-c experiments/demo.yaml)
DATA=results/demo/data/synthetic

step() { printf '\n== %s\n' "$*"; }

rm -rf results/demo
step "1/8 synthetic data in the QaTa-COV19 layout"
$M data synth --out "$DATA" --n 400 --seed 0
step "2/8 data check"
$M data check --data "$DATA"
step "3/8 nested labeled/unlabeled splits (15% is used below)"
for r in 0.05 0.15 1.0; do $M split "${CFG[@]}" --dataset synthetic --data "$DATA" --ratio "$r"; done
step "4/8 burn-in: supervised on the 15% labeled split"
$M burnin "${CFG[@]}" --dataset synthetic --data "$DATA"
step "5/8 semi-supervised phase (reuses the recorded burn-in)"
$M train "${CFG[@]}" --dataset synthetic --data "$DATA"
step "6/8 the supervised baseline: as many optimizer steps as the semi-supervised run"
$M burnin "${CFG[@]}" --dataset synthetic --data "$DATA" --set train.step_matched=true
step "7/8 evaluate the semi-supervised model again from its recorded checkpoint"
TRAIN_RUN=$($M runs --kind train --json | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)[-1]['id'])")
$M evaluate "$TRAIN_RUN" --cpu --results-dir results/demo
step "8/8 the ledger, and Table 1 rebuilt from it"
$M runs
$M report --table 1 --format markdown --explain
