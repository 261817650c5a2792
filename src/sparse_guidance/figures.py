"""The paper's figures as plain plotting functions.

Every function takes plain data (a DataFrame of results.load or a list of dicts; dicts of uint8
image arrays), draws with matplotlib's object API and returns the Figure; nothing here reads a
config or a file, and only `save_figure` writes (the figure, and the data behind it as CSV). Which function draws which figure of the paper:

- `scatter_tradeoff`: Figure 1 (right, top), FID against GFLOPs per sampling step
- `curves` (with `best_over`): Figures 2 and 5 (left), FID over training iterations
- `gamma_sweep`: Figure 4, quality against inference-time sparsity without guidance
- `heatmaps`: Figures 6 and 8, FID over (γ_strong, γ_weak) per guidance scale ω
- `bars`: Figure 7 (left), LPIPS distance to the conditional prediction per method
- `labelled_grid`: Figures 4, 5 (right), 8 and A5-A9, rows of samples with a label on the left
"""
from __future__ import annotations

import math
from numbers import Number
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator, ScalarFormatter

from .io import atomic_open, write_text
from .errors import ConfigError

# Axis and panel names for the keys the workflow uses; any other key is shown as it is.
LABELS = {
    "omega": r"$\omega$",
    "gamma": r"$\gamma$",
    "gamma_strong": r"$\gamma_{\mathrm{strong}}$",
    "gamma_weak": r"$\gamma_{\mathrm{weak}}$",
    "fid": "FID",
    "gflops": "GFLOPs",
    "step": "training iterations",
    "lpips": "LPIPS",
}
HIGHLIGHT_COLOR = "tab:red"  # SG points in Figure 1
OTHER_COLOR = "tab:blue"


def records(points) -> list[dict]:
    """Plot input as a list of dicts: a DataFrame's rows (missing values as None), or the list itself."""
    if hasattr(points, "to_dict"):
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in points.to_dict("records")]
    return list(points)


def save_figure(fig, stem, data=None) -> list[Path]:
    """Write `<stem>.png` (150 dpi) and `<stem>.pdf` atomically, creating folders, and with `data`
    (a DataFrame: one row per plotted point or cell) `<stem>.csv`; return the paths. A stem that
    already ends in .png or .pdf loses that suffix first."""
    stem = Path(stem)
    if stem.suffix.lower() in (".png", ".pdf"):
        stem = stem.with_suffix("")
    paths = []
    for fmt, kw in (("png", {"dpi": 150}), ("pdf", {"metadata": {"CreationDate": None}})):
        path = stem.parent / f"{stem.name}.{fmt}"
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format=fmt, bbox_inches="tight", **kw)
        paths.append(path)
    if data is not None:
        paths.append(write_text(stem.parent / f"{stem.name}.csv", data.to_csv(index=False)))
    return paths


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _label(key) -> str:
    return LABELS.get(key, str(key))


def _missing(v) -> bool:
    """None or NaN: a result that does not exist (yet)."""
    return v is None or (isinstance(v, Number) and math.isnan(v))


def _sort_key(v):
    """Sorts numbers numerically, then strings, then None, without comparing across types."""
    if v is None:
        return (2, 0, "")
    if isinstance(v, Number):
        return (0, v, "")
    return (1, 0, str(v))


def _ordered(values) -> list:
    """Distinct values: sorted when all are numbers, else in order of first appearance."""
    seen = list(dict.fromkeys(values))
    if all(isinstance(v, Number) for v in seen):
        return sorted(seen)
    return seen


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, Number) else str(v)


def _thousands(v, _pos=None) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    return f"{v / 1e3:g}k" if abs(v) >= 1e3 else f"{v:g}"


def _plain_ticks(*axes) -> None:
    """Tick labels show the values themselves: no offset ('+1.845e2' beside the axis) and no
    scientific multiplier on linear axes (colour bars included)."""
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_formatter(), ScalarFormatter):
                axis.get_major_formatter().set_useOffset(False)
                axis.get_major_formatter().set_scientific(False)


def _spread_labels(ax, texts, step_points: float = 9.0, tries: int = 12) -> None:
    """Move point labels (annotations) apart until no two overlap: each label, in order, steps up
    or down (alternately, further each time) from its point while it overlaps one placed before."""
    renderer = ax.figure.canvas.get_renderer()
    extent = lambda t: Text.get_window_extent(t, renderer)  # the text alone, not its leader line
    placed = []
    for t in texts:
        x0, y0 = t.xyann
        for k in range(tries + 1):
            shift = (k + 1) // 2 * step_points * (1 if k % 2 else -1)
            t.xyann = (x0, y0 + shift)
            if not any(extent(t).expanded(1.02, 1.1).overlaps(b) for b in placed):
                break
        placed.append(extent(t))


def _finish(fig, ax, title, xlabel, ylabel):
    _plain_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def _axes(ax, figsize):
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


# ---------------------------------------------------------------------------------------------
# Figures 2, 4, 5 (left): lines over training iterations or sparsity
# ---------------------------------------------------------------------------------------------

def best_over(points, *, key="fid", by=("method", "step"), lower_is_better=True) -> list[dict]:
    """For each combination of the `by` keys keep the point with the best `key` (Figures 2 and 5
    plot each method at its best guidance scale ω); points whose `key` is None or NaN are skipped.
    Returns copies of the kept points, sorted by their `by` values."""
    by = (by,) if isinstance(by, str) else tuple(by)
    best = {}
    for p in records(points):
        v = p.get(key)
        if _missing(v):
            continue
        k = tuple(p.get(b) for b in by)
        if k not in best or (v < best[k][key] if lower_is_better else v > best[k][key]):
            best[k] = p
    return [dict(best[k]) for k in sorted(best, key=lambda k: tuple(_sort_key(v) for v in k))]


def curves(points, *, x="step", y="fid", group="method", yerr=None, title="",
           xlabel="training iterations", ylabel="FID", logy=False, logx=False, styles=None, ax=None):
    """Figures 2 and 5 (left): one line with markers per `group`, sorted by `x`, with error bars
    from the key `yerr` when given (e.g. the std over seeds). `styles` maps a group to extra plot
    keyword arguments (colour, marker, ...); `ax` draws into an existing axes."""
    points = [p for p in records(points) if not _missing(p.get(x)) and not _missing(p.get(y))]
    if not points:
        raise ConfigError(f"curves: no point has both {x!r} and {y!r}; nothing to plot")
    fig, ax = _axes(ax, (5, 3.5))
    groups = list(dict.fromkeys(p.get(group) for p in points))
    for g in groups:
        pts = sorted((p for p in points if p.get(group) == g), key=lambda p: p[x])
        xs, ys = [p[x] for p in pts], [p[y] for p in pts]
        kw = {"marker": "o", "markersize": 4, "label": "" if g is None else str(g), **(styles or {}).get(g, {})}
        if yerr is not None:
            errs = [0.0 if _missing(p.get(yerr)) else p[yerr] for p in pts]
            ax.errorbar(xs, ys, yerr=errs, capsize=3, **kw)
        else:
            ax.plot(xs, ys, **kw)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    elif max(abs(p[x]) for p in points) >= 10_000:  # training iterations: 100k, 1.2M
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    if len(groups) > 1 or groups[0] is not None:  # beside the axes, where it cannot hide a point
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _finish(fig, ax, title, xlabel, ylabel)


def gamma_sweep(points, *, x="gamma", y="fid", title="", xlabel=r"inference-time sparsity $\gamma$",
                ylabel="FID", group=None, yerr=None, ax=None):
    """Figure 4: quality against the inference-time sparsity γ without guidance (ω = 1); one line,
    or one per `group` (e.g. routing vs. masking)."""
    return curves(points, x=x, y=y, group=group, yerr=yerr, title=title, xlabel=xlabel,
                  ylabel=ylabel, ax=ax)


# ---------------------------------------------------------------------------------------------
# Figures 6 and 8: FID heatmaps over (γ_strong, γ_weak)
# ---------------------------------------------------------------------------------------------

def heatmaps(cells, *, value="fid", facet="omega", x="gamma_strong", y="gamma_weak", title="",
             value_label="FID", clip=None, cmap="viridis_r", rows="rows", fmt="{:.2f}",
             xlabel=None, ylabel=None, panel_size=2.6, same_ticks=True):
    """Figures 6 and 8: one heatmap per `facet` value (e.g. per ω) with `x` (γ_strong) across and
    `y` (γ_weak) up, each cell annotated with its value, grey where there is no cell (the lower
    triangle γ_strong ≥ γ_weak) or its value is None, one colour scale for all panels (clipped
    to `clip=(lo, hi)` when given; the annotations keep the true values) and a box around the
    best (lowest) cell of each panel. Cells with a `rows` key (e.g. routing / masking) give a
    grid of rows × facets. Cells without a `facet` key share one panel. With `same_ticks` both
    axes list every γ seen on either axis, so the blank triangle shows as in the paper."""
    cells = [c for c in records(cells) if not _missing(c.get(x)) and not _missing(c.get(y))]
    if not cells:
        raise ConfigError(f"heatmaps: no cell has both {x!r} and {y!r}; nothing to plot")
    row_vals = list(dict.fromkeys(c.get(rows) for c in cells))
    facet_vals = _ordered(c.get(facet) for c in cells)
    xs, ys = _ordered(c[x] for c in cells), _ordered(c[y] for c in cells)
    if same_ticks and all(isinstance(v, Number) for v in xs + ys):
        xs = ys = sorted(set(xs) | set(ys))
    grids = {}  # (row, facet) -> array [len(ys), len(xs)] with NaN where no value
    for c in cells:
        grid = grids.setdefault((c.get(rows), c.get(facet)), np.full((len(ys), len(xs)), np.nan))
        i, j = ys.index(c[y]), xs.index(c[x])
        if not np.isnan(grid[i, j]):
            raise ConfigError(f"heatmaps: two cells at {x}={c[x]}, {y}={c[y]}, {facet}={c.get(facet)}"
                              f"{'' if c.get(rows) is None else f', {rows}={c.get(rows)}'}; "
                              "pass one value per cell (e.g. the mean over seeds)")
        if not _missing(c.get(value)):
            grid[i, j] = float(c[value])

    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    if clip is not None:
        vmin, vmax = clip
    elif finite.size:
        vmin, vmax = float(finite.min()), float(finite.max())
    else:
        vmin, vmax = 0.0, 1.0
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    cm = plt.get_cmap(cmap).with_extremes(bad="lightgrey")
    norm = plt.Normalize(vmin, vmax, clip=True)

    nr, nc = len(row_vals), len(facet_vals)
    fig, axes = plt.subplots(nr, nc, figsize=(panel_size * nc + 1.2, panel_size * nr + 0.4),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    xlabel = _label(x) if xlabel is None else xlabel
    ylabel = _label(y) if ylabel is None else ylabel
    im = None
    for r, rv in enumerate(row_vals):
        for f, fv in enumerate(facet_vals):
            ax = axes[r, f]
            grid = grids.get((rv, fv), np.full((len(ys), len(xs)), np.nan))
            im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", cmap=cm, norm=norm, aspect="auto")
            for i in range(len(ys)):
                for j in range(len(xs)):
                    v = grid[i, j]
                    if np.isfinite(v):
                        rgb = cm(norm(v))[:3]
                        dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
                        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                                color="white" if dark else "black")
            if np.isfinite(grid).any():
                i, j = np.unravel_index(np.nanargmin(grid), grid.shape)
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                                       linewidth=2, gid="best"))
            ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs], fontsize=7)
            ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys], fontsize=7)
            if r == 0 and fv is not None:
                ax.set_title(f"{_label(facet)} = {_fmt(fv)}", fontsize=9)
            if r == nr - 1:
                ax.set_xlabel(xlabel)
            if f == 0:
                ax.set_ylabel(ylabel if rv is None else f"{rv}\n{ylabel}")
    cbar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, extend="both" if clip else "neither")
    cbar.set_label(value_label)
    _plain_ticks(cbar.ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 1 (right, top) and Figure 7 (left)
# ---------------------------------------------------------------------------------------------

def scatter_tradeoff(rows, *, x="gflops", y="fid", label="method", title="",
                     xlabel="GFLOPs per sampling step", ylabel="FID", highlight=None, yerr=None, ax=None):
    """Figure 1 (right, top): each method a point labelled with its name; dashed lines at the FID
    and GFLOPs of the row marked `baseline: True` (the unguided model); methods named in
    `highlight` (a name, a list of names or a predicate on the name; the SG rows) in red; a
    vertical error bar from the key `yerr` where a row has it (e.g. the std over seeds)."""
    rows = [r for r in records(rows) if not _missing(r.get(x)) and not _missing(r.get(y))]
    if not rows:
        raise ConfigError(f"scatter_tradeoff: no row has both {x!r} and {y!r}; nothing to plot")
    if highlight is None:
        is_hl = lambda name: False
    elif callable(highlight):
        is_hl = highlight
    else:
        names = {highlight} if isinstance(highlight, str) else set(highlight)
        is_hl = names.__contains__
    fig, ax = _axes(ax, (5, 3.5))
    for r in rows:
        if r.get("baseline"):
            ax.axhline(r[y], linestyle="--", color="grey", linewidth=1, zorder=0)
            ax.axvline(r[x], linestyle="--", color="grey", linewidth=1, zorder=0)
    texts = []
    for r in rows:
        name = str(r.get(label, ""))
        hl = is_hl(name)
        color = HIGHLIGHT_COLOR if hl else OTHER_COLOR
        ax.scatter([r[x]], [r[y]], color=color, s=40 if hl else 25, zorder=3,
                   marker="*" if hl else "o")
        if yerr is not None and not _missing(r.get(yerr)):
            ax.errorbar([r[x]], [r[y]], yerr=[r[yerr]], color=color, linewidth=0.8, capsize=3, zorder=2)
        texts.append(ax.annotate(name, (r[x], r[y]), xytext=(5, 3), textcoords="offset points", fontsize=8,
                                 color=color, fontweight="bold" if hl else "normal",
                                 arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5, "shrinkA": 0,
                                             "shrinkB": 3}))
    ax.margins(0.15)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # values in full (no offset) need room: 5 ticks
    fig = _finish(fig, ax, title, xlabel, ylabel)
    _spread_labels(ax, texts)  # after the layout: positions in points are final
    return fig


def bars(rows, *, x="label", y="value", yerr=None, group=None, title="", ylabel="", xlabel="",
         ax=None, colors=None):
    """Figure 7 (left): one bar per `x` (e.g. LPIPS to the conditional prediction per method),
    error bars from the key `yerr`, and side-by-side bars per `group` (e.g. per ω) with a legend."""
    rows = [r for r in records(rows) if not _missing(r.get(y))]
    if not rows:
        raise ConfigError(f"bars: no row has a value for {y!r}; nothing to plot")
    cats = list(dict.fromkeys(r.get(x) for r in rows))
    groups = _ordered(r.get(group) for r in rows) if group is not None else [None]
    width = 0.8 / len(groups)
    fig, ax = _axes(ax, (max(3.5, 0.6 * len(cats) * len(groups) + 1.5), 3.5))
    for k, g in enumerate(groups):
        sel = [r for r in rows if group is None or r.get(group) == g]
        pos = [cats.index(r.get(x)) + (k - (len(groups) - 1) / 2) * width for r in sel]
        errs = None
        if yerr is not None:
            errs = [0.0 if _missing(r.get(yerr)) else r[yerr] for r in sel]
        kw = {} if g is None else {"label": f"{_label(group)} = {_fmt(g)}"}
        if colors is not None:
            kw["color"] = colors.get(g) if group is not None else [colors.get(r.get(x)) for r in sel]
        ax.bar(pos, [r[y] for r in sel], width=width * 0.95, yerr=errs, capsize=3 if errs else 0, **kw)
    ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=20 if len(cats) > 4 else 0)
    if group is not None:
        ax.legend(fontsize=8, frameon=False)
    _finish(fig, ax, title, xlabel, ylabel)
    ax.grid(False)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# Qualitative figures: rows of samples
# ---------------------------------------------------------------------------------------------

def ranking(rows, *, x="overall", label="method", highlight=(), title="", xlabel="", ax=None):
    """Figure 1 (bottom right): one horizontal bar per row, best at the top, the rows named in
    ``highlight`` (e.g. the paper's own) coloured; the value printed at each bar's end."""
    rows = sorted([r for r in records(rows) if not _missing(r.get(x))], key=lambda r: -float(r[x]))
    if not rows:
        raise ConfigError(f"ranking: no row has a value for {x!r}; nothing to plot")
    fig, ax = _axes(ax, (5.5, 0.28 * len(rows) + 1.2))
    colors = ["tab:orange" if r[label] in highlight else "tab:gray" for r in rows]
    ax.barh(range(len(rows)), [float(r[x]) for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), [str(r[label]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    for k, r in enumerate(rows):
        ax.text(float(r[x]), k, f" {float(r[x]):.2f}", va="center", fontsize=7)
    _finish(fig, ax, title, xlabel, "")
    ax.grid(False)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _to_hwc(img) -> np.ndarray:
    """An image as a uint8 (H, W) or (H, W, 3) array: uint8 HWC / CHW / HW, or float in [-1, 1]
    (the codec's output)."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    x = np.asarray(img)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(1, 2, 0)
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            x = np.round((np.clip(x, -1, 1) + 1) * 127.5)
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] != 3):
        raise ConfigError(f"labelled_grid: an image of shape {tuple(np.asarray(img).shape)} is neither "
                          "(H, W), (H, W, 1|3) nor (1|3, H, W)")
    return x


def _strip(images, pad: int) -> np.ndarray:
    """Images side by side, `pad` white pixels between them, as one RGB uint8 array."""
    images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in images]
    h = max(im.shape[0] for im in images)
    out = []
    for k, im in enumerate(images):
        if im.shape[0] < h:
            im = np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)), constant_values=255)
        out.append(im)
        if k < len(images) - 1:
            out.append(np.full((h, pad, 3), 255, np.uint8))
    return np.concatenate(out, axis=1)


def labelled_grid(images_by_row, *, ncols=8, title="", col_titles=None, pad=None, row_height=1.1):
    """Figures 4, 5 (right), 8 and A5-A9: one row of samples per entry of `images_by_row`
    (label -> uint8 NHWC grey or RGB, (N, H, W), or a list of images), the label on the left like
    the paper's "Unguided / SG / AG / CFG" rows. Every row shows the same number of images:
    the shortest row's count, at most `ncols`. One axes per row holding the row as one image."""
    if not images_by_row:
        raise ConfigError("labelled_grid: images_by_row is empty; pass {row label: images}")
    rows = {}
    for name, imgs in images_by_row.items():
        arr = imgs
        if hasattr(arr, "detach"):
            arr = arr.detach().cpu().numpy()
        imgs = list(arr) if not isinstance(arr, np.ndarray) or arr.ndim in (3, 4) else None
        if imgs is None:
            raise ConfigError(f"labelled_grid: row {name!r} has shape {arr.shape}; "
                              "expected (N, H, W) or (N, H, W, C)")
        if not imgs:
            raise ConfigError(f"labelled_grid: row {name!r} has no images")
        rows[name] = [_to_hwc(im) for im in imgs]
    n = min(ncols, min(len(v) for v in rows.values()))
    if col_titles is not None and len(col_titles) < n:
        raise ConfigError(f"labelled_grid: {len(col_titles)} column titles for {n} columns")
    h, w = rows[next(iter(rows))][0].shape[:2]
    pad = max(1, w // 32) if pad is None else pad
    fig, axes = plt.subplots(len(rows), 1, squeeze=False,
                             figsize=(row_height * n * (w + pad) / h + 0.9, row_height * len(rows) + 0.3))
    for r, (name, imgs) in enumerate(rows.items()):
        ax = axes[r, 0]
        strip = _strip(imgs[:n], pad)
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_ylabel(str(name), rotation=0, ha="right", va="center", fontsize=9)
        if r == 0 and col_titles is not None:
            iw = (strip.shape[1] + pad) / n
            ax.set_xticks([iw * k + (iw - pad) / 2 for k in range(n)], [str(t) for t in col_titles[:n]],
                          fontsize=7)
            ax.xaxis.tick_top()
            ax.tick_params(length=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=0.2)
    return fig
