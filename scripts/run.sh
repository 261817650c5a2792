#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then run the workflow on the embedded default
# (Fashion-MNIST, a tiny SiT, CPU, no download). Targets and Snakemake options pass through:
#   bash scripts/run.sh                          # table2, tuning included (~27 min on 2 cores)
#   bash scripts/run.sh all                      # every table and figure (1 h 48 min measured on 2 cores)
#   bash scripts/run.sh fig6 --config preset=smoke
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ $# -eq 0 ] && set -- table2
exec .venv/bin/snakemake "$@"
