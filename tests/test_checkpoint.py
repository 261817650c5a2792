"""Loading official DiT/SiT-layout state dicts strictly, error messages, atomic saving."""
from __future__ import annotations

import os

import pytest
import torch

from conftest import inputs, tiny
from sparse_guidance import ConfigError
from sparse_guidance.checkpoint import DIGEST_KEY, load_weights, read_checkpoint, save_atomic
from sparse_guidance.models import build_model

# A small config, with shapes below computed independently of the package.
DEPTH, WIDTH, HEADS, PATCH, INPUT, CLASSES, CIN, FREQ = 2, 64, 2, 2, 8, 10, 4, 256
TOKENS = (INPUT // PATCH) ** 2


def official_shapes(learn_sigma=True):
    out_c = 2 * CIN if learn_sigma else CIN
    s = {
        "x_embedder.proj.weight": (WIDTH, CIN, PATCH, PATCH),
        "x_embedder.proj.bias": (WIDTH,),
        "t_embedder.mlp.0.weight": (WIDTH, FREQ),
        "t_embedder.mlp.0.bias": (WIDTH,),
        "t_embedder.mlp.2.weight": (WIDTH, WIDTH),
        "t_embedder.mlp.2.bias": (WIDTH,),
        "y_embedder.embedding_table.weight": (CLASSES + 1, WIDTH),
        "pos_embed": (1, TOKENS, WIDTH),
        "final_layer.linear.weight": (PATCH * PATCH * out_c, WIDTH),
        "final_layer.linear.bias": (PATCH * PATCH * out_c,),
        "final_layer.adaLN_modulation.1.weight": (2 * WIDTH, WIDTH),
        "final_layer.adaLN_modulation.1.bias": (2 * WIDTH,),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        s.update({
            b + "attn.qkv.weight": (3 * WIDTH, WIDTH), b + "attn.qkv.bias": (3 * WIDTH,),
            b + "attn.proj.weight": (WIDTH, WIDTH), b + "attn.proj.bias": (WIDTH,),
            b + "mlp.fc1.weight": (4 * WIDTH, WIDTH), b + "mlp.fc1.bias": (4 * WIDTH,),
            b + "mlp.fc2.weight": (WIDTH, 4 * WIDTH), b + "mlp.fc2.bias": (WIDTH,),
            b + "adaLN_modulation.1.weight": (6 * WIDTH, WIDTH), b + "adaLN_modulation.1.bias": (6 * WIDTH,),
        })
    return s


def official_state_dict(learn_sigma=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in official_shapes(learn_sigma).items()}


def model(learn_sigma=True, **kw):
    return build_model("SiT-T/2", depth=DEPTH, hidden_size=WIDTH, num_heads=HEADS, input_size=INPUT,
                       num_classes=CLASSES, learn_sigma=learn_sigma, **kw)


def assert_landed(m, sd):
    own = m.state_dict()
    assert set(own) == set(sd)
    for k, v in sd.items():
        assert torch.equal(own[k], v), k


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def test_official_layout_loads_from_file(tmp_path):
    sd = official_state_dict()
    path = tmp_path / "SiT-tiny-256x256.pt"
    torch.save(sd, path)
    m = model()
    assert load_weights(m, path) is m
    assert_landed(m, sd)
    x, t, y = inputs(n=2)
    with torch.no_grad():
        out = m(x, t, y)
    assert out.shape == (2, CIN, INPUT, INPUT) and out.abs().sum() > 0


def test_official_layout_loads_into_routed_model(tmp_path):
    sd = official_state_dict(seed=1)
    torch.save(sd, tmp_path / "w.pt")
    m = model(sparsity="routing", routes=["0:0"])
    load_weights(m, str(tmp_path / "w.pt"))
    assert_landed(m, sd)


@pytest.mark.parametrize("key", ["ema", "model", "state_dict"])
def test_wrapped_checkpoint(tmp_path, key):
    sd = official_state_dict(seed=2)
    path = tmp_path / "ckpt.pt"
    torch.save({key: sd, "steps": 5}, path)
    m = model()
    load_weights(m, path)
    assert_landed(m, sd)


def test_ema_preferred_and_explicit_key(tmp_path):
    ema, raw = official_state_dict(seed=3), official_state_dict(seed=4)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": raw, "ema": ema}, path)
    m = model()
    load_weights(m, path)
    assert_landed(m, ema)
    load_weights(m, path, key="model")
    assert_landed(m, raw)
    with pytest.raises(ConfigError, match="opt"):
        load_weights(m, path, key="opt")


def test_load_from_dict_in_memory():
    sd = official_state_dict(seed=5)
    m = model()
    load_weights(m, {"ema": sd})
    assert_landed(m, sd)


def test_roundtrip_own_state_dict(tmp_path):
    a = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2, seed=7)
    save_atomic({"ema": a.state_dict()}, tmp_path / "m.pt")
    b = tiny("masking", decoder_depth=1, decoder_width=32, decoder_heads=2, randomised=False)
    load_weights(b, tmp_path / "m.pt")
    x, t, y = inputs(n=2)
    keep = torch.arange(8).expand(2, 8)
    with torch.no_grad():
        assert torch.equal(a(x, t, y, keep=keep), b(x, t, y, keep=keep))


# ---------------------------------------------------------------------------------------------
# Bad checkpoints
# ---------------------------------------------------------------------------------------------

def test_missing_key_is_named():
    sd = official_state_dict()
    del sd["blocks.1.mlp.fc2.bias"]
    with pytest.raises(ConfigError) as e:
        load_weights(model(), sd)
    assert "blocks.1.mlp.fc2.bias" in str(e.value) and "missing" in str(e.value)


def test_extra_key_is_named():
    sd = official_state_dict()
    sd["blocks.7.attn.qkv.weight"] = torch.zeros(3 * WIDTH, WIDTH)
    with pytest.raises(ConfigError) as e:
        load_weights(model(), sd)
    assert "blocks.7.attn.qkv.weight" in str(e.value) and "unexpected" in str(e.value)


def test_wrong_shape_is_named():
    sd = official_state_dict()
    sd["blocks.0.attn.proj.weight"] = torch.zeros(WIDTH, WIDTH + 1)
    m = model()
    before = m.blocks[0].attn.proj.weight.clone()
    with pytest.raises(ConfigError) as e:
        load_weights(m, sd)
    msg = str(e.value)
    assert "blocks.0.attn.proj.weight" in msg and str((WIDTH, WIDTH + 1)) in msg
    assert torch.equal(m.blocks[0].attn.proj.weight, before)  # nothing half-loaded


def test_learn_sigma_mismatch_gives_hint():
    sd = official_state_dict(learn_sigma=True)
    with pytest.raises(ConfigError) as e:
        load_weights(model(learn_sigma=False), sd)
    assert "learn_sigma" in str(e.value) and "final_layer.linear.weight" in str(e.value)


def test_masking_mismatch_gives_hint():
    sd = official_state_dict()
    m = model(sparsity="masking", decoder_depth=1, decoder_width=32, decoder_heads=2)
    with pytest.raises(ConfigError) as e:
        load_weights(m, sd)
    assert "mask_token" in str(e.value)


def test_corrupt_file_names_path(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ConfigError) as e:
        load_weights(model(), path)
    assert str(path) in str(e.value)
    assert "corrupt" in str(e.value)


def test_truncated_file_names_path(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(official_state_dict(), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError) as e:
        read_checkpoint(cut)
    assert str(cut) in str(e.value)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope" / "missing.pt"
    with pytest.raises(ConfigError) as e:
        load_weights(model(), path)
    assert str(path) in str(e.value) and "does not exist" in str(e.value)


def test_non_dict_checkpoint(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ConfigError, match="Tensor"):
        load_weights(model(), path)


# ---------------------------------------------------------------------------------------------
# Atomic saving
# ---------------------------------------------------------------------------------------------

def test_save_atomic_leaves_no_temp_file(tmp_path):
    sd = official_state_dict()
    target = tmp_path / "sub" / "ckpt.pt"
    save_atomic({"ema": sd, "step": 3}, target)
    assert sorted(os.listdir(target.parent)) == ["ckpt.pt"]
    obj = read_checkpoint(target)
    assert obj["step"] == 3
    m = model()
    load_weights(m, target)
    assert_landed(m, sd)
    # overwrite in place
    sd2 = official_state_dict(seed=9)
    save_atomic(sd2, target)
    assert sorted(os.listdir(target.parent)) == ["ckpt.pt"]
    load_weights(m, target)
    assert_landed(m, sd2)


def test_save_atomic_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "ckpt.pt"
    save_atomic({"a": torch.ones(2)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"a": Unpicklable()}, target)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]
    assert torch.equal(read_checkpoint(target)["a"], torch.ones(2))


def test_a_checkpoint_with_flipped_bytes_is_refused(tmp_path):
    """64 flipped bytes inside a tensor still unpickle; the checksum save_atomic stored catches them."""
    target = tmp_path / "ckpt.pt"
    marker = torch.full((4096,), 1.2345)
    save_atomic({"ema": {"w": marker}, "step": 3}, target)
    assert read_checkpoint(target)["step"] == 3 and DIGEST_KEY not in read_checkpoint(target)
    data = bytearray(target.read_bytes())
    at = data.find(marker[:16].numpy().tobytes())
    assert at > 0
    data[at + 128:at + 192] = bytes(b ^ 0xFF for b in data[at + 128:at + 192])
    target.write_bytes(bytes(data))
    assert torch.load(target, weights_only=True)["step"] == 3  # torch itself loads it without a word
    with pytest.raises(ConfigError, match="is corrupt: its contents do not match the checksum"):
        read_checkpoint(target)
    with pytest.raises(ConfigError, match="is corrupt"):
        load_weights(model(), target)


def test_republishing_a_hard_linked_output_leaves_no_temp_file(tmp_path):
    """publish() twice from the same state file (a rerun of a finished training job): dst stays a link
    to src and no .tmp link is left beside it (rename onto the same inode does nothing)."""
    from sparse_guidance.io import publish
    src, dst = tmp_path / "state" / "last.pt", tmp_path / "last.pt"
    src.parent.mkdir()
    src.write_bytes(b"weights")
    for _ in range(2):
        publish(src, dst)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "state"]
        assert os.path.samefile(src, dst)
    src.write_bytes(b"newer")  # same inode, new content: still the same file
    (tmp_path / "state" / "other.pt").write_bytes(b"other")
    publish(tmp_path / "state" / "other.pt", dst)
    assert dst.read_bytes() == b"other" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "state"]
