"""Codecs: lossless space-to-depth (embedded default) and the SD-VAE wrapper (× 0.18215), registry."""
from __future__ import annotations

import pytest
import torch

from data_helpers import fmnist_test, tiny_vae  # noqa: F401 (fixture)
from sparse_guidance import ConfigError
from sparse_guidance.data import CODECS, SDVAECodec, SpaceToDepthCodec, build_codec
from sparse_guidance.data.codecs import S2D_SCALE, S2D_SHIFT, SD_VAE_REPO
from sparse_guidance.models import build_model


def grey_batch(n=6, size=32, seed=0):
    """uint8-valued grey images and the same in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return u8, u8.float() / 127.5 - 1


# --- space-to-depth -------------------------------------------------------------------------------

def test_space_to_depth_round_trip_is_exact():
    u8, x = grey_batch()
    codec = build_codec("space-to-depth")
    z = codec.encode(x)
    assert z.shape == (6, 4, 16, 16) and z.dtype == torch.float32
    back = codec.decode(z)
    assert back.shape == x.shape
    assert (back - x).abs().max() < 1e-6
    assert torch.equal(((back + 1) * 127.5).round().to(torch.uint8), u8)  # the uint8 pixels come back exactly


def test_space_to_depth_layout_and_affine():
    """Latent channel i*2+j at (r, c) is pixel (2r+i, 2c+j), mapped by (x - shift) * scale."""
    _, x = grey_batch(n=2, seed=3)
    z = SpaceToDepthCodec().encode(x)
    for i in range(2):
        for j in range(2):
            expect = (x[:, 0, i::2, j::2] - S2D_SHIFT) * S2D_SCALE
            assert torch.allclose(z[:, 2 * i + j], expect, atol=1e-6)


def test_space_to_depth_latents_near_unit_variance(fmnist_test):
    x = torch.stack([fmnist_test[i][0] for i in range(0, 10000, 5)])  # (2000, 1, 32, 32)
    z = SpaceToDepthCodec().encode(x)
    assert abs(z.mean().item()) < 0.05
    assert 0.93 < z.std().item() < 1.07


def test_space_to_depth_gives_64_tokens_at_patch_2():
    codec = SpaceToDepthCodec()
    c, h, w = codec.latent_shape(32)
    assert (c, h, w) == (4, 16, 16)
    model = build_model("SiT-T/2", input_size=h, in_channels=c, num_classes=10)
    assert model.num_tokens == 64
    tokens = model.x_embedder(codec.encode(grey_batch(n=2)[1]))
    assert tokens.shape[:2] == (2, 64)


def test_space_to_depth_rejects_bad_input():
    codec = SpaceToDepthCodec()
    with pytest.raises(ConfigError, match="3 channels"):
        codec.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="31x31"):
        codec.encode(torch.zeros(1, 1, 31, 31))
    with pytest.raises(ConfigError, match="uint8"):
        codec.encode(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="latents"):
        codec.decode(torch.zeros(1, 3, 16, 16))


def test_registry_names_known_codecs():
    assert set(CODECS) == {"sd-vae-ft-ema", "space-to-depth"}
    with pytest.raises(ConfigError, match="known codecs: sd-vae-ft-ema, space-to-depth"):
        build_codec("taesd")


# --- SD VAE wrapper -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def rgb(n=2, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_sd_vae_codec_scales_by_018215(vae):
    x = rgb()
    codec = SDVAECodec(vae, posterior="mean")
    assert (codec.downsample, codec.latent_channels, codec.scale_factor) == (8, 4, 0.18215)
    z = codec.encode(x)
    with torch.no_grad():
        direct = vae.encode(x).latent_dist.mean * 0.18215
        assert z.shape == (2, 4, 8, 8)
        assert torch.allclose(z, direct, atol=1e-6)
        dec = vae.decode(z / 0.18215).sample.clamp(-1, 1)
    assert torch.allclose(codec.decode(z), dec, atol=1e-5)


def test_sd_vae_codec_samples_the_posterior_reproducibly(vae):
    x = rgb()
    codec = SDVAECodec(vae)  # default: posterior sample
    assert codec.stochastic and not SDVAECodec(vae, posterior="mean").stochastic
    a = codec.encode(x, generator=torch.Generator().manual_seed(5))
    b = codec.encode(x, generator=torch.Generator().manual_seed(5))
    c = codec.encode(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        direct = dist.sample(generator=torch.Generator().manual_seed(5)) * 0.18215
    assert torch.allclose(a, direct, atol=1e-6)
    assert not torch.allclose(a, dist.mean * 0.18215, atol=1e-4)


def test_sd_vae_codec_accepts_grey_images(vae):
    grey = rgb(n=1)[:, :1]
    codec = SDVAECodec(vae, posterior="mean")
    assert torch.allclose(codec.encode(grey), codec.encode(grey.expand(-1, 3, -1, -1)), atol=1e-6)


def test_sd_vae_codec_rejects_bad_settings(vae):
    with pytest.raises(ConfigError, match="posterior 'mode'"):
        SDVAECodec(vae, posterior="mode")
    with pytest.raises(ConfigError, match="AutoencoderKL"):
        SDVAECodec(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="divisible"):
        SDVAECodec(vae).encode(torch.zeros(1, 3, 60, 60))


def test_sd_vae_from_local_folder_matches_instance(vae, tmp_path):
    vae.save_pretrained(tmp_path / "vae")
    loaded = build_codec("sd-vae-ft-ema", path=tmp_path / "vae", posterior="mean")
    assert loaded.name == "sd-vae-ft-ema"
    x = rgb(n=1)
    assert torch.allclose(loaded.encode(x), SDVAECodec(vae, posterior="mean").encode(x), atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")  # huggingface_hub's own deprecation notice
def test_sd_vae_missing_path_or_hub_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SDVAECodec.from_pretrained(tmp_path / "no-such-vae")
    # The hub path without hub access: local_files_only + an empty cache never touches the network.
    with pytest.raises(ConfigError, match=r"pre-download the weights .*HF_HOME.*local folder") as e:
        build_codec("sd-vae-ft-ema", cache_dir=str(tmp_path / "hf"), local_files_only=True)
    assert SD_VAE_REPO in str(e.value)
    with pytest.raises(ConfigError, match="not both"):
        build_codec("sd-vae-ft-ema", vae=tiny_vae(), path=tmp_path)


def test_weights_digest_follows_the_vae_weights(vae):
    """Part of a resumable sampling job's key: other decoder weights, other digest; none without weights."""
    codec = SDVAECodec(vae)
    before = codec.weights_digest()
    assert before == SDVAECodec(vae).weights_digest() and len(before) == 64
    p = next(vae.parameters())
    kept = p.detach().clone()
    with torch.no_grad():
        p.add_(1e-3)
    try:
        assert codec.weights_digest() != before
    finally:
        with torch.no_grad():
            p.copy_(kept)  # the fixture is shared
    assert codec.weights_digest() == before
    assert SpaceToDepthCodec().weights_digest() is None
