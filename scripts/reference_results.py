"""The embedded run's results kept in the repository, and the drift of a fresh run from them.

    python scripts/reference_results.py export results/embedded docs/embedded --command "bash scripts/run.sh"
    python scripts/reference_results.py drift results/embedded docs/embedded [--tolerance 0]

export  copies a run's tables (CSV, Markdown) and figures (PNG, CSV; no PDF) and writes
        provenance.json beside them: the commit, the command, the date, the CPU (model and the
        instruction sets that pick its bf16 kernels) and the library versions that produced them.
drift   compares every number of a fresh run's table and figure CSVs with the stored ones (rows
        matched by their `row` column) and prints, per file, the largest change and each changed
        value; exit 1 when a change exceeds --tolerance (default: report only, exit 0). The
        embedded numbers are bit-exact on the same machine type and library versions; on other
        CPUs bf16 kernels round differently and the numbers move (README, "Reproducibility").
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

KEPT = {"tables": (".csv", ".md"), "figures": (".png", ".csv")}
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what oneDNN's bf16 paths depend on
LIBRARIES = ("torch", "numpy", "scipy", "pandas", "matplotlib", "torch_fidelity", "snakemake", "papermill")


def machine() -> dict:
    """The CPU model (name, family, model number), its bf16-relevant instruction sets, the thread count, OS and Python."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first = info.split("\n\n", 1)[0]   # the first processor's "key : value" lines
    cpu = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in first.splitlines())}
    import os
    # family and model tell CPU generations apart where the model name does not ("AMD EPYC" for
    # Zen 4, family 25, and Zen 5, family 26): their kernels may round differently
    return {"cpu": cpu.get("model name") or platform.processor() or "unknown",
            "cpu_family": cpu.get("cpu family"), "cpu_model": cpu.get("model"),
            "isa": [f for f in ISA_FLAGS if f in cpu.get("flags", "").split()], "cores": os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version()}


def library_versions() -> dict:
    from importlib import metadata
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path) -> str | None:
    p = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (p.stdout.strip() + ("+dirty" if dirty else "")) if p.returncode == 0 else None


def export(run: Path, dest: Path, command: str, wall_time: str | None = None) -> list[Path]:
    """Copy the run's kept files to ``dest`` (replacing what was there) and write provenance.json."""
    if not (run / "tables").is_dir() and not (run / "figures").is_dir():
        raise SystemExit(f"{run} has no tables/ or figures/: give a results folder (results/<preset>).")
    written = []
    for sub, suffixes in KEPT.items():
        if (dest / sub).exists():
            shutil.rmtree(dest / sub)
        for f in sorted((run / sub).glob("*")) if (run / sub).is_dir() else []:
            if f.suffix in suffixes and f.is_file():
                (dest / sub).mkdir(parents=True, exist_ok=True)
                written.append(Path(shutil.copy2(f, dest / sub / f.name)))
    prov = {"results": str(run), "command": command, "commit": git_commit(Path(__file__).resolve().parents[1]),
            "exported": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "wall_time": wall_time,
            "machine": machine(), "libraries": library_versions()}
    (dest / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
    return [*written, dest / "provenance.json"]


def _numeric(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def drift(fresh: Path, stored: Path) -> pd.DataFrame:
    """Every number that differs between the two runs' CSVs (and values present in one only):
    columns file, row, column, stored, fresh, delta, relative."""
    out = []
    for sub in KEPT:
        for ref in sorted((stored / sub).glob("*.csv")):
            new = fresh / sub / ref.name
            if not new.exists():
                out.append({"file": f"{sub}/{ref.name}", "row": "(file)", "column": "", "stored": "present",
                            "fresh": "missing", "delta": math.inf, "relative": math.inf})
                continue
            a, b = pd.read_csv(ref), pd.read_csv(new)
            key = "row" if "row" in a.columns and "row" in b.columns else None
            a = a.set_index(key) if key else a
            b = b.set_index(key) if key else b
            for rid in a.index.union(b.index, sort=False):
                for col in a.columns.union(b.columns, sort=False):
                    va = a.at[rid, col] if rid in a.index and col in a.columns else None
                    vb = b.at[rid, col] if rid in b.index and col in b.columns else None
                    xa, xb = _numeric(va), _numeric(vb)
                    if xa is None and xb is None:
                        continue
                    if xa is None or xb is None:
                        d = math.inf
                    elif xa == xb:
                        continue
                    else:
                        d = xb - xa
                    rel = abs(d) / abs(xa) if xa not in (None, 0) and math.isfinite(d) else math.inf
                    out.append({"file": f"{sub}/{ref.name}", "row": rid, "column": col, "stored": va, "fresh": vb,
                                "delta": d, "relative": rel})
    return pd.DataFrame(out, columns=["file", "row", "column", "stored", "fresh", "delta", "relative"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="copy a run's tables and figures into the repository, with provenance")
    e.add_argument("run", type=Path)
    e.add_argument("dest", type=Path)
    e.add_argument("--command", required=True, help="the command that produced the run (recorded)")
    e.add_argument("--wall-time", help="how long it took (recorded), e.g. '27 min 21 s'")
    d = sub.add_parser("drift", help="compare a fresh run's numbers with the stored ones")
    d.add_argument("fresh", type=Path)
    d.add_argument("stored", type=Path)
    d.add_argument("--tolerance", type=float, default=None,
                   help="exit 1 when a relative change exceeds this (default: report only)")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        for p in export(args.run, args.dest, args.command, args.wall_time):
            print(p)
        return 0
    if not (args.stored / "provenance.json").exists():
        raise SystemExit(f"{args.stored} holds no stored results (provenance.json); export a run there first.")
    prov = json.loads((args.stored / "provenance.json").read_text())
    print(f"stored: commit {prov['commit']}, {prov['machine']['cpu']} ({', '.join(prov['machine']['isa'])}), "
          f"torch {prov['libraries'].get('torch')}")
    now = machine()
    print(f"fresh:  this machine, {now['cpu']} ({', '.join(now['isa'])}), torch {library_versions()['torch']}")
    df = drift(args.fresh, args.stored)
    files = sorted({f"{s}/{p.name}" for s in KEPT for p in (args.stored / s).glob("*.csv")})
    print(f"\n{len(files)} stored CSV files, {len(df)} changed values\n")
    if df.empty:
        print("no drift: every number equals the stored one")
        return 0
    worst = df.groupby("file")["relative"].max().sort_values(ascending=False)
    print("| file | changed values | largest relative change |\n|---|---:|---:|")
    for f, r in worst.items():
        print(f"| {f} | {int((df['file'] == f).sum())} | {r:.2%} |")
    print()
    print(df.to_markdown(index=False, floatfmt=".4g"))
    if args.tolerance is not None and (df["relative"] > args.tolerance).any():
        print(f"\ndrift above the tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
