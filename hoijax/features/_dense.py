"""Dense DINO features of an image: preprocessing, the ViT, and bilinear upsampling.

The image is **resized** (bilinear, antialiased) to a multiple of the patch size, never padded:
the feature map then covers exactly the image's field of view, so feature cell ``(r, c)`` has
its centre at image pixel ``((c + 0.5) W / w - 0.5, (r + 0.5) H / h - 0.5)``, the convention of
:func:`hoijax.features.image_to_feature_uv`. Upsampling back to pixels uses the same
half-pixel-centre convention (``jax.image.resize`` bilinear), so an upsampled map read at a
pixel equals :func:`hoijax.features.bilinear_sample` of the patch map at that pixel's
feature-map coordinates (away from the one-cell border, where both clamp).

Everything is static-shaped: jit with ``config``, ``input_hw`` and ``output_hw`` static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, UInt8

from hoijax.features._config import ViTConfig
from hoijax.features._vit import DinoViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet, in [0, 1] units (the DINO models' input normalization)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet, in [0, 1] units."""


def patch_aligned_hw(image_hw: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """The nearest size whose sides are (positive) multiples of ``patch_size``."""
    return tuple(max(1, round(s / patch_size)) * patch_size for s in image_hw)  # type: ignore[return-value]


def preprocess_image(
    image: UInt8[ArrayLike, "H W 3"] | Float[ArrayLike, "H W 3"],
    input_hw: tuple[int, int],
) -> Float[Array, "Hi Wi 3"]:
    """ImageNet-normalized pixels at ``input_hw``: uint8 is scaled by 1/255, float is taken as
    [0, 1]; the image is resized bilinearly (antialiased when shrinking) when its size differs."""
    image = jnp.asarray(image)
    x = image.astype(jnp.float32) / 255.0 if image.dtype == jnp.uint8 else image.astype(jnp.float32)
    if x.shape[:2] != tuple(input_hw):
        x = jax.image.resize(x, (*input_hw, 3), method="bilinear", antialias=True)
    mean = jnp.asarray(IMAGENET_MEAN, x.dtype)
    std = jnp.asarray(IMAGENET_STD, x.dtype)
    return (x - mean) / std


def upsample_features(
    features: Float[ArrayLike, "h w C"], output_hw: tuple[int, int]
) -> Float[Array, "Ho Wo C"]:
    """Bilinear resize of a feature map with half-pixel centres (same field of view)."""
    features = jnp.asarray(features)
    return jax.image.resize(features, (*output_hw, features.shape[-1]), method="bilinear")


def dense_features(
    params: dict,
    config: ViTConfig,
    image: UInt8[ArrayLike, "H W 3"] | Float[ArrayLike, "H W 3"],
    *,
    input_hw: tuple[int, int] | None = None,
    output_hw: tuple[int, int] | str | None = None,
) -> Float[Array, "Ho Wo C"]:
    """Final-norm DINO patch features of one image, optionally upsampled.

    Args:
      params: :class:`DinoViT` parameters (e.g. from :func:`load_vit_params`).
      config: the ViT architecture.
      image: RGB (H, W, 3), uint8 or float in [0, 1].
      input_hw: size the image is resized to before the ViT; both sides multiples of the patch
        size. Default: the nearest such size to (H, W) (``patch_aligned_hw``), so the grid is
        about (H / patch, W / patch). Larger inputs give finer features.
      output_hw: ``None`` for the patch grid (h, w, C); ``"image"`` for (H, W, C); or a size.

    Returns:
      (h, w, C) patch features, or the bilinearly upsampled (Ho, Wo, C) map.
    """
    image = jnp.asarray(image)
    height, width = image.shape[0], image.shape[1]
    p = config.patch_size
    input_hw = patch_aligned_hw((height, width), p) if input_hw is None else tuple(input_hw)
    if input_hw[0] % p or input_hw[1] % p or min(input_hw) <= 0:
        raise ValueError(f"input_hw {input_hw} must be positive multiples of the patch size {p}")
    pixels = preprocess_image(image, input_hw)
    feats = DinoViT(config).apply({"params": params}, pixels).patch_tokens
    if output_hw is None:
        return feats
    if isinstance(output_hw, str):
        if output_hw != "image":
            raise ValueError(f"output_hw must be None, 'image' or (height, width), got {output_hw!r}")
        output_hw = (height, width)
    return upsample_features(feats, tuple(output_hw))
