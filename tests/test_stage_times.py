"""scripts/stage_times.py: per-stage sums and shares from Snakemake benchmark files."""
from __future__ import annotations

from pathlib import Path

import pytest
from script_helpers import load_script

S = load_script("stage_times")
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(folder: Path, name: str, wall: float, cpu: float, rss: float = 100.0) -> None:
    (folder / f"{name}.tsv").write_text(HEADER + f"{wall}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t50\t{cpu}\n")


@pytest.fixture
def run(tmp_path):
    b = tmp_path / "benchmarks"
    b.mkdir()
    _bench(b, "train-routing", 300, 550, rss=2000)
    _bench(b, "sample-table2-cfg", 60, 40)
    _bench(b, "sample-table2-sg_fid", 40, 30)
    _bench(b, "sample-fig6-sg-w1.5-gs0-gw0.5", 100, 80)
    _bench(b, "prepare_data", 0, 0)
    (b / "evaluate-table2-cfg.tsv").write_text("")  # a job killed before its figures were written
    return tmp_path


def test_stages_sum_and_share(run):
    summary = {g["group"]: g for g in S.summarise(S.read_benchmarks(run))}
    assert set(summary) == {"train", "sample", "prepare_data"}  # the empty file is skipped
    assert summary["sample"]["jobs"] == 3 and summary["sample"]["wall"] == 200
    assert summary["train"]["cpu"] == 550 and summary["train"]["rss"] == 2000
    assert summary["train"]["share"] == pytest.approx(0.6)
    assert sum(g["share"] for g in summary.values()) == pytest.approx(1.0)
    assert list(summary)[0] == "train"  # largest first


def test_by_experiment_splits_rows_of_one_stage(run):
    summary = {g["group"]: g for g in S.summarise(S.read_benchmarks(run), by_experiment=True)}
    assert summary["sample table2"]["jobs"] == 2 and summary["sample fig6"]["wall"] == 100
    assert summary["train routing"]["jobs"] == 1


def test_markdown_and_missing_folder(run, tmp_path, capsys):
    S.main([str(run)])
    out = capsys.readouterr().out
    assert "| train | 1 | 5.0 min | 9.2 min | 60.0 % |" in out and "| **all** | 5 |" in out
    with pytest.raises(SystemExit, match="no benchmarks/"):
        S.main([str(tmp_path / "nowhere")])
