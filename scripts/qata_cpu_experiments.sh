#!/usr/bin/env bash
# The CPU-sized scientific check on the real QaTa-COV19 subset (experiments/cpu.yaml):
#   per seed S: split seed S, 5% labels: Semi-MedRef (100 burn-in epochs + 8 SSL epochs) and a
#   supervised control with the same number of optimizer steps (220 burn-in epochs = 880 steps),
#   plus one fully supervised run at 100% labels (20 epochs).
# Usage: scripts/qata_cpu_experiments.sh DATA_DIR [STREAM]   (STREAM a|b splits the work in two
# processes that can run side by side, one CPU thread each; without it everything runs in turn)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:?usage: $0 DATA_DIR [a|b]}"
STREAM="${2:-all}"
export HF_HUB_OFFLINE=1
export MEDREF_LEDGER="${MEDREF_LEDGER:-sqlite:///results/qata-cpu/ledger.db}"
M=".venv/bin/medref"
COMMON=(-c experiments/cpu.yaml --dataset qata --data "$DATA" --set runtime.results_dir=results/qata-cpu
        --set runtime.progress=false)

seed_runs() {
  local s=$1
  /usr/bin/time -f "seed $s ssl wall %e s" $M train "${COMMON[@]}" --ratio 0.05 --seed "$s" --set split.seed="$s" \
    --burnin-epochs 100 --epochs 8 --set train.val_every=2 --json
  /usr/bin/time -f "seed $s control wall %e s" $M burnin "${COMMON[@]}" --ratio 0.05 --seed "$s" \
    --set split.seed="$s" --epochs 220 --json
}

case "$STREAM" in
  a) seed_runs 0; seed_runs 2 ;;
  b) seed_runs 1
     /usr/bin/time -f "full supervision wall %e s" $M burnin "${COMMON[@]}" --ratio 1.0 --epochs 20 --set train.val_every=2 --json ;;
  all) seed_runs 0; seed_runs 1; seed_runs 2
       $M burnin "${COMMON[@]}" --ratio 1.0 --epochs 20 --set train.val_every=2 --json ;;
esac
