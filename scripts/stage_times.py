"""Where a workflow run spent its time: each stage's share, from Snakemake's benchmark files.

Every rule writes `results/<preset>/benchmarks/<stage>[-<experiment>[-<row>]].tsv` (wall seconds,
CPU seconds, peak RSS). This sums them per stage (and per experiment within sampling and
evaluation) and prints a Markdown table. Summed wall time exceeds the run's elapsed time when
jobs ran side by side; the shares are shares of the summed job time.

    python scripts/stage_times.py results/embedded            # per stage
    python scripts/stage_times.py results/embedded --by-experiment
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def read_benchmarks(root: Path) -> list[dict]:
    """One record per benchmark file: stage, experiment (or ''), wall s, CPU s, max RSS MiB."""
    bench = root / "benchmarks"
    if not bench.is_dir():
        raise SystemExit(f"no benchmarks/ under {root}: pass a results/<preset> folder of a run")
    records = []
    for path in sorted(bench.glob("*.tsv")):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:  # a job that was killed before Snakemake wrote its figures
            continue
        parts = path.stem.split("-", 2)
        records.append({
            "stage": parts[0],
            "experiment": parts[1] if len(parts) > 1 else "",
            "wall": float(rows[-1]["s"]),
            "cpu": float(rows[-1]["cpu_time"] or 0.0),
            "rss": float(rows[-1]["max_rss"] or 0.0),
        })
    return records


def summarise(records: list[dict], by_experiment: bool = False) -> list[dict]:
    """Jobs, summed wall and CPU seconds and share of summed wall per group, largest first."""
    groups: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0, "rss": 0.0})
    for r in records:
        key = f"{r['stage']} {r['experiment']}".strip() if by_experiment else r["stage"]
        g = groups[key]
        g["jobs"] += 1
        g["wall"] += r["wall"]
        g["cpu"] += r["cpu"]
        g["rss"] = max(g["rss"], r["rss"])
    total = sum(g["wall"] for g in groups.values()) or 1.0
    out = [{"group": k, **g, "share": g["wall"] / total} for k, g in groups.items()]
    return sorted(out, key=lambda g: -g["wall"])


def markdown(summary: list[dict]) -> str:
    lines = ["| stage | jobs | wall (summed) | CPU | share of wall | peak RSS |",
             "|---|---:|---:|---:|---:|---:|"]
    for g in summary:
        lines.append(f"| {g['group']} | {g['jobs']} | {g['wall'] / 60:.1f} min | {g['cpu'] / 60:.1f} min"
                     f" | {100 * g['share']:.1f} % | {g['rss']:.0f} MiB |")
    jobs = sum(g["jobs"] for g in summary)
    wall = sum(g["wall"] for g in summary)
    cpu = sum(g["cpu"] for g in summary)
    lines.append(f"| **all** | {jobs} | {wall / 60:.1f} min | {cpu / 60:.1f} min | 100 % | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="a results/<preset> folder")
    p.add_argument("--by-experiment", action="store_true", help="split stages by experiment")
    args = p.parse_args(argv)
    print(markdown(summarise(read_benchmarks(args.results), args.by_experiment)))


if __name__ == "__main__":
    main()
