"""The paper's figures (figures.py) on small synthetic data: labels, panels, lines, annotations."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from sparse_guidance import figures as F
from sparse_guidance.errors import ConfigError


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


GAMMAS = [0.0, 0.25, 0.5, 0.75]


def sweep(omegas=(1.3, 1.5), rows=None):
    """Cells only where γ_strong < γ_weak, as the workflow's sweep; FID = a known function."""
    cells = []
    for r in rows or [None]:
        for om in omegas:
            for gs in GAMMAS:
                for gw in GAMMAS:
                    if gs < gw:
                        c = {"omega": om, "gamma_strong": gs, "gamma_weak": gw,
                             "fid": 10 + 10 * gs + 3 * abs(gw - 0.5) + om}
                        if r is not None:
                            c["rows"] = r
                        cells.append(c)
    return cells


def panels(fig):
    return [ax for ax in fig.axes if ax.images]


def texts_at(ax):
    return {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts}


def test_heatmaps_one_panel_per_omega_with_values_at_their_cells():
    fig = F.heatmaps(sweep(), title="Figure 6")
    axs = panels(fig)
    assert len(axs) == 2
    assert [ax.get_title() for ax in axs] == [r"$\omega$ = 1.3", r"$\omega$ = 1.5"]
    assert fig._suptitle.get_text() == "Figure 6"
    ax = axs[0]
    xt = [float(t.get_text()) for t in ax.get_xticklabels()]
    yt = [float(t.get_text()) for t in ax.get_yticklabels()]
    assert xt == GAMMAS and yt == GAMMAS
    assert "strong" in ax.get_xlabel() and "weak" in ax.get_ylabel()
    at = texts_at(ax)
    # the known cell γ_strong=0.25, γ_weak=0.75 at ω=1.3: 10 + 2.5 + 0.75 + 1.3
    assert at[(xt.index(0.25), yt.index(0.75))] == "14.55"
    assert len(ax.texts) == 6  # the strict upper triangle of a 4x4 grid
    # lower triangle (γ_strong ≥ γ_weak) is blank: masked in the image, no annotation
    data = ax.images[0].get_array()
    for i, gw in enumerate(GAMMAS):
        for j, gs in enumerate(GAMMAS):
            assert bool(np.ma.getmaskarray(data)[i, j]) == (gs >= gw)
            assert ((j, i) in at) == (gs < gw)
    # one shared colour scale
    assert axs[0].images[0].norm is axs[1].images[0].norm


def test_heatmaps_marks_the_best_cell_and_clips_the_colour_range():
    cells = sweep(omegas=(1.5,))
    for c in cells:
        if (c["gamma_strong"], c["gamma_weak"]) == (0.0, 0.25):
            c["fid"] = None  # a cell without a result yet
    fig = F.heatmaps(cells, clip=(11.0, 13.0))
    (ax,) = panels(fig)
    best = [p for p in ax.patches if p.get_gid() == "best"]
    assert len(best) == 1
    x0, y0 = best[0].get_xy()
    # the minimum: γ_strong = 0, γ_weak = 0.5 (FID 11.5); the None cell stays blank
    assert (x0 + 0.5, y0 + 0.5) == (GAMMAS.index(0.0), GAMMAS.index(0.5))
    assert (0, 1) not in texts_at(ax)
    norm = ax.images[0].norm
    assert (norm.vmin, norm.vmax) == (11.0, 13.0)
    assert texts_at(ax)[(0, 3)] == "12.25"  # annotations keep the true value


def test_heatmaps_grid_of_rows_by_facets_and_errors():
    fig = F.heatmaps(sweep(omegas=(1.3, 1.5, 1.7), rows=["routing", "masking"]))
    axs = panels(fig)
    assert len(axs) == 6
    assert axs[0].get_ylabel().startswith("routing") and axs[3].get_ylabel().startswith("masking")
    with pytest.raises(ConfigError, match="two cells"):
        F.heatmaps(sweep() + sweep()[:1])
    with pytest.raises(ConfigError):
        F.heatmaps([])


def test_best_over_picks_the_minimum_per_group_and_skips_none():
    pts = [
        {"method": "CFG", "step": 100, "omega": 1.5, "fid": 9.0},
        {"method": "CFG", "step": 100, "omega": 2.0, "fid": 7.0},
        {"method": "CFG", "step": 100, "omega": 3.0, "fid": None},
        {"method": "SG", "step": 100, "omega": 1.5, "fid": 6.0},
        {"method": "SG", "step": 50, "omega": 1.5, "fid": float("nan")},
        {"method": "SG", "step": 50, "omega": 2.0, "fid": 8.0},
        {"method": "CFG", "step": 50, "omega": 2.0, "fid": 12.0},
    ]
    before = [dict(p) for p in pts]
    best = F.best_over(pts)
    assert [(b["method"], b["step"], b["omega"]) for b in best] == [
        ("CFG", 50, 2.0), ("CFG", 100, 2.0), ("SG", 50, 2.0), ("SG", 100, 1.5)]
    assert pts == before  # pure
    hi = F.best_over(pts, key="fid", by="method", lower_is_better=False)
    assert [(b["method"], b["fid"]) for b in hi] == [("CFG", 12.0), ("SG", 8.0)]
    assert F.best_over([{"method": "a", "fid": None}]) == []


def test_curves_one_line_per_group_sorted_with_legend_and_error_bars():
    pts = [{"method": m, "step": s, "fid": f, "std": 0.1}
           for m, off in (("CFG", 2), ("SG", 0)) for s, f in ((200, 5 + off), (100, 8 + off), (300, 4 + off))]
    fig = F.curves(pts, title="Figure 5", logy=True)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2
    assert list(ax.get_lines()[0].get_xdata()) == [100, 200, 300]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CFG", "SG"]
    assert ax.get_title() == "Figure 5" and ax.get_xlabel() == "training iterations" and ax.get_ylabel() == "FID"
    assert ax.get_yscale() == "log"
    fig = F.curves(pts, yerr="std")
    assert len(fig.axes[0].containers) == 2
    with pytest.raises(ConfigError):
        F.curves([{"method": "a", "step": 1, "fid": None}])


def test_gamma_sweep_is_a_line_over_gamma():
    pts = [{"gamma": g, "fid": 5 + 20 * g * g} for g in (0.5, 0.0, 0.25, 0.75)]
    fig = F.gamma_sweep(pts, title="Figure 4")
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0.0, 0.25, 0.5, 0.75]
    assert ax.get_legend() is None and "gamma" in ax.get_xlabel() and ax.get_title() == "Figure 4"


def test_scatter_tradeoff_labels_points_baseline_lines_and_highlight():
    rows = [
        {"method": "SiT + routing", "gflops": 114.4, "fid": 4.89, "baseline": True},
        {"method": "+CFG", "gflops": 228.8, "fid": 2.57},
        {"method": "+SG_FLOPS", "gflops": 97.7, "fid": 2.14},
        {"method": "+SG_FID", "gflops": 173.2, "fid": 1.58},
        {"method": "+AG", "gflops": 228.8, "fid": None},
    ]
    fig = F.scatter_tradeoff(rows, title="Figure 1", highlight=["+SG_FLOPS", "+SG_FID"])
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(["SiT + routing", "+CFG", "+SG_FLOPS", "+SG_FID"])
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert {tuple(ln.get_ydata()) for ln in dashed} >= {(4.89, 4.89)}
    assert {tuple(ln.get_xdata()) for ln in dashed} >= {(114.4, 114.4)}
    colors = {t.get_text(): t.get_color() for t in ax.texts}
    assert colors["+SG_FID"] == colors["+SG_FLOPS"] != colors["+CFG"]
    assert len(ax.collections) == 4
    assert ax.get_xlabel() == "GFLOPs per sampling step" and ax.get_ylabel() == "FID"


def test_scatter_tradeoff_draws_the_std_over_seeds_as_error_bars():
    """Fig. 1: a row with a std gets a vertical bar of exactly ± std at its point; a row without (one
    seed) gets none, and no bars are drawn unless asked."""
    from matplotlib.container import ErrorbarContainer
    rows = [{"method": "unguided", "gflops": 0.23, "fid": 146.5, "fid_std": 3.7, "baseline": True},
            {"method": "+CFG", "gflops": 0.46, "fid": 128.5, "fid_std": 3.4},
            {"method": "+SG_FID", "gflops": 0.36, "fid": 123.7, "fid_std": None}]
    bars = [c for c in F.scatter_tradeoff(rows, yerr="fid_std").axes[0].containers if isinstance(c, ErrorbarContainer)]
    spans = sorted(tuple(np.round(seg[:, 1], 6)) for c in bars for seg in c.lines[2][0].get_segments())
    assert spans == [(125.1, 131.9), (142.8, 150.2)]
    assert not [c for c in F.scatter_tradeoff(rows).axes[0].containers if isinstance(c, ErrorbarContainer)]


def test_bars_with_error_bars_and_groups():
    rows = [{"label": m, "value": v, "std": 0.01} for m, v in (("CFG", 0.4), ("SG", 0.2), ("AG", 0.3))]
    fig = F.bars(rows, yerr="std", ylabel="LPIPS to conditional", title="Figure 7")
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CFG", "SG", "AG"]
    assert [p.get_height() for p in ax.patches] == [0.4, 0.2, 0.3]
    assert ax.get_ylabel() == "LPIPS to conditional" and ax.get_title() == "Figure 7"
    grouped = [{"label": m, "value": v * om, "omega": om} for m, v in (("CFG", 0.4), ("SG", 0.2))
               for om in (1.5, 2.5)]
    fig = F.bars(grouped, group="omega")
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and len(ax.get_legend().get_texts()) == 2


def test_labelled_grid_rows_labels_and_truncation():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (9, 8, 8), dtype=np.uint8)
    grey1 = rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8)
    fig = F.labelled_grid({"Unguided": rgb, "SG": grey, "CFG": grey1}, ncols=8, title="Figure A5",
                          col_titles=[f"c{i}" for i in range(8)])
    assert len(fig.axes) == 3
    assert [ax.get_ylabel() for ax in fig.axes] == ["Unguided", "SG", "CFG"]
    widths = {ax.images[0].get_array().shape[1] for ax in fig.axes}
    assert len(widths) == 1  # the same number of columns in every row
    pad = max(1, 8 // 32)
    assert widths == {8 * 8 + 7 * pad}
    assert np.array_equal(fig.axes[0].images[0].get_array()[:, :8], rgb[0])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [f"c{i}" for i in range(8)]
    assert fig._suptitle.get_text() == "Figure A5"
    # the shortest row sets the count
    fig = F.labelled_grid({"a": rgb[:3], "b": list(rgb[:5])})
    assert fig.axes[0].images[0].get_array().shape[1] == 3 * 8 + 2 * pad
    with pytest.raises(ConfigError, match="empty"):
        F.labelled_grid({})
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        F.labelled_grid({"a": rgb[:0]})


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    fig = F.gamma_sweep([{"gamma": 0.0, "fid": 3.0}, {"gamma": 0.5, "fid": 4.0}])
    paths = F.save_figure(fig, tmp_path / "out" / "fig4")
    assert paths == [tmp_path / "out" / "fig4.png", tmp_path / "out" / "fig4.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig4.pdf", "fig4.png"]
    # a stem with a dot in its name keeps it; a .png suffix is dropped
    paths = F.save_figure(fig, tmp_path / "fig.v2.png")
    assert [p.name for p in paths] == ["fig.v2.png", "fig.v2.pdf"]


def test_curves_shows_large_iteration_counts_in_thousands():
    fig = F.curves([{"step": 100_000, "fid": 5.0}, {"step": 1_500_000, "fid": 3.0}], group=None)
    fmt = fig.axes[0].xaxis.get_major_formatter()
    assert fmt(250_000, 0) == "250k" and fmt(1_500_000, 0) == "1.5M"
    assert fig.axes[0].get_legend() is None


def test_ticks_show_values_not_an_offset():
    """Fig. 2's FIDs near 184.5 and Fig. 6's colour bar near 183.6 once read '+1.845e2': no offset."""
    pts = [{"method": m, "step": s, "fid": 184.50 + 0.01 * s + 0.002 * k} for k, m in enumerate(["a", "b"])
           for s in (1, 2, 3)]
    fig = F.curves(pts)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert any(t.get_text().startswith("184.5") for t in ax.get_yticklabels())
    cells = [{**c, "fid": 183.6 + 0.001 * c["fid"]} for c in sweep(omegas=(1.5,))]
    fig = F.heatmaps(cells)
    fig.canvas.draw()
    cbar = next(a for a in fig.axes if not a.images)
    assert cbar.yaxis.get_offset_text().get_text() == ""
    assert all(t.get_text() == "" or t.get_text().startswith("183.6") for t in cbar.get_yticklabels())


def test_curve_legend_sits_beside_the_axes():
    pts = [{"method": m, "step": s, "fid": 10 - s + k} for k, m in enumerate(["CFG", "SG"]) for s in (1, 2, 3)]
    fig = F.curves(pts)
    fig.canvas.draw()
    ax = fig.axes[0]
    r = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(r).x0 >= ax.get_window_extent(r).x1  # never over a point


def test_scatter_labels_of_close_points_do_not_overlap():
    """Fig. 1: '+ICG' and '+CFG' at nearly the same (GFLOPs, FID) once printed over each other."""
    rows = [{"method": "SiT", "gflops": 0.15, "fid": 120.0, "baseline": True},
            {"method": "+CFG", "gflops": 0.30, "fid": 95.0}, {"method": "+ICG", "gflops": 0.30, "fid": 95.3},
            {"method": "+AG", "gflops": 0.30, "fid": 94.8}, {"method": "+SG_FLOPS", "gflops": 0.13, "fid": 96.0}]
    fig = F.scatter_tradeoff(rows, highlight=["+SG_FLOPS"])
    r = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, r) for t in fig.axes[0].texts]  # the labels, not their leader lines
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
