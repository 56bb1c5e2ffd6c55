#!/usr/bin/env bash
# Download into .whl/ the wheels the lent H200 machine lacks (Python 3.12, x86-64; it has torch 2.11+cu130,
# transformers, peft, accelerate, but no bitsandbytes, datasets, nbclient/ipykernel/jupyter_client, nbgrader,
# ipywidgets). Only the cu130 library of bitsandbytes is kept (the wheel ships one per CUDA version).
# Prints the total size: it must stay under the 64 MiB a device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
          "${PLAT[@]}" -d .whl "$@"; }
# bitsandbytes (the version the tests compare against) and datasets with what the H200 image lacks
get bitsandbytes==0.50.2
get datasets dill multiprocess
# notebook execution: nbclient, nbformat, jupyter_client, ipykernel and their small dependencies
get nbclient nbformat jupyter_client jupyter_core ipykernel ipython ipython_pygments_lexers comm debugpy \
    matplotlib-inline traitlets tornado pyzmq fastjsonschema jsonschema jsonschema-specifications referencing \
    rpds-py nest-asyncio decorator jedi parso pexpect ptyprocess prompt_toolkit wcwidth stack_data executing \
    asttokens pure_eval platformdirs
get ipywidgets widgetsnbextension jupyterlab_widgets
# keep only bitsandbytes' cu130 (and CPU) library
bnb=$(ls .whl/bitsandbytes-*.whl)
tmp=$(mktemp -d); (cd "$tmp" && unzip -q "$OLDPWD/$bnb")
find "$tmp" -name 'libbitsandbytes_*' ! -name '*cuda130*' ! -name '*_cpu*' -delete
rm "$bnb"; (cd "$tmp" && zip -qr "$OLDPWD/$bnb" .); rm -rf "$tmp"
du -ch .whl/*.whl | tail -1
ls .whl
