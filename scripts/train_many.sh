#!/usr/bin/env bash
# Trains several configs at once on one accelerator (each its own process,
# memory grown on demand), then packs logs + final metrics into $OUT_TGZ.
# Usage: DATA=dir RUNS=dir scripts/train_many.sh "cfg[:arg][,--flag=v,...] ..." [flags for all]
# Used for the GPU rows of docs/results.md; the exact invocations are there.
set -uo pipefail
CONFIGS=$1; shift
DATA=${DATA:-../shared/data}; RUNS=${RUNS:-runs}
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAXCNN_DATA_DIR=$DATA PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
# Decode shared data once, before the parallel runs race to build the cache.
python3 -c "from jaxcnn.data import sources; sources.load('cifar10', allow_download=False, log=print)" || exit 1
pids=()
for entry in $CONFIGS; do
  IFS=, read -r cfg own <<< "$entry"
  name=$(basename "${cfg%%:*}" .py)$( [[ $cfg == *:* ]] && echo "_${cfg##*:}" )
  ( /usr/bin/time -f "wall_seconds %e" python3 -m jaxcnn.main --config "configs/$cfg" \
      --workdir "$RUNS/$name" ${own//,/ } "$@" > "$RUNS/$name.log" 2>&1 ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for f in "$RUNS"/*.log; do echo "== $f"; grep -E "precision @ 1|wall_seconds|error|Error" "$f" | tail -4; done
