#!/usr/bin/env bash
# The CPU-sized scientific check on the real QaTa-COV19 subset (experiments/cpu.yaml, 2 cores).
# Per seed S (split seed = training seed = S), 5% labels:
#   ssl      Semi-MedRef: 100 burn-in epochs (400 steps) + 8 SSL epochs (480 steps)
#   control  the step-matched supervised control (train.step_matched): the labeled split only, for
#            the same total number of optimizer steps (400 + 480), so only the unlabeled data differ
# plus one fully supervised run at 100% labels.
# Usage: scripts/qata_cpu_experiments.sh DATA_DIR STEP...   with STEP one of ssl:S, control:S, full
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:?usage: $0 DATA_DIR STEP...}"
shift
export HF_HUB_OFFLINE=1
export MEDREF_LEDGER="${MEDREF_LEDGER:-sqlite:///results/qata-cpu/ledger.db}"
M=".venv/bin/medref"
COMMON=(-c experiments/cpu.yaml --dataset qata --data "$DATA" --set runtime.results_dir=results/qata-cpu
        --set runtime.progress=false --ratio 0.05 --set train.val_every=2)
# 100 burn-in epochs + 8 SSL epochs (`medref burnin --epochs` is train.burnin_epochs)
SSL_LENGTH=(--burnin-epochs 100 --epochs 8)
CONTROL_LENGTH=(--epochs 100 --set train.epochs=8 --set train.step_matched=true)

for step in "$@"; do
  case "$step" in
    ssl:*) s=${step#ssl:}
      /usr/bin/time -f "seed $s ssl wall %e s" $M train "${COMMON[@]}" "${SSL_LENGTH[@]}" --seed "$s" --set split.seed="$s" \
        --json ;;
    control:*) s=${step#control:}
      /usr/bin/time -f "seed $s control wall %e s" $M burnin "${COMMON[@]}" "${CONTROL_LENGTH[@]}" --seed "$s" \
        --set split.seed="$s" --json ;;
    full)
      /usr/bin/time -f "full supervision wall %e s" $M burnin -c experiments/cpu.yaml --dataset qata --data "$DATA" \
        --set runtime.results_dir=results/qata-cpu --set runtime.progress=false --ratio 1.0 --epochs 8 \
        --set train.epochs=0 --set train.step_matched=true \
        --set train.val_every=2 --json ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
