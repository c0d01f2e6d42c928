#!/usr/bin/env bash
# The CPU-scale science on the real QaTa-COV19 subset (experiments/cpu.yaml: the tiny MMI-UNet at
# 128 px, the packaged MiniLM), every run in one ledger (results/qata-cpu/ledger.db unless
# MEDREF_LEDGER is set). Run it from a clean checkout of a fixed commit: the code version is part of
# each run's identity, and `medref ablate` skips every cell already finished by that version, so
# rerunning a step after an interruption carries on where it stopped.
#
# Usage: scripts/qata_cpu_experiments.sh DATA_DIR STEP...
#   sweep:NAME  one run of the recipe sweep, seed 0: control or full, then :KEY=VALUE,... for the settings
#               it changes against cpu.yaml (sweep:control:train.lr=0.002); earlier named entries below
#   table2      medref ablate --table 2 at 5% labels, seeds 0,1,2 (Baseline = step-matched control)
#   table3      medref ablate --table 3 at 5% labels, seeds 0,1,2
#   full        the fully supervised runs at 100% labels, seeds 0,1,2
#   ours        Semi-MedRef (the Table 2 Ours cell), seed 0
#   ispg        Semi-MedRef with ISPG (soft position input, phrases removed at train.ispg_removal_rate), seed 0
#   position:RUN  the image-only position predictors on RUN's encoder (labeled split, whole train split)
#   text:RUN    RUN evaluated with every caption mode (full, removed 0.5 and 1, constant, shuffled, swapped)
#   soft:RUN:P  RUN's ISPG modes at removal 0.5 and 1: oracle_soft, and soft_image from position run P
#   doc         the ledger's snapshot docs/results-cpu.ledger.sql and docs/results-cpu.md made from it; the
#               tables count only the runs of the code version GRID (default HEAD), then those of EARLIER
#               (scripts/ledger_snapshot.py, scripts/results_cpu.py; restore the snapshot to carry on elsewhere)
# JOBS (default 2) cells run side by side, each on OMP_NUM_THREADS=1; SEEDS (default 0,1,2) are the
# seeds of table2, table3 and full; ROWS (default: all) the rows of table2 and table3 (medref ablate --rows).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:?usage: $0 DATA_DIR STEP...}"
shift
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
export MEDREF_LEDGER="${MEDREF_LEDGER:-sqlite:///results/qata-cpu/ledger.db}"
M=(.venv/bin/python -m medref_cli)
JOBS="${JOBS:-2}"
RATIO=0.05
SEEDS="${SEEDS:-0,1,2}"
COMMON=(-c experiments/cpu.yaml --dataset qata --data "$DATA" --set runtime.results_dir=results/qata-cpu
        --set runtime.progress=false --cpu)
# the 5% step-matched control: as many steps as burn-in + SSL (train.step_matched)
CONTROL=(--ratio "$RATIO" --set train.step_matched=true)
# 100% labels: epochs of one labeled pass (63 steps), train.epochs=0 so that step matching adds nothing;
# 40 epochs (2,520 steps): in the recipe sweep the 24-epoch runs were still rising when the cosine ended
FULL_EPOCHS="${FULL_EPOCHS:-40}"
FULL=(--ratio 1.0 --epochs "$FULL_EPOCHS" --set train.epochs=0 --set train.step_matched=true)

sweep() {  # the recipe sweep, seed 0: BASE[:KEY=VALUE,...] changes the listed settings against cpu.yaml
  local base="${1%%:*}" changes=() kv
  [[ "$1" == *:* ]] && for kv in $(tr , " " <<< "${1#*:}"); do changes+=(--set "$kv"); done
  case "$base" in
    control) ;;  # the 5% step-matched control
    full)    ;;  # 100% labels, FULL_EPOCHS epochs
    # the entries of commit 11dd5cb, by their names then
    control-base) base=control ;;
    control-zoom1) base=control; changes=(--set ssl.zoom_prob=1.0) ;;
    control-zoom1-wd05) base=control; changes=(--set ssl.zoom_prob=1.0 --set train.weight_decay=0.05) ;;
    full-8ep) base=full; changes=(--epochs 8) ;;
    full-24ep) base=full; changes=(--epochs 24) ;;
    full-24ep-zoom1) base=full; changes=(--epochs 24 --set ssl.zoom_prob=1.0) ;;
    *) echo "unknown sweep entry '$1' (control[:KEY=VALUE,...], full[:KEY=VALUE,...], control-base," \
            "control-zoom1, control-zoom1-wd05, full-8ep, full-24ep, full-24ep-zoom1)" >&2
       exit 2 ;;
  esac
  local args=("${CONTROL[@]}")
  [[ "$base" == full ]] && args=("${FULL[@]}")
  "${M[@]}" burnin "${COMMON[@]}" "${args[@]}" "${changes[@]}" --seed 0 --set split.seed=0 --json
}

evaluate() {  # RUN MODE [RATE [POSITION_RUN]]
  local extra=()
  [[ -n "${3:-}" ]] && extra+=(--removal-rate "$3")
  [[ -n "${4:-}" ]] && extra+=(--position-run "$4")
  "${M[@]}" evaluate "$1" --text-mode "$2" "${extra[@]}" --cpu --results-dir results/qata-cpu --json
}

for step in "$@"; do
  case "$step" in
    sweep:*) sweep "${step#sweep:}" ;;
    table2|table3)
      "${M[@]}" ablate --table "${step#table}" -c experiments/cpu.yaml --dataset qata --data "$DATA" \
        --set runtime.results_dir=results/qata-cpu --set runtime.progress=false \
        --ratio "$RATIO" --seeds "$SEEDS" --jobs "$JOBS" ${ROWS:+--rows "$ROWS"} ;;
    full)
      for s in ${SEEDS//,/ }; do
        "${M[@]}" burnin "${COMMON[@]}" "${FULL[@]}" --seed "$s" --set split.seed="$s" --json
      done ;;
    ours) "${M[@]}" train "${COMMON[@]}" --ratio "$RATIO" --seed 0 --set split.seed=0 --json ;;
    ispg) "${M[@]}" train "${COMMON[@]}" --ratio "$RATIO" --seed 0 --set split.seed=0 \
            --set model.soft_position=true --json ;;
    position:*)
      "${M[@]}" position train --run "${step#position:}" --cpu --set runtime.results_dir=results/qata-cpu --json
      "${M[@]}" position train --run "${step#position:}" --cpu --set runtime.results_dir=results/qata-cpu \
        --set position.train_split=train --json ;;
    text:*)
      run="${step#text:}"
      for mode in full "removed 0.5" "removed 1.0" constant shuffled swapped; do
        # shellcheck disable=SC2086
        evaluate "$run" $mode
      done ;;
    soft:*)
      IFS=: read -r _ run position <<< "$step"
      for rate in 0.5 1.0; do
        evaluate "$run" oracle_soft "$rate"
        evaluate "$run" soft_image "$rate" "$position"
      done ;;
    doc)  # the ledger's snapshot, then the document from that snapshot (so the two agree even while a grid
          # writes to the ledger), its tables counting only the runs of the grid's code version (GRID,
          # default: this checkout's commit), then the grids of EARLIER (space-separated CODE[:TABLES],
          # e.g. "80ffcf9:2,3 e578f1e", each from its own code's runs), and the variants of the grid
          # (VARIANTS, space-separated KEY=VALUE[,...][:TABLES]: the grid's code with a setting changed,
          # kept out of the grid's tables by GRID_WHERE, space-separated KEY=VALUE, e.g. the grid's own
          # value of that setting), and PAIRS (A:B,...: run pairs with their paired per-image test). Take it
          # when no run is in progress: a running run reads as lost once its heartbeat is old, and the
          # document would change with time.
      earlier=(); for e in ${EARLIER:-}; do earlier+=(--earlier "$e"); done
      for v in ${VARIANTS:-}; do earlier+=(--variant "$v"); done
      for w in ${GRID_WHERE:-}; do earlier+=(--grid-where "$w"); done
      [[ -n "${PAIRS:-}" ]] && earlier+=(--pairs "$PAIRS")
      snap="$(mktemp -d)"; trap 'rm -rf "$snap"' EXIT  # also when a command below fails
      .venv/bin/python scripts/ledger_snapshot.py save "$MEDREF_LEDGER" "$snap/ledger.sql"
      .venv/bin/python scripts/ledger_snapshot.py restore "$snap/ledger.sql" "$snap/ledger.db"
      .venv/bin/python scripts/results_cpu.py --ledger "sqlite:///$snap/ledger.db" --ratio "$RATIO" \
        --sweep "${SWEEP_RUNS:-}" --preamble docs/results-cpu.preamble.md --code "${GRID:-$(git rev-parse HEAD)}" \
        "${earlier[@]}" --where model.soft_position=false --where ssl.tpatchmix_block_prob=0.08 \
        --text > "$snap/results-cpu.md"
      mv "$snap/results-cpu.md" docs/results-cpu.md
      mv "$snap/ledger.sql" docs/results-cpu.ledger.sql
      rm -rf "$snap" ;;
    *) echo "unknown step '$step' (sweep:NAME, table2, table3, full, ours, ispg, position:RUN, text:RUN," \
            "soft:RUN:POSITION_RUN, doc)" >&2; exit 2 ;;
  esac
done
