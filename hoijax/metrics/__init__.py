"""HOLD-compatible evaluation metrics for hands and objects (pure JAX, one frame at a time).

Every metric acts on one frame (or one sequence for the success rule) and works under ``jit``;
batch frames and sequences with ``vmap``, then reduce on the host with :func:`aggregate` (mean
over a sequence's valid frames, then over sequences, as HOLD does). Inputs are metres; outputs
carry their unit in the name (``_mm``, ``_cm2``, ``_deg``); F-scores are fractions in [0, 1]
(HOLD prints them × 100). Nearest neighbours are exact brute force in chunks (memory
O(chunk × M)). Evaluation only: these functions are not meant to be differentiated.

Which HOLD number is which function (github zc-alexfan/hold, ``code/evaluate.py``):

=============  ==========================================================================
HOLD key       hoijax
=============  ==========================================================================
mpjpe_ra_r     :func:`mpjpe_mm` (root-relative, 21 joints)
cd_icp, f*_icp :func:`object_shape_metrics` on the first frame (ICP with scale)
cd_ra, f*_ra   :func:`object_root_aligned_metrics` per frame
cd_right       :func:`hand_relative_metrics` / :func:`cd_h_cm2` per frame (CD_h)
mrrpe_ho       :func:`mrrpe_ho_mm` per frame
=============  ==========================================================================

Beyond HOLD: PA-MPJPE, P-MPVPE and F@5/F@15 of the hand (HO-3D's challenge metrics), object
pose errors (rotation, translation, ADD, ADD-S) and a tracking success rule
(:func:`tracking_failed`).
"""

from hoijax.metrics._aggregate import aggregate, aggregate_dict, sequence_means
from hoijax.metrics._chamfer import CloudComparison, chamfer_cm2, compare_clouds, fscore_from_pr
from hoijax.metrics._hand import (
    HAND_FSCORE_THRESHOLDS_M,
    HandMetrics,
    hand_fscores,
    hand_metrics,
    mpjpe_mm,
    pa_mpjpe_mm,
    pa_mpvpe_mm,
)
from hoijax.metrics._nn import max_pairwise_distance, nearest_neighbors, nearest_sq_dist
from hoijax.metrics._object import (
    CUBE_ROTATIONS,
    DEFAULT_ICP_POINTS,
    DEFAULT_NUM_SURFACE_POINTS,
    OBJECT_FSCORE_THRESHOLDS_M,
    ShapeAlignment,
    Similarity,
    align_shapes,
    bbox_center,
    cd_h_cm2,
    hand_relative_metrics,
    icp_similarity,
    mrrpe_ho_mm,
    mrrpe_mm,
    object_root_aligned_metrics,
    object_shape_metrics,
    sample_surface,
)
from hoijax.metrics._pose import (
    SUCCESS_ADDS_FRACTION,
    SUCCESS_MAX_BAD_FRACTION,
    add_mm,
    adds_mm,
    object_diameter_mm,
    rotation_error_deg,
    success_rate,
    tracking_failed,
    translation_error_mm,
)
from hoijax.metrics._symmetry import (
    Symmetry,
    detect_symmetries,
    mssd_mm,
    mssd_transforms_mm,
    symmetric_rotation_error_deg,
    symmetry_from_rotations,
)

__all__ = [
    "CUBE_ROTATIONS", "DEFAULT_ICP_POINTS", "DEFAULT_NUM_SURFACE_POINTS",
    "HAND_FSCORE_THRESHOLDS_M", "OBJECT_FSCORE_THRESHOLDS_M", "SUCCESS_ADDS_FRACTION",
    "SUCCESS_MAX_BAD_FRACTION", "CloudComparison", "HandMetrics", "ShapeAlignment", "Similarity",
    "add_mm", "adds_mm", "aggregate", "aggregate_dict", "align_shapes", "bbox_center",
    "cd_h_cm2", "chamfer_cm2", "compare_clouds", "fscore_from_pr", "hand_fscores",
    "hand_metrics", "hand_relative_metrics", "icp_similarity", "max_pairwise_distance",
    "mpjpe_mm", "mrrpe_ho_mm", "mrrpe_mm", "nearest_neighbors", "nearest_sq_dist",
    "object_diameter_mm", "object_root_aligned_metrics", "object_shape_metrics",
    "pa_mpjpe_mm", "pa_mpvpe_mm", "rotation_error_deg", "sample_surface", "sequence_means",
    "success_rate", "tracking_failed", "translation_error_mm", "Symmetry", "detect_symmetries",
    "mssd_mm", "mssd_transforms_mm", "symmetric_rotation_error_deg", "symmetry_from_rotations",
]
