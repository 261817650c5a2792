"""Image <-> latent codecs behind one interface, so encoding and sampling do not care which is used.

Paper scale: the SD VAE (``stabilityai/sd-vae-ft-ema``), latents = posterior × 0.18215 and
decode(z / 0.18215): 3×256×256 images -> 4×32×32 latents, 256 tokens at patch 2 (DiT/SiT/TREAD).
Embedded default: a lossless space-to-depth of the 1×32×32 Fashion-MNIST images -> 4×16×16, 64
tokens at patch 2, so the tiny SiT trains on the same latent layout (4 channels) on a CPU.

    codec = build_codec("space-to-depth")
    codec = build_codec("sd-vae-ft-ema")                      # hub download (cluster)
    codec = build_codec("sd-vae-ft-ema", path="/models/sd-vae-ft-ema")   # local copy
    codec = build_codec("sd-vae-ft-ema", vae=my_autoencoder_kl)         # an instance
"""
from __future__ import annotations

import abc
from pathlib import Path

import torch

from ..checkpoint import tensor_digest
from ..errors import ConfigError

SD_VAE_REPO = "stabilityai/sd-vae-ft-ema"
SD_VAE_SCALE = 0.18215  # the SD VAE's latent scale (DiT, SiT, MaskDiT, TREAD all use it)
POSTERIORS = ("sample", "mean")

# Space-to-depth affine, z = (x - SHIFT) * SCALE, from the Fashion-MNIST train split padded to
# 32×32 and scaled to [-1, 1]: pixel mean -0.562, std 0.664 (computed once from the 60k images,
# padding included). Rounded constants give latents of mean ≈ 0.00 and std ≈ 1.00.
S2D_SHIFT = -0.56
S2D_SCALE = 1.5


class Codec(abc.ABC):
    """Maps images in [-1, 1], (N, image_channels, H, W), to latents (N, latent_channels, H/d, W/d)
    and back. Subclasses set name, image_channels, latent_channels, downsample (d), scale_factor."""

    name: str
    image_channels: int
    latent_channels: int
    downsample: int
    scale_factor: float

    @abc.abstractmethod
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, C_img, H, W) float in [-1, 1] -> (N, C_lat, H/d, W/d) float32."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C_lat, h, w) -> (N, C_img, h·d, w·d) float32 images clamped to [-1, 1]."""

    @property
    def stochastic(self) -> bool:
        """True when encode draws noise (then pass a seeded generator for reproducible latents)."""
        return False

    def to(self, device) -> "Codec":
        return self

    def latent_shape(self, height: int, width: int | None = None) -> tuple[int, int, int]:
        """(C, h, w) of the latent of one H×W image; ConfigError if H or W is not divisible by d."""
        width = height if width is None else width
        if height % self.downsample or width % self.downsample:
            raise ConfigError(f"codec {self.name!r} downsamples by {self.downsample}; image size {height}x{width} "
                              f"is not divisible by it: crop or pad the images to a multiple of {self.downsample}.")
        return (self.latent_channels, height // self.downsample, width // self.downsample)

    def weights_digest(self) -> str | None:
        """A digest of the codec's learned weights (None: it has none), for keys of resumable work."""
        return None

    def config(self) -> dict:
        """What a latent manifest records about the codec (everything decode depends on)."""
        return dict(name=self.name, image_channels=self.image_channels, latent_channels=self.latent_channels,
                    downsample=self.downsample, scale_factor=self.scale_factor)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ConfigError(f"codec {self.name!r} takes images (N, C, H, W); got shape {tuple(images.shape)}.")
        self.latent_shape(images.shape[-2], images.shape[-1])
        if not images.is_floating_point():
            raise ConfigError(f"codec {self.name!r} takes float images in [-1, 1]; got dtype {images.dtype} "
                              "(map uint8 with x / 127.5 - 1).")
        return images

    def _check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ConfigError(f"codec {self.name!r} decodes latents (N, {self.latent_channels}, h, w); "
                              f"got shape {tuple(latents.shape)}.")
        return latents


class SpaceToDepthCodec(Codec):
    """Lossless space-to-depth: each d×d pixel block becomes d² channels, then an affine map to
    roughly unit variance. 1×32×32 -> 4×16×16 at d = 2. Channel k = c·d² + i·d + j holds pixel
    (i, j) of each block of image channel c (torch's pixel_unshuffle order)."""

    name = "space-to-depth"

    def __init__(self, image_channels: int = 1, factor: int = 2, shift: float = S2D_SHIFT, scale: float = S2D_SCALE):
        if factor < 1 or image_channels < 1:
            raise ConfigError(f"space-to-depth needs factor >= 1 and image_channels >= 1; got factor={factor}, "
                              f"image_channels={image_channels}.")
        if scale == 0:
            raise ConfigError("space-to-depth scale must be non-zero.")
        self.image_channels, self.downsample = image_channels, factor
        self.latent_channels = image_channels * factor * factor
        self.shift, self.scale_factor = float(shift), float(scale)

    def encode(self, images, generator=None):
        x = self._check_images(images)
        if x.shape[1] != self.image_channels:
            raise ConfigError(f"space-to-depth codec expects {self.image_channels}-channel images; got "
                              f"{x.shape[1]} channels (build it with image_channels={x.shape[1]}).")
        z = torch.nn.functional.pixel_unshuffle(x.float(), self.downsample)  # (N, C·d², H/d, W/d)
        return (z - self.shift) * self.scale_factor

    def decode(self, latents):
        z = self._check_latents(latents).float()
        x = torch.nn.functional.pixel_shuffle(z / self.scale_factor + self.shift, self.downsample)  # (N, C, H, W)
        return x.clamp(-1.0, 1.0)

    def config(self) -> dict:
        return {**super().config(), "shift": self.shift}


class SDVAECodec(Codec):
    """diffusers ``AutoencoderKL`` latents scaled by ``scale_factor`` (0.18215 for the SD VAE).

    posterior="sample" (default) draws z ~ N(mean, std²) from the encoder's posterior, as DiT's,
    SiT's and MaskDiT's feature extraction do (``.sample()``); pass a seeded generator for
    reproducible latents. posterior="mean" takes the posterior mean (deterministic).
    Grey (1-channel) images are repeated to 3 channels. The VAE runs in its own dtype/device.
    """

    def __init__(self, vae, posterior: str = "sample", scale_factor: float = SD_VAE_SCALE,
                 name: str = "autoencoder-kl"):
        if posterior not in POSTERIORS:
            raise ConfigError(f"unknown posterior {posterior!r}; choose one of {POSTERIORS}.")
        for attr in ("encode", "decode", "config"):
            if not hasattr(vae, attr):
                raise ConfigError(f"SDVAECodec wraps a diffusers AutoencoderKL; got a {type(vae).__name__}.")
        self.vae = vae.eval().requires_grad_(False)
        self.posterior, self.scale_factor, self.name = posterior, float(scale_factor), name
        cfg = vae.config
        self.image_channels = int(cfg.in_channels)
        self.latent_channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)  # one 2× downsampler per block but the last

    @classmethod
    def from_pretrained(cls, source: str | Path = SD_VAE_REPO, posterior: str = "sample",
                        scale_factor: float = SD_VAE_SCALE, name: str | None = None, **kwargs) -> "SDVAECodec":
        """Load an AutoencoderKL from the Hugging Face hub (repo id, default sd-vae-ft-ema) or a local
        folder (a ``save_pretrained`` copy or a snapshot of the repo). kwargs go to from_pretrained
        (cache_dir, local_files_only, torch_dtype, subfolder, ...). Any failure raises ConfigError."""
        from diffusers import AutoencoderKL

        source = str(source)
        is_path = Path(source).exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
        if is_path and not Path(source).expanduser().is_dir():
            raise ConfigError(f"VAE folder {source!r} does not exist; give the folder holding config.json and the "
                              f"weights (AutoencoderKL.save_pretrained), or the hub id {SD_VAE_REPO!r}.")
        try:
            vae = AutoencoderKL.from_pretrained(str(Path(source).expanduser()) if is_path else source, **kwargs)
        except Exception as e:  # no hub access, missing files, bad config, ...
            raise ConfigError(
                f"could not load the VAE {source!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                f"Without hub access, pre-download the weights into the Hugging Face cache on a machine with "
                f"internet (`huggingface-cli download {SD_VAE_REPO}`; then set HF_HOME to that cache) or give a "
                f"local folder (path=...).") from e
        return cls(vae, posterior=posterior, scale_factor=scale_factor,
                   name=name or (Path(source).name if is_path else source.split("/")[-1]))

    @property
    def stochastic(self) -> bool:
        return self.posterior == "sample"

    def to(self, device) -> "SDVAECodec":
        self.vae.to(device)
        return self

    def _param(self) -> torch.Tensor:
        return next(self.vae.parameters())

    @torch.no_grad()
    def encode(self, images, generator=None):
        x = self._check_images(images)
        if x.shape[1] == 1 and self.image_channels == 3:
            x = x.expand(-1, 3, -1, -1)  # grey -> RGB
        if x.shape[1] != self.image_channels:
            raise ConfigError(f"VAE {self.name!r} takes {self.image_channels}-channel images; got {x.shape[1]}.")
        p = self._param()
        dist = self.vae.encode(x.to(p.device, p.dtype)).latent_dist
        z = dist.sample(generator=generator) if self.posterior == "sample" else dist.mean  # (N, C, H/d, W/d)
        return (z * self.scale_factor).float()

    @torch.no_grad()
    def decode(self, latents):
        z = self._check_latents(latents)
        p = self._param()
        x = self.vae.decode(z.to(p.device, p.dtype) / self.scale_factor).sample  # (N, 3, H, W)
        return x.float().clamp(-1.0, 1.0)

    def config(self) -> dict:
        return {**super().config(), "posterior": self.posterior}

    def weights_digest(self) -> str:
        return tensor_digest(self.vae.state_dict())


def _build_sd_vae(vae=None, path: str | Path | None = None, **kwargs) -> SDVAECodec:
    """"sd-vae-ft-ema": wrap an instance, load a local folder, or (neither given) load from the hub."""
    if vae is not None and path is not None:
        raise ConfigError("give the SD VAE as vae=<AutoencoderKL> or path=<folder>, not both.")
    if vae is not None:
        return SDVAECodec(vae, **{"name": "sd-vae-ft-ema", **kwargs})
    if path is not None:
        return SDVAECodec.from_pretrained(path, **{"name": "sd-vae-ft-ema", **kwargs})
    return SDVAECodec.from_pretrained(SD_VAE_REPO, **{"name": "sd-vae-ft-ema", **kwargs})


CODECS = {
    "sd-vae-ft-ema": _build_sd_vae,
    "space-to-depth": SpaceToDepthCodec,
}


def build_codec(name: str, **kwargs) -> Codec:
    """A registered codec by name; kwargs go to its constructor (see CODECS)."""
    if name not in CODECS:
        raise ConfigError(f"unknown codec {name!r}; known codecs: {', '.join(CODECS)}.")
    return CODECS[name](**kwargs)
