"""Evaluation by ADM's protocol (paper §4.1): FID, sFID, IS, precision/recall, and paired LPIPS (Fig. 7).

  npz.py        ADM image sets (.npz, arr_0 uint8 NHWC RGB; grey repeated): validation, streaming, hashes
  inception.py  pool3 + mixed_6/conv in one pass: offline TorchScript FID Inception (registered with
                torch-fidelity as "fid-inception-torchscript") or torch-fidelity's inception-v3-compat
  features.py   batched extraction (tqdm) and the per-file feature cache
  stats.py      Fréchet distance, precision/recall (k=3), Inception Score, via torch-fidelity
  reference.py  ADM reference batches, and cached ADM-style statistics built from images
  evaluate.py   evaluate_npz(): the metrics of the first n samples, each beside its count
  paired.py     paired_distance(): LPIPS, or offline the honestly named inception_pool3_cosine
  geneval.py    text-to-image (embedded): GenEval's rules on the scenes, with a detector by construction
  image_text.py text-to-image (embedded): the scene-text score, a contrastive stand-in for HPSv3

    python -m sparse_guidance.metrics --samples S.npz --ref VIRTUAL_imagenet256_labeled.npz --n 5000
"""
from .evaluate import METRICS, evaluate_npz
from .features import features_of
from .inception import CompatInception, OfflineInception, resolve_extractor
from .npz import ImageDataset, ImageSetInfo, inspect_npz
from .paired import paired_distance
from .reference import Reference, build_reference, load_reference
from .stats import frechet_distance, gaussian_stats, inception_score, precision_recall

__all__ = ["METRICS", "evaluate_npz", "features_of", "CompatInception", "OfflineInception", "resolve_extractor",
           "ImageDataset", "ImageSetInfo", "inspect_npz", "paired_distance", "Reference", "build_reference", "load_reference",
           "frechet_distance", "gaussian_stats", "inception_score", "precision_recall"]
