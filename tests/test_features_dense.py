"""Dense features: preprocessing, the patch grid, and upsampling consistent with the similarity
maps' coordinate convention (``image_to_feature_uv`` / ``bilinear_sample``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import features

CONFIG = features.vit_preset("dinov3_vits16").replace(num_layers=1, hidden_size=64, num_heads=2,
                                                      mlp_hidden_size=128)


@pytest.fixture(scope="module")
def params():
    return features.init_vit_params(CONFIG, jax.random.key(1))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)


def test_patch_grid_and_normalization(params, image):
    """The image is resized to the nearest patch multiple (70x90 -> 64x96, grid 4x6), uint8 and
    [0, 1] floats give the same features, and the result is the ViT on ImageNet-normalized
    pixels."""
    assert features.patch_aligned_hw((70, 90), 16) == (64, 96)
    feats = features.dense_features(params, CONFIG, image)
    assert feats.shape == (4, 6, 64)
    np.testing.assert_allclose(
        features.dense_features(params, CONFIG, image.astype(np.float32) / 255.0), feats, atol=1e-5)
    x = jax.image.resize(jnp.asarray(image, jnp.float32) / 255.0, (64, 96, 3), "bilinear")
    x = (x - jnp.asarray(features.IMAGENET_MEAN)) / jnp.asarray(features.IMAGENET_STD)
    direct = features.DinoViT(CONFIG).apply({"params": params}, x).patch_tokens
    np.testing.assert_allclose(feats, direct, atol=1e-5)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        features.dense_features(params, CONFIG, image, input_hw=(60, 96))


def test_upsampled_shapes_and_patch_centres(params, image):
    feats = np.asarray(features.dense_features(params, CONFIG, image, input_hw=(64, 96)))
    full = features.dense_features(params, CONFIG, image, input_hw=(64, 96), output_hw="image")
    assert full.shape == (70, 90, 64)
    # an odd upsampling factor puts a pixel centre exactly on every patch centre
    up = np.asarray(features.dense_features(params, CONFIG, image, input_hw=(64, 96),
                                            output_hw=(12, 18)))
    assert up.shape == (12, 18, 64)
    np.testing.assert_allclose(up[1::3, 1::3], feats, atol=1e-5)
    assert np.abs(up[0::3, 0::3] - feats).max() > 1e-3  # and elsewhere it does interpolate


def test_upsampling_matches_bilinear_sample(params, image):
    """Reading the image-resolution map at pixel uv equals ``bilinear_sample`` of the patch map at
    ``image_to_feature_uv(uv)`` (interior pixels), so features and similarity maps agree."""
    feats = features.dense_features(params, CONFIG, image)
    full = np.asarray(features.dense_features(params, CONFIG, image, output_hw="image"))
    v, u = np.meshgrid(np.arange(10, 60), np.arange(10, 80), indexing="ij")
    uv = np.stack([u.ravel(), v.ravel()], -1).astype(np.float32)
    sampled, inside = features.bilinear_sample(feats, features.image_to_feature_uv(uv, (70, 90), (4, 6)))
    assert bool(np.all(inside))
    np.testing.assert_allclose(full[v.ravel(), u.ravel()], sampled, atol=1e-5)


def test_jit_and_vmap(params, image):
    fn = jax.jit(lambda p, im: features.dense_features(p, CONFIG, im, output_hw=(8, 12)))
    batch = np.stack([image, image[::-1]])
    out = jax.vmap(fn, in_axes=(None, 0))(params, batch)
    assert out.shape == (2, 8, 12, 64)
    np.testing.assert_allclose(out[1], fn(params, image[::-1]), atol=1e-5)
