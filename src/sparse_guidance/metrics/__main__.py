"""Command line: ADM-protocol metrics of a sample set, printed as JSON.

    python -m sparse_guidance.metrics --samples S.npz --ref R.npz [--n 5000] [--metrics fid,sfid,is,prec,rec]
    python -m sparse_guidance.metrics --samples guided.npz --paired cond.npz     # Fig. 7 left (LPIPS)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import check_writable_folder, write_text
from .evaluate import DEFAULT_METRICS, METRICS, evaluate_npz
from .features import CACHE_DIRNAME
from .paired import paired_distance


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m sparse_guidance.metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", required=True, help="ADM sample set: .npz with arr_0 uint8 NHWC")
    p.add_argument("--ref", help="reference npz: ADM reference batch, build_reference() output, or an image set")
    p.add_argument("--n", type=int, help="evaluate the first N samples (default: all)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated subset of {','.join(METRICS)} (acc needs labels, arr_1, and a class-logit network)")
    p.add_argument("--paired", help="second sample set from the same noise: adds a paired LPIPS-style distance")
    p.add_argument("--extractor", default="auto", help="auto | offline | inception-v3-compat | classifier")
    p.add_argument("--weights", help="weights file of the chosen extractor (classifier: classifier.pt)")
    p.add_argument("--cache-dir", help="feature/statistics cache (default: .metrics-cache/ beside each npz)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="cpu | cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", help="also write the JSON here")
    return p.parse_args(argv)


def check_args(a):
    """Refuse what would fail only after the features are computed, or with a traceback."""
    if a.ref is None and a.paired is None:
        raise ConfigError("give --ref (FID, sFID, IS, P/R) and/or --paired (LPIPS between two sample sets).")
    if a.batch_size < 1:
        raise ConfigError(f"--batch-size {a.batch_size}: give a batch size >= 1.")
    if a.n is not None and a.n < 1:
        raise ConfigError(f"--n {a.n}: give a number of samples >= 1 (or leave --n out for all).")
    if a.device is not None and a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {a.device}, but no CUDA device is visible; use --device cpu.")
    if a.out is not None:
        check_writable_folder(Path(a.out).parent, "the folder of --out", "give another --out")
    if a.cache_dir is not None:
        check_writable_folder(a.cache_dir, "--cache-dir", "give another --cache-dir")
    else:
        for npz in filter(None, (a.samples, a.ref, a.paired)):
            check_writable_folder(Path(npz).parent / CACHE_DIRNAME, "the feature cache beside the inputs",
                                  "give a writable --cache-dir")


def run(a) -> dict:
    check_args(a)
    common = dict(extractor=a.extractor, cache_dir=a.cache_dir, batch_size=a.batch_size, device=a.device,
                  progress=not a.no_progress)
    result = {}
    if a.ref is not None:
        result = evaluate_npz(a.samples, a.ref, n=a.n, metrics=a.metrics, weights_path=a.weights, **common)
    if a.paired is not None:
        result["paired"] = paired_distance(a.samples, a.paired, n=a.n, **common)
    return result


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        result = run(a)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        write_text(a.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
