#!/usr/bin/env bash
# The GPU figures of the performance targets, in one short run (no model hub: the MiniLM packaged
# with medref stands in for CXR-BERT, ConvNeXt-Tiny starts from random weights, which does not
# change the arithmetic).
#   1. MMI-UNet, 224 px, batch 32 labeled + 32 unlabeled, bf16: `medref bench --compare naive`
#      (unlabeled images/s, peak memory, share of the step waiting for data, ratios)
#   2. the same with --compile
#   3. the projection to a 100-epoch QaTa-COV19 semi-supervised run (5,716 unlabeled images)
#   4. with two or more GPUs: a short `medref train --gpus 0,1` on synthetic data
# Usage: scripts/gpu_check.sh OUT_DIR      (medref installed in the active Python)
set -euo pipefail
OUT="${1:?usage: $0 OUT_DIR}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
M=(python -m medref_cli)
BENCH=(bench --backbone mmi-unet --size 224 --batch 32 --gpu 0 --steps 20 --warmup 5
       --set model.text_encoder=builtin-minilm --set model.visual_pretrained=false --json)

"${M[@]}" "${BENCH[@]}" --compare naive > "$OUT/bench.json"
"${M[@]}" "${BENCH[@]}" --compile > "$OUT/bench_compile.json"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("bench", "bench_compile"):
    d = json.load(open(f"{out}/{name}.json"))
    rate = d["ssl_unlabeled_images_per_s"]
    minutes = 100 * 5716 / rate / 60
    print(f"{name}: {d['device_name']} ssl_step_s={d['ssl_step_s']:.4f} unlabeled_images_per_s={rate:.1f} "
          f"ssl_over_sup={d['ssl_over_sup']:.2f} data_wait_share={d['data_wait_share']:.3f} "
          f"peak_mem_mb={d['peak_mem_mb']:.0f} speedup_vs_naive={d.get('speedup_vs_naive')} "
          f"-> 100 QaTa epochs of SSL steps: {minutes:.1f} min (target 15)")
PY
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  "${M[@]}" data synth --out "$OUT/synthetic" --n 200 --seed 0 > /dev/null
  /usr/bin/time -f "2-GPU train wall %e s" "${M[@]}" train --dataset synthetic --data "$OUT/synthetic" \
    --backbone mmi-unet-tiny --ratio 0.25 --burnin-epochs 2 --epochs 2 --gpus 0,1 \
    --set model.text_encoder=builtin-minilm --set model.visual_pretrained=false --set train.batch_size=16 \
    --set runtime.results_dir="$OUT/results" --set runtime.progress=false --json | tee "$OUT/train_2gpu.json"
fi
