#!/usr/bin/env bash
# The main job on the built-in synthetic data, on the CPU: every step recorded in the ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDREF=".venv/bin/medref"
CFG="experiments/demo.yaml"
export MEDREF_LEDGER="${MEDREF_LEDGER:-sqlite:///results/demo/ledger.db}"

echo "== 1. synthetic data (QaTa layout)"
$MEDREF data synth --out results/demo/data/synthetic --n 400 --seed 0 --force
echo "== 2. data check"
$MEDREF data check --data results/demo/data/synthetic
echo "== 3. nested splits"
for r in 0.05 0.25 1.0; do
  $MEDREF split -c "$CFG" --data results/demo/data/synthetic --dataset synthetic --ratio "$r"
done
echo "== ledger"
$MEDREF runs
