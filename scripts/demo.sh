#!/usr/bin/env bash
# The README's main job on the embedded default: set up .venv if needed, then run the CPU demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m sparse_guidance.demo "$@"
