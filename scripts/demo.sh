#!/usr/bin/env bash
# A 3.5-minute CPU demo on synthetic latents (scripts/demo.py): set up .venv if needed, then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
