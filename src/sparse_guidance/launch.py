"""Training on every GPU of a job: one process per GPU through torch.distributed (DDP).

    nproc = resolve_nproc(cfg)                  # compute.nproc: "auto" = every visible GPU, or a number
    if nproc == 1:
        stages.run_training(cfg, run)           # in this process
    else:
        launch_training(preset, overrides, run, nproc, threads=threads)

``launch_training`` starts ``python -m torch.distributed.run --standalone --nproc_per_node=<nproc>
-m sparse_guidance.launch train --preset P --overrides JSON --run-name RUN`` from the repository
root; each process (``main`` below) joins the process group (NCCL on ``cuda:LOCAL_RANK``, gloo on
CPU, where several processes are useful only for checking) and runs the training stage,
stages.run_training. train.py splits each global batch over the ranks, so the weights do not
depend on the number of processes (up to float rounding); rank 0 alone writes checkpoints, logs
and the published outputs.
"""
from __future__ import annotations

import argparse
import codecs
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from . import stages
from .config import repo_root
from .errors import ConfigError
from .io import write_json
from .workflow import setup

_RESULT_DIR_ENV = "SPARSE_GUIDANCE_LAUNCH_DIR"   # where the processes leave summary.json and errors
_CONFIG_ERROR_EXIT = 3


def visible_gpus() -> int:
    """CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies); 0 without CUDA."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_nproc(cfg: dict) -> int:
    """Training processes for a config: ``compute.nproc`` "auto" (the default) is the number of visible
    GPUs when there are at least 2 (and compute.device is not "cpu"), else 1. A number is taken as
    given; more than 1 without CUDA (or with compute.device "cpu") means gloo processes on the CPU."""
    compute = cfg.get("compute") or {}
    want, device = compute.get("nproc", "auto"), compute.get("device", "auto")
    gpus = 0 if device == "cpu" else visible_gpus()
    if want == "auto":
        return gpus if gpus >= 2 else 1
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise ConfigError(f"compute.nproc={want!r} must be 'auto' or an integer >= 1.")
    if want > 1 and gpus and want > gpus:
        raise ConfigError(f"compute.nproc={want} but only {gpus} GPU(s) are visible: one process per GPU. "
                          "Lower compute.nproc (or 'auto'), or set compute.device: cpu for gloo processes.")
    return want


def _threads_per_process(threads: int | None, nproc: int) -> int | None:
    return None if not threads else max(1, int(threads) // nproc)


def launch_training(preset, overrides: dict | None, run: str, nproc: int, *, threads: int | None = None,
                    progress: bool = True, track: str | None = None) -> dict:
    """Train ``run`` with ``nproc`` processes started by torch's elastic launcher (standalone, this
    machine), streaming their output here. Returns the run's summary.json content; raises
    ConfigError (a bad config or state, as the processes reported it) or RuntimeError (any other
    failure), with the exit code and the end of the output."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc={nproc!r} must be an integer >= 1.")
    root = repo_root()
    src = str(Path(__file__).resolve().parents[1])
    per_proc = _threads_per_process(threads, nproc)
    with tempfile.TemporaryDirectory(prefix="sparse_guidance_launch_") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        env[_RESULT_DIR_ENV] = tmp
        env["OMP_NUM_THREADS"] = str(per_proc or 1)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "sparse_guidance.launch", "train", "--preset", str(preset),
               "--overrides", json.dumps(dict(overrides or {})), "--run-name", str(run)]
        if per_proc:
            cmd += ["--threads", str(per_proc)]
        if track:
            cmd += ["--track", str(track)]
        if not progress:
            cmd += ["--no-progress"]
        print(f"launching {nproc} training processes: torch.distributed.run --standalone "
              f"--nproc_per_node={nproc} (run {run!r})", flush=True)
        rc, tail = _stream(cmd, root, env)
        errors = sorted(Path(tmp).glob("error-rank*.json"))
        if rc != 0:
            where = f"training run {run!r} with {nproc} processes failed (launcher exit code {rc})"
            if errors:
                err = json.loads(errors[0].read_text())
                exc = ConfigError if err["type"] == "ConfigError" else RuntimeError
                raise exc(f"{err['message']}\n[{where}, reported by rank {err['rank']}; last output:\n{tail}]")
            raise RuntimeError(f"{where}; last output:\n{tail}")
        summary = Path(tmp) / "summary.json"
        if not summary.is_file():
            raise RuntimeError(f"training run {run!r} with {nproc} processes exited without a summary; "
                               f"last output:\n{tail}")
        return json.loads(summary.read_text())


def _stream(cmd, cwd, env, tail_lines: int = 40) -> tuple[int, str]:
    """Run ``cmd``, copying its output (stdout and stderr together) to sys.stdout as it comes;
    returns (exit code, its last lines, progress-bar redraws folded)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail: collections.deque[str] = collections.deque(maxlen=256)
    try:
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            text = decoder.decode(chunk)
            sys.stdout.write(text)
            sys.stdout.flush()
            tail.append(text)
        rc = proc.wait()
    except BaseException:       # KeyboardInterrupt, a killed notebook: do not leave the processes behind
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        proc.stdout.close()
    text = ("".join(tail) + decoder.decode(b"", final=True)).replace("\r\n", "\n")
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    return rc, "\n".join(lines[-tail_lines:])


# ---------------------------------------------------------------------------------------------
# One training process (what torch.distributed.run starts)
# ---------------------------------------------------------------------------------------------

def _write_error(rank: int, exc: BaseException):
    out = os.environ.get(_RESULT_DIR_ENV)
    if out:
        write_json(Path(out) / f"error-rank{rank:04d}.json",
                   {"rank": rank, "type": type(exc).__name__, "message": str(exc)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparse_guidance.launch",
                                 description="One training process under torch.distributed.run.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run of a config (stages.run_training)")
    t.add_argument("--preset", required=True)
    t.add_argument("--overrides", default="{}", help="config overrides as JSON")
    # --run-name, not --run, on the launcher's command line: torch.distributed.run's own parser takes
    # "--run" for an abbreviation of its --run-path and stops.
    t.add_argument("--run-name", "--run", dest="run", required=True)
    t.add_argument("--track", default=None, help="a track of the config (text_to_image)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads of this process")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)

    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialized = False
    try:
        cfg = setup(args.preset, json.loads(args.overrides), args.track)
        if args.threads:
            torch.set_num_threads(args.threads)
        device = stages.device_of(cfg)
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"process {local_rank} of {world} has no GPU: only {torch.cuda.device_count()} "
                                  "visible; start at most one process per GPU.")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if world > 1:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
            initialized = True
        summary = stages.run_training(cfg, args.run, device=device, progress=args.progress)
        if rank == 0 and os.environ.get(_RESULT_DIR_ENV):
            write_json(Path(os.environ[_RESULT_DIR_ENV]) / "summary.json", summary)
    except ConfigError as e:
        print(f"sparse_guidance.launch (rank {rank}): ConfigError: {e}", file=sys.stderr, flush=True)
        _write_error(rank, e)
        return _CONFIG_ERROR_EXIT
    except BaseException as e:
        _write_error(rank, e)
        raise
    finally:
        if initialized:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
