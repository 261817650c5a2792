#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CUDA_VISIBLE_DEVICES=""
# Two test processes (pytest-xdist), each taking whole files: the smoke workflow and the SLURM
# module then run side by side (each waits on its own jobs much of the time), and every module's
# fixtures stay in one process. SPARSE_GUIDANCE_TEST_WORKERS=0 runs everything in this process.
workers=${SPARSE_GUIDANCE_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 0 ]; then parallel=(-n "$workers" --dist loadfile); fi
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
