#!/usr/bin/env bash
# The wheels scripts/gpu_check.py needs on a GPU machine that has torch, torchvision, timm and
# transformers but no internet (and no fvcore, jsonschema, diffusers or torch-fidelity): downloaded
# here into gpu-wheels/ (git-ignored, ~8 MB), carried there, installed into a folder of its own:
#   bash scripts/gpu_wheels.sh            # here, with the package index
#   python scripts/gpu_check.py           # there: installs gpu-wheels/ into .gpu-site/ first
# Pure-Python wheels, plus rpds-py (jsonschema's one compiled dependency) for CPython 3.10-3.13.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
rm -rf gpu-wheels && mkdir gpu-wheels
"$PIP" download -q --no-deps -d gpu-wheels fvcore iopath yacs portalocker termcolor tabulate \
  jsonschema jsonschema-specifications referencing attrs diffusers torch-fidelity 2>&1 | grep -v "^WARNING" || true
for v in 3.10 3.11 3.12 3.13; do
  "$PIP" download -q --no-deps --only-binary=:all: --python-version "$v" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 -d gpu-wheels rpds-py 2>&1 | grep -v "^WARNING" || true
done
# fvcore and iopath are published as source archives: build them into wheels here
for sdist in gpu-wheels/*.tar.gz; do
  [ -e "$sdist" ] || continue
  "$PIP" wheel -q --no-deps -w gpu-wheels "$sdist" 2>&1 | grep -v "^WARNING" || true
  rm -f "$sdist"
done
ls gpu-wheels
du -sh gpu-wheels
