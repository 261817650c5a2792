#!/usr/bin/env bash
# Re-resolve envs/requirements.lock: the exact versions scripts/setup.sh and environment.yml install,
# i.e. the versions the fresh-clone CI ran with. uv keeps every version already in the lock unless
# told otherwise, so a plain run only adds or drops what pyproject.toml changed:
#   bash scripts/lock.sh                       # follow pyproject.toml, keep the other pins
#   bash scripts/lock.sh -P torch==2.15.0      # move one package (and what it needs)
#   bash scripts/lock.sh --upgrade             # every package to its newest release
# Then rebuild (rm -rf .venv && bash scripts/setup.sh) and run the tests before committing the lock.
# The lock is for Linux x86-64 and CPython 3.11.7 (the CI's); uv is installed into .venv if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
if [ ! -x "$UV" ]; then
  [ -x .venv/bin/pip ] || { echo "error: no .venv here; run 'bash scripts/setup.sh' first" >&2; exit 1; }
  .venv/bin/pip install -q uv
fi
exec "$UV" pip compile pyproject.toml --extra workflow --extra dev \
  --python-version 3.11.7 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "bash scripts/lock.sh" -q -o envs/requirements.lock "$@"
