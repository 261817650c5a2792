"""The README's main job (the CPU demo) runs end to end at a tiny size and writes its outputs."""
import csv

import pytest

from script_helpers import load_script

demo = load_script("demo")


def test_demo_writes_grid_and_tables(tmp_path):
    demo.main(["--steps", "8", "--batch", "16", "--samples", "10", "--sampling-steps", "2", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "demo.csv")))
    assert [r["recipe"] for r in rows] == list(demo.RECIPES)
    flops = {r["recipe"]: float(r["gflops_per_step"]) for r in rows}
    assert flops["SG (0.5,0.9) ω=2.5"] < flops["SG (0.2,0.7) ω=2"] < flops["CFG ω=2"]
    assert abs(flops["CFG ω=2"] - 2 * flops["unguided"]) < 1e-3
    assert all(0.0 <= float(r["class_accuracy"]) <= 1.0 for r in rows)
    assert (tmp_path / "demo_grid.png").stat().st_size > 1000
    assert (tmp_path / "demo.md").read_text().count("\n") == len(rows) + 2
    assert (tmp_path / "run" / "step-0000001.pt").exists()  # the early snapshot used by AutoGuidance


def test_demo_refuses_fewer_samples_than_classes_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(["--samples", "5", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--samples 5: give at least 10" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained or written
