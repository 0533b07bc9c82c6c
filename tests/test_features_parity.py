"""Parity of ``hoijax.features.DinoViT`` with Hugging Face ``transformers`` (float32, eval mode).

Random non-trivial weights (layer scale, biases, norms, tokens all random) are saved in both
layouts people download: HF ``.safetensors`` and Meta's ``.pth`` (keys built by inverting HF's
conversion scripts in ``features_reference.py``). Both are converted with hoijax's torch-free
reader and must give the same parameters, and the Flax model must reproduce HF's
``last_hidden_state`` within 1e-4, including at input sizes where DINOv2's position embeddings
are interpolated (down- and up-sampled, non-square grids) and where DINOv3's RoPE grid is
non-square.
"""

from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from hoijax import features  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import features_reference as ref  # noqa: E402

TOL = 1e-4


def _flax_tokens(config, params, pixels):
    out = features.DinoViT(config).apply({"params": params}, pixels)  # eager: no compile, faster here
    c = config.hidden_size
    return np.concatenate([np.asarray(out.cls_token)[None], np.asarray(out.register_tokens),
                           np.asarray(out.patch_tokens).reshape(-1, c)], axis=0)


def _pixels(hw, seed=0):
    return np.random.default_rng(seed).standard_normal((*hw, 3)).astype(np.float32)


def _save_both(model, to_meta, directory: pathlib.Path):
    sd = ref.state_dict_numpy(model)
    hf_path = directory / "model.safetensors"
    safetensors_torch.save_file(sd, str(hf_path))
    meta_path = directory / "meta.pth"
    torch.save(to_meta(sd), meta_path)
    return hf_path, meta_path


@pytest.fixture(scope="module")
def dinov2(tmp_path_factory):
    model = ref.hf_dinov2(layers=4, seed=1)
    paths = _save_both(model, ref.to_meta_dinov2, tmp_path_factory.mktemp("dinov2"))
    return model, features.vit_preset("dinov2_vits14").replace(num_layers=4), paths


@pytest.fixture(scope="module")
def dinov2_reg(tmp_path_factory):
    model = ref.hf_dinov2(layers=4, registers=4, seed=2)
    paths = _save_both(model, ref.to_meta_dinov2, tmp_path_factory.mktemp("dinov2_reg"))
    return model, features.vit_preset("dinov2_vits14_reg").replace(num_layers=4), paths


@pytest.fixture(scope="module")
def dinov3(tmp_path_factory):
    model = ref.hf_dinov3(layers=4, seed=3)
    paths = _save_both(model, lambda sd: ref.to_meta_dinov3(sd, head_dim=64),
                       tmp_path_factory.mktemp("dinov3"))
    return model, features.vit_preset("dinov3_vits16").replace(num_layers=4), paths


# (H, W) in pixels -> patch grid: 37x37 -> 16x16 (down), 37x37 -> 4x40 (down in h, up in w).
# The native size (identity resampling) is checked against torch in test_features_checkpoints.py.
@pytest.mark.parametrize("name,hw", [("dinov2", (56, 560)), ("dinov2_reg", (224, 224)),
                                     ("dinov2_reg", (56, 560))])
def test_dinov2_parity(name, hw, request):
    model, config, (hf_path, _) = request.getfixturevalue(name)
    params = features.load_vit_params(hf_path, config)
    pixels = _pixels(hw)
    expected = ref.hf_forward(model, pixels)
    got = _flax_tokens(config, params, pixels)
    n_tokens = 1 + config.num_register_tokens + (hw[0] // 14) * (hw[1] // 14)
    assert got.shape == expected.shape == (n_tokens, 384)
    assert np.abs(got - expected).max() < TOL


@pytest.mark.parametrize("hw", [(160, 320)])
def test_dinov3_parity(dinov3, hw):
    model, config, (hf_path, _) = dinov3
    params = features.load_vit_params(hf_path, config)
    pixels = _pixels(hw, seed=1)
    expected = ref.hf_forward(model, pixels)
    got = _flax_tokens(config, params, pixels)
    assert got.shape == expected.shape == (5 + (hw[0] // 16) * (hw[1] // 16), 384)
    assert np.abs(got - expected).max() < TOL


def test_pos_embed_resampler_matters(dinov2_reg):
    """The parity test can fail: at an interpolated size, resampling the register model's
    position embeddings with plain bicubic (Dinov2Model's) instead of antialiased bicubic
    misses HF's output by far more than the tolerance."""
    model, config, (hf_path, _) = dinov2_reg
    params = features.load_vit_params(hf_path, config)
    pixels = _pixels((224, 224))
    expected = ref.hf_forward(model, pixels)
    wrong = _flax_tokens(config.replace(pos_embed_antialias=False), params, pixels)
    assert np.abs(wrong - expected).max() > 100 * TOL


@pytest.mark.parametrize("name", ["dinov2", "dinov2_reg", "dinov3"])
def test_meta_pth_equals_hf_safetensors(name, request):
    """Both layouts convert to identical parameters (so to identical outputs)."""
    _, config, (hf_path, meta_path) = request.getfixturevalue(name)
    p_hf = features.load_vit_params(hf_path, config)
    p_meta = features.load_vit_params(meta_path, config)
    assert jax.tree.structure(p_hf) == jax.tree.structure(p_meta)
    for a, b in zip(jax.tree.leaves(p_hf), jax.tree.leaves(p_meta)):
        np.testing.assert_array_equal(a, b)


def test_meta_teacher_checkpoint_nesting(dinov3, tmp_path):
    """A training checkpoint ``{"teacher": {"backbone.<key>": ..., "dino_head...": ...}}``."""
    _, config, (hf_path, meta_path) = dinov3
    sd = torch.load(meta_path, weights_only=True)
    nested = {"teacher": {**{f"backbone.{k}": v for k, v in sd.items()},
                          "dino_head.mlp.0.weight": torch.zeros(2, 2)}, "iteration": 7}
    torch.save(nested, tmp_path / "ckpt.pth")
    p = features.load_vit_params(tmp_path / "ckpt.pth", config)
    p_hf = features.load_vit_params(hf_path, config)
    for a, b in zip(jax.tree.leaves(p_hf), jax.tree.leaves(p)):
        np.testing.assert_array_equal(a, b)


def test_hub_file_names_dinov2(dinov2_reg, tmp_path):
    """The ``facebook/dinov2-*`` hub files use pre-transformers-5 names
    (``attention.attention.query``, ``attention.output.dense``); they convert identically."""
    model, config, (hf_path, _) = dinov2_reg
    hub = ref.to_hub_dinov2_names(ref.state_dict_numpy(model))
    assert any("attention.attention.query" in k for k in hub)
    safetensors_torch.save_file(hub, str(tmp_path / "hub.safetensors"))
    p = features.load_vit_params(tmp_path / "hub.safetensors", config)
    for a, b in zip(jax.tree.leaves(features.load_vit_params(hf_path, config)), jax.tree.leaves(p)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", ["dinov2", "dinov3"])
def test_gated_mlp_parity_both_layouts(family, tmp_path):
    """DINOv2-giant's SwiGLU (hub ``weights_in`` / Meta ``w12``) and DINOv3's gated MLP (Meta
    ``w1/w2/w3``), 2 layers: HF parity, and all layouts give the same parameters."""
    if family == "dinov2":
        model = ref.hf_dinov2(layers=2, swiglu=True, seed=4)
        config = features.vit_preset("dinov2_vits14").replace(num_layers=2, mlp="swiglu",
                                                              mlp_hidden_size=1024)
        hw, to_meta = (112, 168), ref.to_meta_dinov2
    else:
        model = ref.hf_dinov3(layers=2, gated=True, seed=5)
        config = features.vit_preset("dinov3_vits16plus").replace(num_layers=2)
        hw, to_meta = (96, 128), (lambda sd: ref.to_meta_dinov3(sd, head_dim=64))
    hf_path, meta_path = _save_both(model, to_meta, tmp_path)
    params = features.load_vit_params(hf_path, config)
    pixels = _pixels(hw, seed=2)
    assert np.abs(_flax_tokens(config, params, pixels) - ref.hf_forward(model, pixels)).max() < TOL
    others = [features.load_vit_params(meta_path, config)]
    if family == "dinov2":
        hub = ref.to_hub_dinov2_names(ref.state_dict_numpy(model))
        assert any("weights_in" in k for k in hub)
        safetensors_torch.save_file(hub, str(tmp_path / "hub.safetensors"))
        others.append(features.load_vit_params(tmp_path / "hub.safetensors", config))
    for other in others:
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other)):
            np.testing.assert_array_equal(a, b)


def test_full_depth_dinov2_with_registers(tmp_path):
    """ViT-S/14 with registers at its full depth of 12, at a non-native, non-square size."""
    model = ref.hf_dinov2(layers=12, registers=4, seed=6)
    config = features.vit_preset("dinov2_vits14_reg")
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(ref.state_dict_numpy(model), str(path))
    pixels = _pixels((196, 252), seed=3)
    got = _flax_tokens(config, features.load_vit_params(path, config), pixels)
    assert np.abs(got - ref.hf_forward(model, pixels)).max() < TOL
