"""Sparse Guidance: guiding token-sparse diffusion models (Krause et al.).

The package keeps the method apart from the backbone:
  models/     SiT/DiT backbone, token routing (Eq. 5) and masking (Eq. 4), registry
  flow.py     linear flow-matching path and training losses (Eq. 1-2, A3-A4), EMA
  guidance.py guidance recipes as data and the one combination rule (Eq. 3, 7, 8)
  sampling.py Euler/Heun ODE samplers over a recipe's branches
  flops.py    GFLOPs per evaluation and per sampling step (Table 2)
"""
from .errors import ConfigError
from .models import MODELS, build_model

__version__ = "0.1.0"
__all__ = ["ConfigError", "MODELS", "build_model", "__version__"]
