#!/usr/bin/env bash
# Distillation sweep on one accelerator: LeNet-5 students of the frozen
# ResNet-20 teacher (runs/resnet20_cifar) at T = 1, 3, 5, 20, and the same
# student on hard labels, seeds 0-2: 15 concurrent processes (memory grown on
# demand), then a mean +- std table. Config: configs/distill_lenet5_cifar.py.
# Usage: DATA=dir RUNS=dir [EPOCHS=20] scripts/distill_sweep.sh
# Writes $RUNS/distill_<variant>_s<seed>/ (+ .log) and
# $RUNS/distill_sweep_summary.md. The teacher is the config's runs/resnet20_cifar.
set -uo pipefail
DATA=${DATA:-../shared/data}; RUNS=${RUNS:-runs}; EPOCHS=${EPOCHS:-20}
VARIANTS=${VARIANTS:-"baseline T1 T3 T5 T20"}; SEEDS=${SEEDS:-"0 1 2"}
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAXCNN_DATA_DIR=$DATA PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
# Decode the shared data once, before the parallel runs race to build the cache.
python3 -c "from jaxcnn.data import sources; sources.load('cifar10', allow_download=False, log=print)" || exit 1
start=$(date +%s)
pids=()
for v in $VARIANTS; do
  for s in $SEEDS; do
    name=distill_${v}_s${s}
    ( /usr/bin/time -f "wall_seconds %e" python3 -m jaxcnn.main \
        --config "configs/distill_lenet5_cifar.py:$v" --workdir "$RUNS/$name" \
        --config.seed=$s --config.num_epochs=$EPOCHS > "$RUNS/$name.log" 2>&1 ) &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p"; done
echo "sweep wall seconds: $(( $(date +%s) - start ))"
python3 - "$RUNS" "$VARIANTS" "$SEEDS" "$EPOCHS" <<'PY' | tee "$RUNS/distill_sweep_summary.md"
import json, os, sys
import numpy as np
runs, variants, seeds, epochs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
print(f'| student lenet5_cifar, {epochs} epochs | seeds | test precision@1 mean ± std | per seed |')
print('|---|---|---|---|')
for v in variants:
  accs = []
  for s in seeds:
    f = os.path.join(runs, f'distill_{v}_s{s}', 'final_metrics.json')
    if os.path.exists(f):
      accs.append(json.load(open(f))['params']['precision@1'])
  if accs:
    a = np.array(accs) * 100
    print(f'| {v} | {len(a)} | {a.mean():.2f} ± {a.std(ddof=1) if len(a) > 1 else 0:.2f} | '
          + ', '.join(f'{x:.2f}' for x in a) + ' |')
  else:
    print(f'| {v} | 0 | missing | |')
PY
