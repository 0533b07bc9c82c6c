"""DINOv2/v3 ViTs in Flax, weight conversion from PyTorch checkpoints, similarity maps."""

from hoijax.features._config import PRESETS, ViTConfig, vit_preset
from hoijax.features._convert import (
    convert_state_dict,
    load_vit_params,
    read_safetensors,
    read_state_dict,
)
from hoijax.features._dense import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    dense_features,
    patch_aligned_hw,
    preprocess_image,
    upsample_features,
)
from hoijax.features._similarity import (
    bilinear_sample,
    image_to_feature_uv,
    sample_similarity,
    similarity_maps,
)
from hoijax.features._sequence import (
    fibonacci_directions,
    frame_features,
    lift_vertex_features,
    look_at,
    object_vertex_features,
    render_views,
    sample_texture,
    view_cameras,
    visible_vertices,
)
from hoijax.features._torch_pickle import CheckpointError, read_torch_state_dict
from hoijax.features._vit import DinoViT, ViTOutput, init_vit_params, vit_param_shapes

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "CheckpointError",
    "DinoViT",
    "ViTConfig",
    "ViTOutput",
    "bilinear_sample",
    "convert_state_dict",
    "dense_features",
    "fibonacci_directions",
    "frame_features",
    "image_to_feature_uv",
    "init_vit_params",
    "lift_vertex_features",
    "load_vit_params",
    "look_at",
    "object_vertex_features",
    "patch_aligned_hw",
    "preprocess_image",
    "read_safetensors",
    "read_state_dict",
    "read_torch_state_dict",
    "render_views",
    "sample_texture",
    "sample_similarity",
    "similarity_maps",
    "upsample_features",
    "view_cameras",
    "visible_vertices",
    "vit_param_shapes",
    "vit_preset",
]
