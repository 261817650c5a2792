# Sparse Guidance workflow (Snakemake >= 9): the paper's tables and figures as targets.
#
#   snakemake table2                          # embedded default: Fashion-MNIST, tiny SiT, 2 CPU cores (~40 min)
#   snakemake table2 --config preset=smoke    # every rule at toy size (~1.5 min)
#   snakemake --profile slurm table2          # paper scale (the profile sets preset: paper) on SLURM
#   snakemake table2 --config preset=path/to/my.yaml results_dir=/scratch/r   # a preset file, overrides
#   snakemake table2 --config preset=smoke --configfile more.yaml             # nested overrides
# (--config takes every word after it: name the targets first, or end its list with --.)
#
# Data flows one way: the config (workflow/config/<preset>.yaml, its form in
# workflow/schemas/config.schema.yaml) -> this DAG (workflow/rules/*.smk: every input and output a
# path under results/<preset>/) -> one notebook per job (papermill; notebooks/) -> one stage function
# in src/sparse_guidance/stages.py -> files under results/<preset>/ -> results.load (a DataFrame)
# -> the tables and figures the report notebooks draw. Each job's params hold the digest of the part
# of the config it depends on, so an edit reruns exactly the jobs it changes. The executed notebook of
# every job (also of a failed one) is kept under results/<preset>/notebooks/, its output under logs/,
# its timing under benchmarks/. Profiles: profiles/default (local, auto-loaded), profiles/slurm
# (`--profile slurm`, through the root link `slurm`).
import json
import os
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # sparse_guidance, also without an install

from snakemake.utils import validate

from sparse_guidance import config as C
from sparse_guidance.errors import ConfigError
from sparse_guidance.layout import Layout, job_digest
from sparse_guidance.workflow import OVERRIDES_ENV

PRESET = str(config.get("preset", C.DEFAULT_PRESET))
OVERRIDES = {k: v for k, v in config.items() if k != "preset"}
try:
    CFG = C.load_config(PRESET, OVERRIDES)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration (preset {PRESET!r}): {err}") from None
validate(CFG, "workflow/schemas/config.schema.yaml")  # the schema load_config checked, read by Snakemake too
R = CFG["results_dir"]  # results/<preset> unless results_dir says otherwise: every path below starts here
# The text-to-image track (workflow/rules/text_to_image.smk): a configuration of its own, results under RT.
T2I = C.track_config(CFG, "text_to_image") if CFG.get("text_to_image") else None
RT = T2I["results_dir"] if T2I else None

# Jobs run their notebook with papermill (sparse_guidance.notebook_job: the kernel on IPC sockets, so
# kernels starting at once never share a TCP port) in the Python that runs Snakemake (the project's
# .venv), or with --sdm conda in the rule's conda environment's, the package from this checkout's src/.
if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
    NOTEBOOK_JOB = f"PYTHONPATH={Path(workflow.basedir, 'src')}${{{{PYTHONPATH:+:$PYTHONPATH}}}} python -m sparse_guidance.notebook_job"
else:
    NOTEBOOK_JOB = f"{shlex.quote(sys.executable)} -m sparse_guidance.notebook_job"


# Every job: its notebook with the preset and the job's ids (params.ids) as parameters; torch's
# threads = the job's threads; SPARSE_GUIDANCE_JOB tells the notebook that its inputs are already
# built (workflow.build). The --config overrides reach it through the environment (workflow.setup),
# not the command: Snakemake reruns a job when its command changes, and an override should rerun
# only the jobs whose configuration digest (params.digest) it changes (for the same reason the
# preset is written one way, C.canonical_preset). The executed copy and the text log go under log:.
os.environ[OVERRIDES_ENV] = json.dumps(OVERRIDES)
NOTEBOOK = " ".join([
    "SPARSE_GUIDANCE_JOB=1 OMP_NUM_THREADS={threads}", NOTEBOOK_JOB,
    "--cwd . {input.notebook:q} {log.notebook:q}",
    f"-p preset {shlex.quote(C.canonical_preset(PRESET))}", "-y {params.ids:q} > {log.txt:q} 2>&1"])
CONDA_ENV = "envs/sparse-guidance.yaml"  # used only with --sdm conda

wildcard_constraints:
    experiment="|".join(map(re.escape, [*CFG["experiments"], *(T2I["experiments"] if T2I else [])])),
    row=C.ID_RE.pattern.strip("^$"),
    run="|".join(CFG["runs"]),

localrules:
    all,
    imagenet,


report: "workflow/report/workflow.rst"   # `snakemake --report report.html`: the tables and figures marked report()


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/text_to_image.smk"


# `all`: every table and figure of the config.
rule all:
    default_target: True
    input:
        [report_outputs(e) for e in [*C.reported(CFG), *(T2I["experiments"] if T2I else [])]],
        f"{R}/tables/claims.md",
        report_outputs("figA1") if T2I else [],


# `imagenet`: the class-conditional track's tables and figures and the claims table (`all` without
# the text-to-image track; the budget target of the embedded preset).
rule imagenet:
    input:
        [report_outputs(e) for e in C.reported(CFG)],
        f"{R}/tables/claims.md",
