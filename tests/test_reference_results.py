"""scripts/reference_results.py: a run's tables and figures exported with their provenance, and
the drift of a fresh run from them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_helpers import load_script

RR = load_script("reference_results")


def fake_run(root, fid_cfg=128.5):
    (root / "tables").mkdir(parents=True)
    (root / "figures").mkdir()
    (root / "tables" / "table2.csv").write_text(f"row,method,fid,gflops\nunguided,SiT,146.6,0.229\ncfg,+CFG,{fid_cfg},0.458\n")
    (root / "tables" / "table2.md").write_text("| Method | FID |\n")
    (root / "figures" / "fig4.csv").write_text("row,gamma,classifier_fd\ng0,0.0,60.3\ng9,0.9,92.2\n")
    (root / "figures" / "fig4.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "figures" / "fig4.pdf").write_bytes(b"%PDF-")
    return root


def test_export_keeps_tables_figures_and_provenance(tmp_path):
    run, dest = fake_run(tmp_path / "results" / "embedded"), tmp_path / "docs" / "embedded"
    (dest / "figures").mkdir(parents=True)
    (dest / "figures" / "stale.png").write_bytes(b"old")  # replaced whole
    assert RR.main(["export", str(run), str(dest), "--command", "bash scripts/run.sh", "--wall-time", "27 min"]) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "figures/fig4.csv", "figures/fig4.png", "provenance.json", "tables/table2.csv", "tables/table2.md"]
    prov = json.loads((dest / "provenance.json").read_text())
    assert prov["command"] == "bash scripts/run.sh" and prov["wall_time"] == "27 min"
    assert prov["libraries"]["torch"] and prov["machine"]["cpu"] and isinstance(prov["machine"]["isa"], list)
    if Path("/proc/cpuinfo").exists() and "cpu family" in Path("/proc/cpuinfo").read_text():
        assert prov["machine"]["cpu_family"].isdigit() and prov["machine"]["cpu_model"].isdigit()
    assert prov["commit"] is None or len(prov["commit"].removesuffix("+dirty")) == 40


def test_drift_reports_each_changed_number(tmp_path, capsys):
    stored = tmp_path / "stored"
    fake_run(tmp_path / "a")
    RR.export(tmp_path / "a", stored, "cmd")
    same = fake_run(tmp_path / "same")
    assert RR.drift(same, stored).empty
    assert RR.main(["drift", str(same), str(stored)]) == 0
    assert "no drift" in capsys.readouterr().out
    moved = fake_run(tmp_path / "moved", fid_cfg=126.0)
    df = RR.drift(moved, stored)
    assert len(df) == 1
    r = df.iloc[0]
    assert (r["file"], r["row"], r["column"]) == ("tables/table2.csv", "cfg", "fid")
    assert r["delta"] == pytest.approx(-2.5) and r["relative"] == pytest.approx(2.5 / 128.5)
    assert RR.main(["drift", str(moved), str(stored)]) == 0            # report only
    out = capsys.readouterr().out
    assert "tables/table2.csv" in out and "1.95%" in out
    assert RR.main(["drift", str(moved), str(stored), "--tolerance", "0.01"]) == 1
    (moved / "figures" / "fig4.csv").unlink()
    assert "missing" in set(RR.drift(moved, stored)["fresh"])


def test_drift_needs_stored_results(tmp_path):
    with pytest.raises(SystemExit, match="provenance.json"):
        RR.main(["drift", str(fake_run(tmp_path / "a")), str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="results folder"):
        RR.main(["export", str(tmp_path), str(tmp_path / "d"), "--command", "x"])
