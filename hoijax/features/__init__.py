"""DINOv2/v3 ViTs in Flax, weight conversion from PyTorch checkpoints, similarity maps."""

from hoijax.features._similarity import (
    bilinear_sample,
    image_to_feature_uv,
    sample_similarity,
    similarity_maps,
)

__all__ = ["bilinear_sample", "image_to_feature_uv", "sample_similarity", "similarity_maps"]
