"""The workflow on a real SLURM cluster: `snakemake --profile slurm table2` with the smoke preset,
and a training job cancelled mid-run (as a preemption or a time limit would) resumed by a rerun.

Needs a running cluster: `bash tests/slurm/cluster.sh start` (root, apt; one node, 2 fake GPUs,
slurmdbd so `sacct` answers), then `eval "$(bash tests/slurm/cluster.sh env)"` and
SPARSE_GUIDANCE_SLURM=1. .ci/run does all three where it can; elsewhere this module is skipped.

One module fixture runs Snakemake twice in a copy of the repository (4-7 minutes on 2 cores):
  A  `table2` with the routing run trained for 600 steps (checkpoint every 20) and the training and
     sampling rules asking for a GPU; once the training job runs and has written a checkpoint, the
     test `scancel`s it, so A fails (or is stopped with Ctrl-C, see below);
  B  the same command again: the training resumes from its checkpoint, table2 is finished.
The profile is used as committed; only what a site sets (the partition) comes from a second
profile written here (`--profile slurm --profile site`). --retries 0 makes the cancelled job fail
instead of being resubmitted (the profile's `retries: 2` would resume it the same way); a short
first status check (--slurm-init-seconds-before-status-checks 2, default 40) only makes it faster.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sparse_guidance import config as X
from test_workflow import TABLE2_ROWS, copy_repo

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
STEPS, CKPT_EVERY = 600, 20     # smoke trains 20 steps; 600 take ~10 s, time to cancel at a checkpoint
SELF_STOP_S = 16                 # how long Snakemake may take to notice the cancelled job by itself
# (fig5 reads the step-20 snapshot, the smoke run's final step: keep it)
LONG_TRAIN = {"runs": {"routing": {"train": {"steps": STEPS, "ckpt_every": CKPT_EVERY, "save_steps": [10, 20]}}}}
B_LIMIT_S = 1500                 # run B's limit (it takes ~400 s alone: see the fixture)
GPU_RULES = ("train_routing", "sample")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SPARSE_GUIDANCE_SLURM") != "1",
                       reason="no SLURM cluster: SPARSE_GUIDANCE_SLURM=1 is not set (start one with "
                              "`bash tests/slurm/cluster.sh start` and eval its `env`; .ci/run does)"),
    pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                       reason="the smoke preset reads Debian's dataset-fashion-mnist (scripts/setup.sh installs it)"),
]


def sh(*cmd, timeout=60, check=True) -> str:
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


def default_partition() -> str:
    parts = sh("sinfo", "-h", "-o", "%P").split()
    return next((p.rstrip("*") for p in parts if p.endswith("*")), parts[0])


def squeue() -> list[dict]:
    out = sh("squeue", "-h", "-o", "%i|%T|%k", check=False)
    return [dict(zip(("id", "state", "comment"), line.split("|"))) for line in out.splitlines() if line]


def job_environ(jobid: str) -> dict:
    """CUDA_VISIBLE_DEVICES & co. of the job's processes (we are root on the only node)."""
    for env_file in Path("/proc").glob("[0-9]*/environ"):
        try:
            items = env_file.read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)
        if env.get("SLURM_JOB_ID") == jobid and "SLURM_STEP_ID" in env:  # the srun step running the rule
            return env
    return {}


@pytest.fixture(scope="module")
def cluster():
    try:
        nodes = sh("sinfo", "-h", "-N", "-o", "%t %G", timeout=20)
        sh("sacct", "-n", "-X", "-S", "now-1hours", timeout=20)
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"SPARSE_GUIDANCE_SLURM=1 but the cluster does not answer (tests/slurm/cluster.sh status): {e}")
    assert any(n.split()[0] in ("idle", "mix", "alloc") for n in nodes.splitlines()), nodes
    return {"partition": default_partition(), "gres": nodes}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Snakemake runs A (training cancelled) and B (rerun), in one copy of the repository."""
    repo = copy_repo(tmp_path_factory.mktemp("slurm-repo"))
    # the site's settings: the cluster's partition (its account, where a site requires one)
    (repo / "site").mkdir()
    (repo / "site" / "config.yaml").write_text(
        f"default-resources:\n  slurm_partition: {cluster['partition']}\n")
    (repo / "long-train.yaml").write_text(json.dumps(LONG_TRAIN) + "\n")
    cmd = [sys.executable, "-m", "snakemake", "table2", "--profile", "slurm", "--profile", "site",
           "--set-resources", *(f"{r}:gpu=1" for r in GPU_RULES), "--retries", "0",
           "--slurm-init-seconds-before-status-checks", "2",
           "--configfile", "long-train.yaml", "--config", "preset=smoke"]
    res = repo / "results" / "smoke"
    state = res / "runs" / "routing" / "state"
    out = {"repo": repo, "cmd": cmd}

    # A: cancel the training job once it runs and has checkpointed
    t0 = time.perf_counter()
    a_log = repo / "run-a.log"  # a file, not a pipe nobody reads while it runs
    with a_log.open("w") as f:  # Ctrl-C as in a terminal: SIGINT at its default even where this test
        # runs as a background job (whose shell ignores SIGINT, which Popen's children would inherit)
        a = subprocess.Popen(cmd, cwd=repo, env=ENV, stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    train = None
    try:
        deadline = time.monotonic() + 420
        while a.poll() is None and time.monotonic() < deadline:
            train = next((j for j in squeue() if j["comment"] == "rule_train_routing"), None)
            if train and train["state"] == "RUNNING" and (state / "last.pt").exists():
                out["train_env"] = job_environ(train["id"])
                out["train_scontrol"] = sh("scontrol", "-d", "show", "job", train["id"])
                sh("scancel", train["id"])
                out["cancelled_at"] = time.perf_counter() - t0
                break
            time.sleep(0.5)
        # The other jobs of A finish (keep-going); then Snakemake should stop by itself. The SLURM
        # plugin (2.8.0) does not: sacct reports the job as 'CANCELLED by <uid>', which is not in its
        # list of failed states, so it waits for it forever. Then do what a user does: Ctrl-C.
        out["a_stopped_by"] = "itself"
        end = time.monotonic() + 300
        while a.poll() is None and squeue() and time.monotonic() < end:
            time.sleep(1)
        # The plugin deletes a finished job's log at its next status check of that job: give it that
        # check before stopping Snakemake, or the job that ended last keeps its log (a race).
        slurm_logs = repo / ".snakemake" / "slurm_logs"
        end = time.monotonic() + 90
        while a.poll() is None and time.monotonic() < end and any(
                "rule_train_routing" not in str(p) for p in slurm_logs.rglob("*.log")):
            time.sleep(1)
        try:
            a.wait(timeout=SELF_STOP_S)
        except subprocess.TimeoutExpired:
            out["a_stopped_by"] = "SIGINT"
            a.send_signal(signal.SIGINT)
        try:
            a.wait(timeout=120)
        except subprocess.TimeoutExpired:
            # A Ctrl-C that Snakemake does not act on (the test below fails). Do what a user does
            # next (kill it, unlock), so that the resume, which this module is about, is still checked.
            out["a_stopped_by"] = "SIGKILL after an unanswered SIGINT"
            a.kill()
            a.wait()
            subprocess.run([*cmd, "--unlock"], cwd=repo, env=ENV, capture_output=True, timeout=120, check=False)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    out["a"] = (a.returncode, a_log.read_text(), time.perf_counter() - t0)
    out["train_jobid"] = train["id"] if train else None
    # what the failed job left, before B overwrites it
    nb = res / "notebooks" / "train-routing.ipynb"
    out["failed_notebook"] = nb.read_text() if nb.exists() else None
    logs = sorted((repo / ".snakemake" / "slurm_logs").rglob("*.log"))
    out["slurm_logs_after_a"] = {str(p.relative_to(repo)): p.read_text() for p in logs}
    ck = state / "last.pt"
    out["step_at_cancel"] = torch.load(ck, map_location="cpu", weights_only=False)["step"] if ck.exists() else None
    out["published_after_a"] = (res / "runs" / "routing" / "last.pt").exists()

    # B: the same command again
    # (~400 s alone on 2 cores, the plugin's status checks backing off by 10 s while the resumed
    # training runs; in CI a second pytest worker shares the cores). A log file, as for A, so that
    # a run past the limit still shows how far it got, and what the queue held then.
    t0 = time.perf_counter()
    b_log = repo / "run-b.log"
    with b_log.open("w") as f:
        b = subprocess.Popen(cmd, cwd=repo, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    try:
        b.wait(timeout=B_LIMIT_S)
        code, note = b.returncode, ""
    except subprocess.TimeoutExpired:
        code = None
        note = (f"\n[test] run B still running after {B_LIMIT_S} s; squeue:\n"
                f"{sh('squeue', '-o', '%i %T %k %M %R', check=False)}")
        b.kill()
        b.wait()
        subprocess.run([*cmd, "--unlock"], cwd=repo, env=ENV, capture_output=True, timeout=120, check=False)
        for j in squeue():
            sh("scancel", j["id"], check=False)
    out["b"] = (code, b_log.read_text() + note, time.perf_counter() - t0)
    print(f"\nslurm run A (cancelled training): {out['a'][2]:.0f} s, run B (rerun): {out['b'][2]:.0f} s")
    return out


def jobids(text: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", text)


def test_cluster_has_fake_gpus(cluster):
    assert "gpu:" in cluster["gres"], cluster["gres"]


def test_a_cancelled_training_fails_the_run(runs):
    code, text, _ = runs["a"]
    assert runs["train_jobid"], f"the training job never ran with a checkpoint:\n{text[-4000:]}"
    assert code != 0, text[-4000:]  # (-9 when it had to be killed)
    print(f"run A stopped by {runs['a_stopped_by']}")
    if runs["a_stopped_by"] == "itself":  # a plugin that knows 'CANCELLED by <uid>'
        assert f"SLURM-job '{runs['train_jobid']}' failed" in text, text[-4000:]
    else:  # a Ctrl-C: Snakemake cancels its jobs and stops
        assert runs["a_stopped_by"] == "SIGINT", f"Snakemake did not act on Ctrl-C within 120 s:\n{text[-4000:]}"
        assert "Terminating processes on user request" in text, text[-4000:]
    assert 0 < runs["step_at_cancel"] < STEPS and runs["step_at_cancel"] % CKPT_EVERY == 0
    assert not runs["published_after_a"]


def test_table2_on_slurm(runs):
    code, text, _ = runs["b"]
    assert code == 0, text[-5000:]
    with open(runs["repo"] / "results" / "smoke" / "tables" / "table2.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == TABLE2_ROWS
    assert all(float(r["fid"]) > 0 for r in rows)


def test_sacct_lists_the_jobs_and_their_gpus(runs):
    a_ids, b_ids = jobids(runs["a"][1]), jobids(runs["b"][1])
    assert runs["train_jobid"] in a_ids and len(b_ids) >= 14, (a_ids, b_ids)  # train, 6 samples, 6 evaluations, report
    rows = sh("sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State,AllocTRES,Comment", "-j", ",".join(a_ids + b_ids))
    acct = {r.split("|")[0]: r.split("|") for r in rows.splitlines()}
    assert set(acct) == set(a_ids + b_ids), rows
    assert acct[runs["train_jobid"]][1].startswith("CANCELLED"), acct[runs["train_jobid"]]
    for jid in b_ids:
        assert acct[jid][1] == "COMPLETED", acct[jid]
    for _, _, tres, comment in acct.values():
        rule = re.sub(r"^rule_|_wildcards_.*$", "", comment)
        wants_gpu = rule in GPU_RULES
        assert ("gres/gpu=1" in tres) == wants_gpu, (comment, tres)
    tuned = X.load_config("smoke")["experiments"]["table2.tune"]["rows"]  # the tuned rows' candidates
    assert sum(c.startswith("rule_sample") for *_, c in acct.values()) == len(TABLE2_ROWS) + len(tuned)


def test_the_gpu_job_got_a_gpu(runs):
    assert re.search(r"GRES=gpu(:\w+)?:1\(IDX:\d\)", runs["train_scontrol"]), runs["train_scontrol"]
    env = runs["train_env"]
    assert env, "no process of the training job found in /proc"
    assert env.get("CUDA_VISIBLE_DEVICES", "").isdigit(), {k: v for k, v in env.items() if "GPU" in k or "CUDA" in k}


def test_the_failed_job_keeps_its_notebook_and_slurm_log(runs):
    jid = runs["train_jobid"]
    assert runs["failed_notebook"], "no executed notebook results/smoke/notebooks/train-routing.ipynb"
    # papermill marks the cell that was running when the job was killed
    cells = json.loads(runs["failed_notebook"])["cells"]
    running = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "running"]
    assert len(running) == 1 and "run_training" in "".join(running[0]["source"]), [c["metadata"] for c in cells]
    log = f".snakemake/slurm_logs/rule_train_routing/{jid}.log"
    assert log in runs["slurm_logs_after_a"], sorted(runs["slurm_logs_after_a"])
    assert f"JOB {jid} ON" in runs["slurm_logs_after_a"][log] and "CANCELLED" in runs["slurm_logs_after_a"][log]
    assert log in runs["a"][1]  # Snakemake names it in its error report
    # successful jobs' logs are deleted (the plugin's default): only failed jobs leave one
    assert all("rule_train_routing" in p for p in runs["slurm_logs_after_a"]), sorted(runs["slurm_logs_after_a"])


def test_the_resumed_training_equals_an_uninterrupted_one(runs, tmp_path):
    assert runs["b"][0] == 0, runs["b"][1][-3000:]
    repo = runs["repo"]
    res = repo / "results" / "smoke"
    ref = tmp_path / "ref"
    shutil.copytree(res / "latents", ref / "latents")
    # the same config, trained in one go here (threads=1, as the job's notebook ran)
    code = ("import json, sys, torch\nfrom sparse_guidance import stages, workflow\ntorch.set_num_threads(1)\n"
            "cfg = workflow.setup('smoke', json.loads(sys.argv[1]))\nstages.run_training(cfg, 'routing', progress=False)\n")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, json.dumps({**LONG_TRAIN, "results_dir": str(ref)})],
                       cwd=repo, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    print(f"uninterrupted reference training: {time.perf_counter() - t0:.0f} s")
    resumed = torch.load(res / "runs" / "routing" / "last.pt", map_location="cpu", weights_only=False)
    whole = torch.load(ref / "runs" / "routing" / "last.pt", map_location="cpu", weights_only=False)
    assert resumed["step"] == whole["step"] == STEPS
    for key in ("model", "ema"):
        a, b = resumed[key], whole[key]
        assert a.keys() == b.keys()
        for name in a:
            assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), (key, name, (a[name] - b[name]).abs().max())
