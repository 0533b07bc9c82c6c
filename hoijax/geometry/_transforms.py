"""Thin helpers between rotation matrices / axis-angle vectors and jaxlie's SO3 / SE3.

The Lie-group math (exp, log, composition, safe small-angle branches) is jaxlie's; these
functions only convert between the array layouts the rest of hoijax uses.
"""

from __future__ import annotations

import jax.numpy as jnp
import jaxlie
from jaxtyping import Array, ArrayLike, Float


def axis_angle_to_matrix(axis_angle: Float[ArrayLike, "*batch 3"]) -> Float[Array, "*batch 3 3"]:
    """Rotation matrices from axis-angle vectors (radians), via ``jaxlie.SO3.exp``.

    Args:
        axis_angle: ``(*, 3)`` rotation axis times angle in radians.

    Returns:
        ``(*, 3, 3)`` rotation matrices. Gradients are finite at zero rotation.
    """
    return jaxlie.SO3.exp(jnp.asarray(axis_angle)).as_matrix()


def matrix_to_axis_angle(R: Float[ArrayLike, "*batch 3 3"]) -> Float[Array, "*batch 3"]:
    """Axis-angle vectors (radians, angle in ``[0, pi]``) from rotation matrices.

    Uses ``jaxlie.SO3.from_matrix(R).log()``. Gradients are finite at the identity.

    Args:
        R: ``(*, 3, 3)`` rotation matrices.

    Returns:
        ``(*, 3)`` axis times angle in radians.
    """
    return jaxlie.SO3.from_matrix(jnp.asarray(R)).log()


def se3_from_rotation_translation(
    R: Float[ArrayLike, "*batch 3 3"], t: Float[ArrayLike, "*batch 3"]
) -> jaxlie.SE3:
    """``jaxlie.SE3`` mapping ``p -> R @ p + t`` from a rotation matrix and a translation.

    Args:
        R: ``(*, 3, 3)`` rotation matrices.
        t: ``(*, 3)`` translations (metres by hoijax convention).
    """
    return jaxlie.SE3.from_rotation_and_translation(
        jaxlie.SO3.from_matrix(jnp.asarray(R)), jnp.asarray(t)
    )


def transform_points(T: jaxlie.SE3, points: Float[ArrayLike, "*batch 3"]) -> Float[Array, "*batch 3"]:
    """Apply a rigid transform to points, ``T @ p = R @ p + t``.

    Name the transform by its frames, e.g. ``transform_points(T_cam_obj, points_obj)``
    gives ``points_cam``.

    Args:
        T: an unbatched ``jaxlie.SE3``, or one whose batch axes broadcast against the
            leading axes of ``points``.
        points: ``(*, 3)`` points in the source frame.

    Returns:
        ``(*, 3)`` points in the target frame.
    """
    points = jnp.asarray(points)
    # Matrix form rather than T.apply: one matmul over all points instead of a quaternion
    # sandwich per point, and the same broadcasting for unbatched T.
    T_mat = T.as_matrix()
    R, t = T_mat[..., :3, :3], T_mat[..., :3, 3]
    return jnp.einsum("...ij,...j->...i", R, points) + t
