# Sparse Guidance workflow (Snakemake >= 9): the paper's tables and figures as targets.
#
#   snakemake table2                          # embedded default: Fashion-MNIST, tiny SiT, 2 CPU cores (~25 min)
#   snakemake table2 --config preset=smoke    # every rule at toy size (~1.5 min)
#   snakemake --profile slurm table2          # paper scale (the profile sets preset: paper) on SLURM
#   snakemake table2 --config preset=path/to/my.yaml results_dir=/scratch/r   # a preset file, overrides
#   snakemake table2 --config preset=smoke --configfile more.yaml             # nested overrides
# (--config takes every word after it: name the targets first, or end its list with --.)
#
# The configuration is data (workflow/config/<preset>.yaml; a preset may `extends:` another), its
# form is workflow/schemas/config.schema.yaml (JSON Schema with defaults); src/sparse_guidance/
# experiments.py validates it against that schema and across sections before any job is planned
# (a bad value stops Snakemake with a message naming its key) and knows where every stage writes.
# Every job runs a notebook from notebooks/ with papermill; the executed copy is kept under
# results/<config>/notebooks/ (also when it fails), its output under results/<config>/logs/ and its
# timing under results/<config>/benchmarks/. Profiles: profiles/default (local, auto-loaded),
# profiles/slurm (`--profile slurm`, through the root link `slurm`).
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # sparse_guidance, also without an install

from snakemake.utils import validate

from sparse_guidance import experiments as X
from sparse_guidance.errors import ConfigError

PRESET = str(config.get("preset", X.DEFAULT_PRESET))
OVERRIDES = {k: v for k, v in config.items() if k != "preset"}
try:
    CFG = X.load_config(PRESET, OVERRIDES)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration (preset {PRESET!r}): {err}") from None
validate(CFG, "workflow/schemas/config.schema.yaml")  # the schema load_config checked, read by Snakemake too
L = X.Layout(CFG)

# Jobs run the papermill of the environment that runs Snakemake (the project's .venv), or with
# --sdm conda the one of the rule's conda environment.
if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
    # the rule's environment has the dependencies; the package comes from this checkout's src/
    PAPERMILL_BIN = " ".join([f"PYTHONPATH={Path(workflow.basedir, 'src')}${{{{PYTHONPATH:+:$PYTHONPATH}}}}",
                              "papermill"])
else:
    PAPERMILL_BIN = str(Path(sys.executable).parent / "papermill")

CONDA_ENV = "envs/sparse-guidance.yaml"  # used only with --sdm conda
# Every job: one notebook, its parameters, the executed copy and the text log under log:.
PAPERMILL = " ".join([PAPERMILL_BIN, "-k python3 --cwd . --log-output {input.notebook:q} {log.notebook:q}",
                      "-p preset {params.preset:q} -p threads {threads} -y {params.args:q} > {log.txt:q} 2>&1"])

wildcard_constraints:
    experiment="|".join(re.escape(e) for e in CFG["experiments"]),
    row=X.ID_RE.pattern.strip("^$"),

localrules:
    all,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# `all`: the report of every experiment in the config (its tables and figures).
rule all:
    default_target: True
    input:
        [f for e in CFG["experiments"] for f in X.stage_outputs(CFG, "report", experiment=e).values()],
