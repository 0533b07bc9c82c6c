"""The torch-free checkpoint reader and the converter's errors, and the position-encoding tables
against torch itself.

* ``read_torch_state_dict`` returns exactly what ``torch.save`` wrote (strided / offset views
  sharing a storage, float16, bfloat16, int64, ``nn.Parameter``), without importing torch.
* Bad inputs fail with a ``CheckpointError`` that names the file and the key: a corrupt or
  truncated ``.pth``, a missing key, a wrong shape, a checkpoint deeper than the config, the
  other family; a pickle calling ``os.system`` is refused (and does not run).
* ``bicubic_matrix`` equals ``torch.nn.functional.interpolate`` (bicubic, with and without
  antialiasing) at down-, up- and identity sizes; ``rope_cos_sin`` equals HF's RoPE tables.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hoijax import features  # noqa: E402
from hoijax.features._pos_embed import bicubic_matrix, rope_cos_sin  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import features_reference as ref  # noqa: E402


@pytest.fixture(scope="module")
def meta_sd():
    """Meta-layout state dict of a 2-layer DINOv2 ViT-S with registers, and its config."""
    model = ref.hf_dinov2(layers=2, registers=4, seed=7)
    config = features.vit_preset("dinov2_vits14_reg").replace(num_layers=2)
    return ref.to_meta_dinov2(ref.state_dict_numpy(model)), config


def test_reader_roundtrip(tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    sd = {
        "view": base[1:5, 2:9:3],  # offset + strides into a shared storage
        "t": base.t(),
        "base": base,
        "half": torch.randn(3, 4).half(),
        "bf16": torch.randn(5).bfloat16(),
        "long": torch.arange(7),
        "param": torch.nn.Parameter(torch.randn(2, 3)),
        "scalar": torch.tensor(3.5),
    }
    torch.save(sd, tmp_path / "x.pth")
    got = features.read_torch_state_dict(tmp_path / "x.pth")
    assert set(got) == set(sd)
    for k, v in sd.items():
        want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert got[k].dtype == want.dtype, k
        np.testing.assert_array_equal(got[k], want)


def test_hoijax_never_imports_torch(meta_sd, tmp_path):
    sd, config = meta_sd
    torch.save(sd, tmp_path / "m.pth")
    code = (
        "import sys; from hoijax import features as f; "
        f"c = f.vit_preset('dinov2_vits14_reg').replace(num_layers=2); "
        f"p = f.load_vit_params({str(tmp_path / 'm.pth')!r}, c); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_corrupt_pth(meta_sd, tmp_path):
    sd, config = meta_sd
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 50)
    for path in (truncated, garbage):
        with pytest.raises(features.CheckpointError, match=str(path.name)) as e:
            features.load_vit_params(path, config)
        assert "corrupt" in str(e.value)
    # a storage of the wrong size inside an otherwise valid archive
    bad = tmp_path / "bad_storage.pth"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[:-4] if item.filename.endswith("/data/0") else data)
    with pytest.raises(features.CheckpointError, match="bad_storage.pth.*data/0"):
        features.read_torch_state_dict(bad)


def test_corrupt_safetensors(meta_sd, tmp_path):
    _, config = meta_sd
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(features.CheckpointError, match="broken.safetensors.*corrupt"):
        features.load_vit_params(path, config)
    with pytest.raises(features.CheckpointError, match="does not exist"):
        features.load_vit_params(tmp_path / "absent.pth", config)


def test_missing_key(meta_sd, tmp_path):
    sd, config = meta_sd
    sd = dict(sd)
    del sd["blocks.1.ls1.gamma"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(features.CheckpointError, match=r"missing\.pth: missing key 'blocks\.1\.ls1\.gamma'"):
        features.load_vit_params(tmp_path / "missing.pth", config)


def test_wrong_shape(meta_sd, tmp_path):
    sd, config = meta_sd
    sd = {**sd, "blocks.0.attn.qkv.weight": sd["blocks.0.attn.qkv.weight"][:, :100]}
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(features.CheckpointError,
                       match=r"shape\.pth: key 'blocks\.0\.attn\.qkv\.weight' has shape \(1152, 100\), "
                             r"expected \(1152, 384\)"):
        features.load_vit_params(tmp_path / "shape.pth", config)


def test_config_mismatch(meta_sd, tmp_path):
    sd, config = meta_sd
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(features.CheckpointError, match=r"m\.pth: unexpected key.*blocks\.1\."):
        features.load_vit_params(tmp_path / "m.pth", config.replace(num_layers=1))
    with pytest.raises(features.CheckpointError,
                       match=r"m\.pth: key 'register_tokens' has shape \(1, 4, 384\), expected \(1, 2, 384\)"):
        features.load_vit_params(tmp_path / "m.pth", config.replace(num_register_tokens=2))
    with pytest.raises(features.CheckpointError, match=r"m\.pth: this is a dinov2 checkpoint"):
        features.load_vit_params(tmp_path / "m.pth", features.vit_preset("dinov3_vits16"))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_unpickler_refuses_arbitrary_globals(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"x": _Evil()}, protocol=2))
        z.writestr("evil/byteorder", "little")
    with pytest.raises(features.CheckpointError, match=r"evil\.pth.*refusing to load global '(posix|os)\.system'"):
        features.read_torch_state_dict(path)
    assert not _Evil.marker.exists()
    # a plain (non-zip) pickle is not accepted either
    path.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(features.CheckpointError, match="evil.pth"):
        features.read_torch_state_dict(path)
    assert not _Evil.marker.exists()
    # a non-tensor value (e.g. training metadata) at the top level is named
    path = tmp_path / "meta.pth"
    torch.save({"w": torch.zeros(2), "step": 3}, path)
    with pytest.raises(features.CheckpointError, match=r"meta\.pth: key 'step' is a int"):
        features.read_torch_state_dict(path)


@pytest.mark.parametrize("antialias", [False, True])
def test_bicubic_matches_torch_interpolate(antialias):
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(1, 5, 37, 37, generator=g, dtype=torch.float64)
    for out_hw in [(16, 16), (4, 40), (37, 37), (37, 52), (1, 3)]:
        want = torch.nn.functional.interpolate(grid, size=out_hw, mode="bicubic",
                                               align_corners=False, antialias=antialias)[0].numpy()
        m_h = bicubic_matrix(37, out_hw[0], antialias=antialias)
        m_w = bicubic_matrix(37, out_hw[1], antialias=antialias)
        got = np.einsum("hi,cij,wj->chw", m_h, grid[0].numpy(), m_w)
        np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)
    # the two resamplers differ, so each test above pins down which one is used
    assert np.abs(bicubic_matrix(37, 16, antialias=True) - bicubic_matrix(37, 16)).max() > 1e-2


def test_rope_tables_match_hf():
    model = ref.hf_dinov3(layers=1, seed=0)
    for h, w in [(14, 14), (6, 11)]:
        x = torch.zeros(1, 3, 16 * h, 16 * w)
        with torch.no_grad():
            cos_t, sin_t = model.rope_embeddings(x)
        cos, sin = rope_cos_sin((h, w), 64, 100.0)
        np.testing.assert_allclose(cos, cos_t.numpy(), atol=2e-6, rtol=0)
        np.testing.assert_allclose(sin, sin_t.numpy(), atol=2e-6, rtol=0)


def test_bf16_safetensors(tmp_path):
    from safetensors.torch import save_file

    t = torch.randn(4, 3).bfloat16()
    save_file({"a": t, "b": torch.ones(2)}, str(tmp_path / "x.safetensors"))
    got = features.read_safetensors(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(got["a"], t.float().numpy())
    np.testing.assert_array_equal(got["b"], np.ones(2, np.float32))


def test_state_dict_in_memory_is_accepted():
    """``convert_state_dict`` on a dict (no file) names its origin in errors."""
    with pytest.raises(features.CheckpointError, match="<mine>: not a DINOv2/DINOv3 checkpoint"):
        features.convert_state_dict({"foo": np.zeros(2)}, features.vit_preset("dinov2_vits14"),
                                    origin="<mine>")
