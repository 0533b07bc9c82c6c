"""AGILE tracking objectives and the losses of the learned models (pure JAX).

Every loss acts on one unbatched frame, works under ``jit``/``vmap``/``grad``, takes its weights
and thresholds as traced arrays, and returns ``(value, terms)`` where ``terms`` is a dict of
named scalars for logging. Combine with :func:`combine_losses` and :class:`LossWeights`. The
tracking terms also have residual forms (``*_residuals``) for the Gauss–Newton solver.
"""

from hoijax.losses._dino import (
    DEFAULT_DEPTH_TOL_M as DEFAULT_DEPTH_TOL_M,
    DinoForm as DinoForm,
    SurfacePoints as SurfacePoints,
    dino_loss as dino_loss,
    interpolate_at as interpolate_at,
    sample_surface as sample_surface,
    select_visible_points as select_visible_points,
)
from hoijax.losses._depth import (
    DEFAULT_DEPTH_SCALE_M as DEFAULT_DEPTH_SCALE_M,
    depth_loss as depth_loss,
    point_to_surface_loss as point_to_surface_loss,
)
from hoijax.losses._frames import cam_to_obj as cam_to_obj, obj_to_cam as obj_to_cam
from hoijax.losses._interact import (
    DEFAULT_CONTACT_BAND_M as DEFAULT_CONTACT_BAND_M,
    DEFAULT_CONTACT_SOFTMIN_M as DEFAULT_CONTACT_SOFTMIN_M,
    DEFAULT_MAX_DIST_M as DEFAULT_MAX_DIST_M,
    contact_loss as contact_loss,
    interaction_loss as interaction_loss,
)
from hoijax.losses._joint import joint_loss as joint_loss
from hoijax.losses._learned import (
    chamfer_distance as chamfer_distance,
    mano_param_loss as mano_param_loss,
    vertex_loss as vertex_loss,
)
from hoijax.losses._residuals import (
    depth_residuals as depth_residuals,
    dino_residuals as dino_residuals,
    interaction_residuals as interaction_residuals,
    joint_residuals as joint_residuals,
    mask_residuals as mask_residuals,
    point_to_surface_residuals as point_to_surface_residuals,
)
from hoijax.losses._mask import (
    DEFAULT_OCCLUDER_MARGIN_M as DEFAULT_OCCLUDER_MARGIN_M,
    MaskOcclusion as MaskOcclusion,
    depth_occluders as depth_occluders,
    mask_loss as mask_loss,
)
from hoijax.losses._weights import LossWeights as LossWeights, combine_losses as combine_losses

__all__ = [
    "DEFAULT_CONTACT_BAND_M", "DEFAULT_CONTACT_SOFTMIN_M", "DEFAULT_DEPTH_SCALE_M",
    "DEFAULT_DEPTH_TOL_M", "DEFAULT_MAX_DIST_M", "DEFAULT_OCCLUDER_MARGIN_M", "DinoForm",
    "LossWeights", "MaskOcclusion", "SurfacePoints", "cam_to_obj", "chamfer_distance",
    "combine_losses", "contact_loss", "depth_loss", "depth_occluders", "depth_residuals",
    "dino_loss", "dino_residuals",
    "interaction_loss", "interaction_residuals", "interpolate_at", "joint_loss", "joint_residuals",
    "mano_param_loss", "mask_loss", "mask_residuals", "obj_to_cam", "point_to_surface_loss",
    "point_to_surface_residuals", "sample_surface", "select_visible_points", "vertex_loss",
]
