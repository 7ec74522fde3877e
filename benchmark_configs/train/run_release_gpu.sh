#!/usr/bin/env bash
# One-shot GPU run of the release schedule (issue 17, part 5). Run from the repository root on a
# machine with CUDA and ../shared present:
#   bash benchmark_configs/train/run_release_gpu.sh [runs/release] [extra key=value overrides ...]
# Steps: (1) trainer throughput on this GPU; (2) training from random init with release.yaml
# (--resume auto: rerun the same command after an interruption); (3) the package's HPatches
# benchmark (--protocol sekd) on the DEV sequences, best.pth against the official checkpoint.
# It never replaces sekd_plugin/trained/sekd_selftrained.pth: compare the numbers, then copy
# best.pth by hand only if it beats the official model.
set -euo pipefail
OUT=${1:-runs/release}
shift || true
mkdir -p "$OUT"
python -m sekd_plugin.benchmark train-speed --device cuda --config benchmark_configs/train/release.yaml \
    optim.batch_size=32 2>&1 | tee "$OUT/train_speed.txt"
python -m sekd_plugin.train --images ../shared/data/train_images --output "$OUT" \
    --config benchmark_configs/train/release.yaml --resume auto --no-progress "$@"
python -m sekd_plugin.benchmark hpatches --dataset ../shared/data/hpatches --dataset ../shared/data/oxford \
    --protocol sekd --methods sekd,ours=sekd --weights ours="$OUT/best.pth" --output "$OUT/hpatches" \
    --device cuda --overwrite
echo "report: $OUT/report.md, DEV benchmark: $OUT/hpatches/results.md"
