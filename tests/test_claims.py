"""claims.py: each claim's test and verdict on results made to hold, fail or stay within the noise."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from sparse_guidance import claims as CL


def frame(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"method": r.get("row"), "setting": "—", "seeds": 3, **r} for r in rows], dtype=object)


def table(**fids) -> pd.DataFrame:
    """Rows given as name=(fid mean, fid std)."""
    return frame(*({"row": k, "fid": m, "fid_std": s, "gflops": 1.0} for k, (m, s) in fids.items()))


def test_a_comparison_needs_two_standard_deviations_of_the_difference():
    assert CL.compare((10.0, 1.0), (14.0, 1.0))["verdict"] == "holds"       # 4 > 2·√2
    assert CL.compare((10.0, 1.0), (12.0, 1.0))["verdict"] == "inconclusive"  # 2 < 2·√2
    assert CL.compare((14.0, 1.0), (10.0, 1.0))["verdict"] == "fails"
    assert CL.compare((10.0, None), (50.0, 1.0)) == {"difference": 40.0, "std": None, "verdict": "inconclusive"}
    r = CL.compare((0.9, 0.01), (0.5, 0.01), lower_is_better=False)
    assert r["verdict"] == "holds" and r["difference"] == pytest.approx(0.4) and r["std"] == pytest.approx(
        math.hypot(0.01, 0.01))


def test_c1_holds_only_when_every_model_shows_it():
    t2 = table(cfg=(30.0, 0.5), sg_fid=(20.0, 0.5))
    good = table(cfg_masking=(50.0, 1.0), sg_masking=(40.0, 1.0), cfg_routing=(45.0, 1.0), sg_routing=(35.0, 1.0))
    parts = CL.evaluate({"table1": good, "table2": t2})
    c1 = parts[parts["claim"] == "C1"]
    assert list(c1["verdict"]) == ["holds"] * 3 and "sg_masking below cfg_masking" in c1["test"].iloc[0]
    assert CL.by_claim(parts).set_index("Claim").loc["C1", "Verdict"] == "holds"
    masked_worse = table(cfg_masking=(40.0, 1.0), sg_masking=(50.0, 1.0), cfg_routing=(45.0, 1.0),
                         sg_routing=(35.0, 1.0))
    parts = CL.evaluate({"table1": masked_worse, "table2": t2})
    assert list(parts[parts["claim"] == "C1"]["verdict"]) == ["fails", "holds", "holds"]
    assert CL.by_claim(parts).set_index("Claim").loc["C1", "Verdict"] == "fails"
    noisy = table(cfg_masking=(50.0, 6.0), sg_masking=(45.0, 6.0), cfg_routing=(45.0, 1.0), sg_routing=(35.0, 1.0))
    parts = CL.evaluate({"table1": noisy, "table2": t2})
    assert CL.by_claim(parts).set_index("Claim").loc["C1", "Verdict"] == "inconclusive"


def test_claims_without_their_results_are_inconclusive_and_say_why():
    parts = CL.evaluate({"table2": table(cfg=(30.0, 0.5), sg_fid=(20.0, 0.5), sg_flops=(25.0, 0.5),
                                         unguided=(40.0, 0.5))})
    summary = CL.by_claim(parts).set_index("Claim")
    assert list(summary.index) == list(CL.CLAIMS)
    assert summary.loc["C2", "Verdict"] == "inconclusive" and "no results of fig4" in summary.loc["C2", "Test"]
    assert "single sampling seed" not in summary.loc["C2", "Test"]  # missing, not unreplicated
    assert summary.loc["C1", "Verdict"] == "holds"  # Table 2's part alone


def test_c3_counts_flops_and_measures_fid():
    t2 = frame({"row": "unguided", "fid": 40.0, "fid_std": 1.0, "gflops": 2.0},
               {"row": "sg_flops", "fid": 30.0, "fid_std": 1.0, "gflops": 1.5})
    assert list(CL.c3({"table2": t2}, {"table2": "FID@200"}))[0]["verdict"] == "holds"
    t2.loc[1, "gflops"] = 2.5
    verdicts = [p["verdict"] for p in CL.c3({"table2": t2}, {"table2": "FID@200"})]
    assert verdicts == ["fails", "holds"]


def test_c2_compares_dense_with_the_sparsest_inference():
    fig4 = frame(*({"row": f"g{g}", "gamma": g, "fid": f, "fid_std": 0.5} for g, f in ((0.0, 10.0), (0.5, 12.0),
                                                                                       (0.9, 20.0))))
    (part,) = CL.c2({"fig4": fig4}, {"fig4": "classifier FD@200"})
    assert part["verdict"] == "holds" and "γ 0.5: 12.00 ± 0.50" in part["numbers"]
    fig4.loc[2, "fid"] = 7.0
    assert CL.c2({"fig4": fig4}, {"fig4": "FD"})[0]["verdict"] == "fails"


def grid(cells: dict, std=0.5, **tags) -> pd.DataFrame:
    """Cells given as (omega, gamma_strong, gamma_weak) -> fid."""
    return frame(*({"row": f"w{w}-{a}-{b}", "omega": w, "gamma_strong": a, "gamma_weak": b, "fid": f,
                    "fid_std": std, **tags} for (w, a, b), f in cells.items()))


def test_c4_reads_where_the_valley_lies_at_the_smallest_and_the_largest_omega():
    up = {(1.5, 0.0, 0.3): 10.0, (1.5, 0.3, 0.6): 12.0, (2.5, 0.0, 0.3): 15.0, (2.5, 0.3, 0.6): 9.0}
    (part,) = CL.c4({"fig6": grid(up)}, {"fig6": "FD"})
    assert part["verdict"] == "holds" and "at ω 2.5: γ 0.3/0.6" in part["numbers"]
    down = {(1.5, 0.0, 0.3): 12.0, (1.5, 0.3, 0.6): 10.0, (2.5, 0.0, 0.3): 9.0, (2.5, 0.3, 0.6): 15.0}
    assert CL.c4({"fig6": grid(down)}, {"fig6": "FD"})[0]["verdict"] == "fails"
    still = {(1.5, 0.0, 0.3): 10.0, (1.5, 0.3, 0.6): 12.0, (2.5, 0.0, 0.3): 9.0, (2.5, 0.3, 0.6): 15.0}
    part = CL.c4({"fig6": grid(still)}, {"fig6": "FD"})[0]
    assert part["verdict"] == "inconclusive" and "did not move" in part["test"]
    assert "single sampling seed" not in part["test"]  # nothing was compared, seeds or not
    near = {(1.5, 0.0, 0.3): 10.0, (1.5, 0.3, 0.6): 12.0, (2.5, 0.0, 0.3): 9.6, (2.5, 0.3, 0.6): 9.0}
    assert CL.c4({"fig6": grid(near)}, {"fig6": "FD"})[0]["verdict"] == "inconclusive"  # 0.6 < 2·0.71
    fig8 = pd.concat([grid(up, model="routing"), grid(down, model="masking")], ignore_index=True)
    assert [p["verdict"] for p in CL.c4({"fig8": fig8}, {"fig8": "FD"})] == ["holds", "fails"]


def test_c5_uses_the_distances_to_the_conditional_prediction():
    def rows(sg, cfg, seeds_std=None):
        return frame(*({"row": r, "recipe": r, "role": "compare", "distance": "lpips", "distance_value": v,
                        "distance_std": 0.1, "distance_n": 100, "distance_value_std": seeds_std}
                       for r, v in (("sg", sg), ("cfg", cfg))))
    assert CL.c5({"fig7": rows(0.20, 0.30)}, {})[0]["verdict"] == "holds"  # standard errors 0.01 each
    part = CL.c5({"fig7": rows(0.20, 0.30, seeds_std=0.05)}, {})[0]
    assert part["verdict"] == "inconclusive" and "std over seeds" in part["numbers"]


def test_c6_compares_the_best_omega_of_each_at_the_end_of_training():
    df = frame({"row": "ft-a", "grid": "cfg_ft", "iteration": 1400, "omega": 1.5, "fid": 20.0, "fid_std": 0.5},
               {"row": "ft-b", "grid": "cfg_ft", "iteration": 1400, "omega": 2.5, "fid": 18.0, "fid_std": 0.5},
               {"row": "ft-c", "grid": "cfg_ft", "iteration": 800, "omega": 2.5, "fid": 5.0, "fid_std": 0.5},
               {"row": "sg-a", "grid": "sg", "iteration": 1200, "omega": 2.5, "fid": 12.0, "fid_std": 0.5},
               {"row": "sg-b", "grid": "sg", "iteration": 600, "omega": 2.5, "fid": 1.0, "fid_std": 0.5})
    (part,) = CL.c6({"fig5": df}, {"fig5": "FD"})
    assert part["verdict"] == "holds" and "(ω 2.5) 18.00" in part["numbers"]  # the final runs' best ω only


def test_c7_asks_for_a_gain_over_ag_at_every_age_and_recovered_quality():
    def fig7(best_by_age, ag_by_age, std=0.5):
        rows = [{"row": f"agsg-{s}", "grid": "ag_sg", "aux_step": s, "omega": 2.0, "gamma_strong": 0.3,
                 "gamma_weak": 0.6, "fid": f, "fid_std": std} for s, f in best_by_age.items()]
        rows += [{"row": f"ag-{s}", "grid": "ag", "aux_step": s, "omega": 2.0, "fid": f, "fid_std": std}
                 for s, f in ag_by_age.items()]
        return frame(*rows)
    parts = CL.c7({"fig7": fig7({240: 10.0, 900: 10.5}, {240: 14.0, 900: 20.0})}, {"fig7": "FD"})
    assert [p["verdict"] for p in parts] == ["holds", "holds", "holds"]
    parts = CL.c7({"fig7": fig7({240: 10.0, 900: 16.0}, {240: 14.0, 900: 20.0})}, {"fig7": "FD"})
    assert [p["verdict"] for p in parts] == ["holds", "holds", "fails"]  # the old checkpoint is not recovered
    assert CL.verdict_of(p["verdict"] for p in parts) == "fails"
