#!/usr/bin/env bash
# The GPU check (see tools/gpu_check.py): on a CUDA machine with no hub, <= 9 minutes.
#   bash tools/gpu_check.sh                 # writes benchmarks/results/gpu.json
#   bash tools/gpu_check.sh --device cpu --quick   # the dry run on a machine without a GPU
# Wheels the machine lacks (tools/fetch_gpu_wheels.sh puts them in .whl/) are installed first, into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# only where they are for: a CUDA machine (the wheels are built for its Python 3.12)
if compgen -G ".whl/*.whl" > /dev/null && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  # notebooks run in a "python3" kernel of this interpreter
  "$PY" -m ipykernel install --user --name python3 > /dev/null 2>&1 || true
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" tools/gpu_check.py "$@"
