#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then run the workflow on the embedded default
# (Fashion-MNIST, a tiny SiT, CPU, no download). Targets and Snakemake options pass through:
#   bash scripts/run.sh                          # table2, tuning included (2 cores: 27 min with AMX, 58 min on an Ice Lake Xeon in fp32)
#   bash scripts/run.sh imagenet                 # the class-conditional track and the claims (2 cores without AMX: ~3 h 10 min projected with AVX512-BF16, ~4 h on an Ice Lake Xeon in fp32)
#   bash scripts/run.sh all                      # every table and figure, the text-to-image track too (README, "Time")
#   bash scripts/run.sh fig6 --config preset=smoke
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ $# -eq 0 ] && set -- table2
exec .venv/bin/snakemake "$@"
