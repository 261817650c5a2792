"""Labels the report notebooks take from results.py: sample-grid rows and columns."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from pathlib import Path
from sparse_guidance import config as C, figures as F, results as R


def test_grid_columns_name_their_classes():
    cfg = C.load_config("smoke")
    assert R.class_names(cfg, [0, 9]) == ["T-shirt/top", "Ankle boot"]
    assert R.grid_column_titles(cfg, [6, 6, 6, 7, 8, 8]) == ["Shirt", "", "", "Sneaker", "Bag", ""]
    assert R.grid_column_titles(cfg, None) is None
    paper = {"data": {"dataset": "imagenet"}}
    assert R.class_names(paper, [88, 980]) == ["class 88", "class 980"]


def test_grid_rows_name_their_guidance_scale():
    assert R.grid_row_label({"method": "CFG", "omega": 1.5}) == "CFG\nω = 1.5"
    assert R.grid_row_label({"method": "Unguided", "omega": 1.0}) == "Unguided"
    assert R.grid_row_label({"method": "SG", "omega": float("nan")}) == "SG"


def test_a_grid_draws_its_class_titles():
    cfg = C.load_config("smoke")
    images = {R.grid_row_label({"method": m, "omega": w}): np.zeros((4, 8, 8), np.uint8) for m, w in (("SG", 2.5), ("CFG", 1.5))}
    fig = F.labelled_grid(images, ncols=4, col_titles=R.grid_column_titles(cfg, [0, 0, 1, 1]), title="A7")
    top = fig.axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == ["T-shirt/top", "", "Trouser", ""]
    assert [ax.get_ylabel() for ax in fig.axes] == ["SG\nω = 2.5", "CFG\nω = 1.5"]


def test_classifier_scores_are_never_named_fid():
    import pandas as pd
    cfg = C.load_config("smoke")
    df = pd.DataFrame([{"method": "SG", "fid": 90.0, "fid_std": 1.0, "fid_n": 200, "paper_fid": 2.1, "acc": 0.9}])
    assert cfg["experiments"]["fig4"]["metrics"]["extractor"] == "classifier"
    named = R.named_columns(cfg, "fig4", df)
    assert list(named.columns) == ["method", "classifier_fd", "classifier_fd_std", "classifier_fd_n", "paper_fid", "acc"]
    assert cfg["experiments"]["table2"]["metrics"]["extractor"] != "classifier"
    assert list(R.named_columns(cfg, "table2", df).columns) == list(df.columns)  # Inception: FID it is


def test_a_class_with_few_samples_keeps_its_name_over_its_own_columns(tmp_path):
    """Smoke's Fig. A7 once named class 0 only: class 1 had fewer samples than its share of columns."""
    import pandas as pd
    from sparse_guidance.layout import Layout
    cfg = C.load_config("smoke", {"results_dir": str(tmp_path)})
    labels = np.array([0, 1, 0, 0, 0, 0, 2, 2])            # class 1: one sample of the four its share allows
    for row in ("sg_flops", "sg_fid"):
        path = Path(Layout(cfg).samples("table2", row))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, arr_0=np.zeros((8, 4, 4, 1), np.uint8) + labels[:, None, None, None].astype(np.uint8), arr_1=labels)
    df = pd.DataFrame([{"method": "+SG_FLOPS", "omega": 2.0, "source": "table2/sg_flops"},
                       {"method": "+SG_FID", "omega": 2.5, "source": "table2/sg_fid"}])
    images, titles = R.sample_grid(cfg, df, 8, [0, 1, 2])
    assert list(images) == ["+SG_FLOPS\nω = 2", "+SG_FID\nω = 2.5"]
    assert [int(im[0, 0, 0]) for im in images["+SG_FID\nω = 2.5"]] == [0, 0, 0, 1, 2, 2]   # 3 + 1 + 2 columns
    assert titles == ["T-shirt/top", "", "", "Trouser", "Pullover", ""]
    assert R.sample_grid(cfg, df, 8)[1] is None


def test_grids_of_one_caption_have_titles_of_their_own():
    """Figs. A5 and A6 (and A7-A9) share a caption; the title names the figure and its classes."""
    cfg = C.load_config("embedded")
    a5, a6 = (R.grid_title(cfg, e, cfg["experiments"][e]["plot"]["classes"]) for e in ("figA5", "figA6"))
    assert a5 == "Fig. A5: Unguided, SG, AG and CFG; classes 0-4 (embedded)"
    assert a6 == "Fig. A6: Unguided, SG, AG and CFG; classes 5-9 (embedded)"
    assert R.grid_title(cfg, "figA7", [0, 2]) == "Fig. A7: Uncurated SG_FLOPS (top) and SG_FID (bottom); classes 0, 2 (embedded)"
    assert R.grid_title(cfg, "figA8", [88]).endswith("; class 88 (embedded)")
    assert R.grid_title(cfg, "figA9", None) == "Fig. A9: Uncurated SG_FLOPS (top) and SG_FID (bottom) (embedded)"
