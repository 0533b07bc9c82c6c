"""Camera geometry, rigid and similarity transforms, constrained ICP and PnP (pure JAX).

Every function acts on one unbatched example and works under ``jit``, ``vmap`` and
``grad``; batch at the call site with ``vmap``.
"""

from hoijax.geometry._camera import (
    DEFAULT_MIN_DEPTH_M as DEFAULT_MIN_DEPTH_M,
    Camera as Camera,
    depth_to_points as depth_to_points,
    pixel_grid as pixel_grid,
    project as project,
    unproject as unproject,
)
from hoijax.geometry._icp import IcpResult as IcpResult, constrained_icp as constrained_icp
from hoijax.geometry._mesh import (
    sample_surface as sample_surface,
    vertex_normals as vertex_normals,
)
from hoijax.geometry._pnp import PnpResult as PnpResult, translation_pnp as translation_pnp
from hoijax.geometry._procrustes import (
    procrustes_align as procrustes_align,
    similarity_transform as similarity_transform,
)
from hoijax.geometry._safe import safe_norm as safe_norm, safe_sqrt as safe_sqrt
from hoijax.geometry._transforms import (
    axis_angle_to_matrix as axis_angle_to_matrix,
    matrix_to_axis_angle as matrix_to_axis_angle,
    se3_from_rotation_translation as se3_from_rotation_translation,
    transform_points as transform_points,
)

__all__ = [
    "DEFAULT_MIN_DEPTH_M",
    "Camera",
    "IcpResult",
    "PnpResult",
    "axis_angle_to_matrix",
    "constrained_icp",
    "depth_to_points",
    "matrix_to_axis_angle",
    "pixel_grid",
    "procrustes_align",
    "project",
    "safe_norm",
    "sample_surface",
    "safe_sqrt",
    "se3_from_rotation_translation",
    "similarity_transform",
    "transform_points",
    "translation_pnp",
    "unproject",
    "vertex_normals",
]
