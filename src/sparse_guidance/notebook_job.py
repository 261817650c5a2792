"""Execute one workflow job's notebook: papermill, with the kernel on Unix-domain (IPC) sockets.

    python -m sparse_guidance.notebook_job notebooks/21_sample.ipynb results/embedded/notebooks/x.ipynb \\
        -p preset embedded -y '{experiment: table2, row: sg}'

This is `papermill -k python3 --cwd . --log-output IN OUT -p preset P -y IDS` with one change. The
papermill command's kernels talk over TCP ports that jupyter_client chooses by binding port 0 and
letting it go again; two jobs whose kernels start at the same moment on one machine (2 parallel jobs,
a SLURM node running several) can be handed the same port, and one kernel dies with "Address already
in use" before it runs a cell ("Kernel died before replying to kernel_info"; seen in CI). IPC sockets
are files, in a fresh folder per job, so no two kernels can collide.
Everything else (parameters cell, the executed copy written cell by cell, a failed cell marked, the
cell outputs in the job's log) is papermill's.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile

# AF_UNIX socket paths are limited to 107 bytes: <runtime dir>/kernel-ipc-<n>, <n> a small integer
_SOCKET_PATH_MAX, _SOCKET_NAME_LEN = 107, 16


def ipc_runtime_dir() -> str:
    """A fresh folder for one job's kernel connection file and sockets: under the temporary folder
    ($TMPDIR, node-local on most clusters), or /tmp where that path is too long for a socket."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, "sg-kernel-xxxxxxxx")) + _SOCKET_NAME_LEN > _SOCKET_PATH_MAX:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="sg-kernel-", dir=base)


def ipc_kernel_manager_class(runtime: str):
    """jupyter_client's kernel manager on the IPC transport, its connection file and sockets in
    `runtime` by absolute path (left alone, the sockets would be ./kernel-ipc-<n>, the same files
    for every job started in one folder)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("connection_file")
        def _connection_file_default(self):
            return os.path.join(runtime, "kernel.json")

        @default("ip")
        def _ip_default(self):
            return os.path.join(runtime, "kernel-ipc")   # the sockets: <runtime>/kernel-ipc-<n>

    return IPCKernelManager


def execute(notebook: str, output: str, parameters: dict, cwd: str = ".", kernel: str = "python3") -> None:
    """Run `notebook` with `parameters` into `output` (papermill.execute_notebook, IPC kernel)."""
    import papermill

    runtime = ipc_runtime_dir()
    try:
        papermill.execute_notebook(notebook, output, parameters=parameters, kernel_name=kernel, cwd=cwd,
                                   log_output=True, kernel_manager_class=ipc_kernel_manager_class(runtime))
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def parse_parameters(pairs: list[list[str]] | None, yaml_text: str | None) -> dict:
    """-p NAME VALUE pairs (strings) and a -y YAML mapping, the YAML's keys last (as papermill)."""
    import yaml

    params = {name: value for name, value in (pairs or [])}
    if yaml_text:
        extra = yaml.safe_load(yaml_text)
        if not isinstance(extra, dict):
            raise SystemExit(f"notebook_job: -y must be a YAML mapping of parameters, got {yaml_text!r}")
        params.update(extra)
    return params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sparse_guidance.notebook_job", description=__doc__.split("\n")[0])
    ap.add_argument("notebook", help="the notebook to run (notebooks/NN_stage.ipynb)")
    ap.add_argument("output", help="where the executed copy goes (written cell by cell)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="a parameter, as a string (repeatable)")
    ap.add_argument("-y", "--parameters-yaml", help="parameters as a YAML mapping")
    ap.add_argument("--cwd", default=".", help="the kernel's working folder (default: .)")
    ap.add_argument("-k", "--kernel", default="python3", help="the kernel spec (default: python3)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    execute(args.notebook, args.output, parse_parameters(args.parameter, args.parameters_yaml),
            cwd=args.cwd, kernel=args.kernel)


if __name__ == "__main__":
    main()
