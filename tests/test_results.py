"""Labels the report notebooks take from results.py: sample-grid rows and columns."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from sparse_guidance import config as C, figures as F, results as R


def test_grid_columns_name_their_classes():
    cfg = C.load_config("smoke")
    assert R.class_names(cfg, [0, 9]) == ["T-shirt/top", "Ankle boot"]
    assert R.grid_column_titles(cfg, [6, 7, 8], 10) == ["Shirt", "", "", "", "Sneaker", "", "", "", "Bag", ""]
    assert R.grid_column_titles(cfg, None, 10) is None
    paper = {"data": {"dataset": "imagenet"}}
    assert R.class_names(paper, [88, 980]) == ["class 88", "class 980"]


def test_grid_rows_name_their_guidance_scale():
    assert R.grid_row_label({"method": "CFG", "omega": 1.5}) == "CFG\nω = 1.5"
    assert R.grid_row_label({"method": "Unguided", "omega": 1.0}) == "Unguided"
    assert R.grid_row_label({"method": "SG", "omega": float("nan")}) == "SG"


def test_a_grid_draws_its_class_titles():
    cfg = C.load_config("smoke")
    images = {R.grid_row_label({"method": m, "omega": w}): np.zeros((4, 8, 8), np.uint8) for m, w in (("SG", 2.5), ("CFG", 1.5))}
    fig = F.labelled_grid(images, ncols=4, col_titles=R.grid_column_titles(cfg, [0, 1], 4), title="A7")
    top = fig.axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == ["T-shirt/top", "", "Trouser", ""]
    assert [ax.get_ylabel() for ax in fig.axes] == ["SG\nω = 2.5", "CFG\nω = 1.5"]


def test_classifier_scores_are_never_named_fid():
    import pandas as pd
    cfg = C.load_config("smoke")
    df = pd.DataFrame([{"method": "SG", "fid": 90.0, "fid_std": 1.0, "paper_fid": 2.1, "acc": 0.9}])
    assert cfg["experiments"]["fig4"]["metrics"]["extractor"] == "classifier"
    named = R.named_columns(cfg, "fig4", df)
    assert list(named.columns) == ["method", "classifier_fd", "classifier_fd_std", "paper_fid", "acc"]
    assert cfg["experiments"]["table2"]["metrics"]["extractor"] != "classifier"
    assert list(R.named_columns(cfg, "table2", df).columns) == list(df.columns)  # Inception: FID it is
