"""The MANO hand model as a pytree: numbers are `jax.Array` leaves, topology is static."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

Side = Literal["right", "left"]

NUM_JOINTS = 16
"""MANO's kinematic joints: the wrist, then three per finger."""

NUM_POSE_COEFFS = 45
"""Axis-angle articulation size: 15 finger joints × 3."""


class ManoModel(eqx.Module):
    """A MANO-format hand model (official or synthetic), one side.

    Array fields use the official ``MANO_RIGHT.pkl`` layout and units (metres). ``V`` is the vertex
    count (778), ``S`` the number of shape directions (10), ``C`` the number of PCA components (45).
    """

    v_template: Float[Array, "V 3"]
    """Rest-pose template vertices, metres."""
    shapedirs: Float[Array, "V 3 S"]
    """Shape blend directions, metres per unit beta."""
    posedirs: Float[Array, "V 3 135"]
    """Pose-corrective blend directions, metres per unit of ``(R - I)`` entry of joints 1..15."""
    J_regressor: Float[Array, "16 V"]
    """Dense joint regressor: rest joints = ``J_regressor @ v_shaped``."""
    lbs_weights: Float[Array, "V 16"]
    """Linear-blend-skinning weights, rows sum to one."""
    hands_components: Float[Array, "C 45"]
    """PCA basis of the articulation (rows are components)."""
    hands_mean: Float[Array, "45"]
    """Mean articulation (axis-angle, radians) added unless ``flat_hand_mean``."""
    faces: Int[Array, "F 3"]
    """Triangle vertex indices (int32), counter-clockwise seen from outside."""
    parents: tuple[int, ...] = eqx.field(static=True)
    """Parent joint of each joint; ``-1`` for the root (wrist)."""
    side: Side = eqx.field(static=True, default="right")
    """Which hand this model file describes."""

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_verts(self) -> int:
        return self.v_template.shape[0]

    def astype(self, dtype) -> "ManoModel":
        """Cast the floating-point arrays (e.g. to float64 for gradient checks)."""
        cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        return eqx.tree_at(
            lambda m: (m.v_template, m.shapedirs, m.posedirs, m.J_regressor, m.lbs_weights,
                       m.hands_components, m.hands_mean),
            self,
            replace_fn=cast,
        )


def model_from_arrays(arrays: dict[str, np.ndarray], side: Side) -> ManoModel:
    """Build a :class:`ManoModel` from already validated official-layout arrays."""
    parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
    parents[0] = -1  # the official files store uint32 max for the root
    f32 = lambda k: jnp.asarray(np.asarray(arrays[k], np.float64), jnp.float32)  # noqa: E731
    return ManoModel(
        v_template=f32("v_template"),
        shapedirs=f32("shapedirs"),
        posedirs=f32("posedirs"),
        J_regressor=f32("J_regressor"),
        lbs_weights=f32("weights"),
        hands_components=f32("hands_components"),
        hands_mean=f32("hands_mean"),
        faces=jnp.asarray(np.asarray(arrays["f"], np.int64), jnp.int32),
        parents=tuple(int(p) for p in parents),
        side=side,
    )
