#!/usr/bin/env bash
# The pipeline's training loops on CUDA in bf16 for a few steps: steps/s and the UNet's MFU.
# Run it on a GPU host, in a clone with the environment installed (`make install`); it is never part
# of `make test`.  Writes benchmarks/results/gpu_smoke.{json,md}; commit them with the machine line.
#
#   benchmarks/gpu_smoke.sh              # STEPS=50 by default; PYTHON=.venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-50}
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 PREFECT_SERVER_ANALYTICS_ENABLED=false

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
    echo "gpu_smoke: no NVIDIA GPU visible here (nvidia-smi); run it on a GPU host" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A small prepared set from the embedded VoxSynth generator (no download): 128 speakers.
"$PY" - "$work" <<'PY'
import sys, yaml
from pathlib import Path
work = Path(sys.argv[1])
params = yaml.safe_load(Path("params.yaml").read_text())
params["synth"].update({"n_speakers": 128, "utterances_per_speaker": 4, "faces_per_speaker": 2, "sample_wavs": 1})
(work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
PY
repo=$PWD
(cd "$work" && "$repo/$PY" -m sclmd stage synth >synth.log 2>&1 && "$repo/$PY" -m sclmd stage prepare >prepare.log 2>&1) \
    || { echo "gpu_smoke: making the prepared set failed; see the logs:" >&2; tail -20 "$work"/*.log >&2; exit 1; }
"$PY" benchmarks/gpu_smoke.py --prepared "$work/data/prepared" --steps "$STEPS" --device cuda --precision bf16
