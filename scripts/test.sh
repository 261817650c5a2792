#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CUDA_VISIBLE_DEVICES=""
exec .venv/bin/python -m pytest "$@"
