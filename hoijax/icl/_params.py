"""One MANO parameterization for the inputs and outputs of EgoHandICL, and the hand types.

EgoHandICL feeds coarse MANO estimates in and reads refined MANO parameters out in the same
layout ("a unified MANO parameterization", paper §3.2), so template and query, input and target,
are all 61-vector per hand:

=========  =======  =====================================================================
slice      size     meaning
=========  =======  =====================================================================
0:3        3        ``global_orient``, axis-angle about the wrist joint, radians
3:48       45       ``hand_pose``, 15 × axis-angle, radians, **absolute** (``flat_hand_mean=True``)
48:58      10       ``betas``
58:61      3        ``transl``, metres, camera frame (the "camera" slot of the paper's Φ)
=========  =======  =====================================================================

A frame holds ``H`` hand slots (``H = 2``: slot 0 the right hand, slot 1 the left hand, the
default :data:`TWO_HANDS`; ``H = 1`` for single-hand data) and a presence mask per slot.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax import mano

NUM_HAND_PARAMS = 61
"""Size of one hand's parameter vector: orient 3 + articulation 45 + betas 10 + transl 3."""

GLOBAL_ORIENT = slice(0, 3)
HAND_POSE = slice(3, 48)
BETAS = slice(48, 58)
TRANSL = slice(58, 61)

PARAM_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("root", (0, 1, 2, 58, 59, 60)),
    ("index", tuple(range(3, 12))),
    ("middle", tuple(range(12, 21))),
    ("pinky_ring", tuple(range(21, 39))),
    ("thumb", tuple(range(39, 48))),
    ("betas", tuple(range(48, 58))),
)
"""Disjoint groups of the 61 entries, one structural token each: root (global orient and
translation), the fingers' articulation in MANO's joint order (index 1-3, middle 4-6, pinky 7-9
and ring 10-12, thumb 13-15), and shape. Masking a target token hides exactly one group."""


def group_masks() -> np.ndarray:
    """``(K, 61)`` float32: row ``k`` is 1 on the entries of :data:`PARAM_GROUPS` ``[k]``."""
    m = np.zeros((len(PARAM_GROUPS), NUM_HAND_PARAMS), np.float32)
    for k, (_, ids) in enumerate(PARAM_GROUPS):
        m[k, list(ids)] = 1.0
    return m


HAND_TYPES = ("left", "right", "both", "none")
"""Hand participation modes (paper §3.1, predefined visual templates); index = type id."""
LEFT, RIGHT, BOTH, NONE = 0, 1, 2, 3

TWO_HANDS: tuple[mano.Side, ...] = ("right", "left")
"""Default slot layout: slot 0 the right hand, slot 1 the left hand."""

TRANSL_UNIT_M = 0.1
"""Networks see translations in decimetres (``transl / TRANSL_UNIT_M``) so that all 61 entries
are O(1); see :func:`to_network_units`."""


def network_scale(dtype=jnp.float32) -> Float[Array, "61"]:
    """Per-entry factor from parameter units to network units (1, except 1/0.1 m for transl)."""
    s = np.ones(NUM_HAND_PARAMS, np.float32)
    s[TRANSL] = 1.0 / TRANSL_UNIT_M
    return jnp.asarray(s, dtype)


def to_network_units(params: Float[ArrayLike, "*B 61"]) -> Float[Array, "*B 61"]:
    """Radians and betas unchanged, translation in decimetres."""
    params = jnp.asarray(params)
    return params * network_scale(params.dtype)


def from_network_units(values: Float[ArrayLike, "*B 61"]) -> Float[Array, "*B 61"]:
    """Inverse of :func:`to_network_units`."""
    values = jnp.asarray(values)
    return values / network_scale(values.dtype)


def join_hand_params(
    global_orient: Float[ArrayLike, "*B 3"],
    hand_pose: Float[ArrayLike, "*B 45"],
    betas: Float[ArrayLike, "*B 10"],
    transl: Float[ArrayLike, "*B 3"],
) -> Float[Array, "*B 61"]:
    """Pack smplx-style MANO arguments (absolute articulation) into the 61-vector."""
    return jnp.concatenate([jnp.asarray(global_orient), jnp.asarray(hand_pose),
                            jnp.asarray(betas), jnp.asarray(transl)], axis=-1)


def split_hand_params(
    params: Float[ArrayLike, "*B 61"],
) -> tuple[Float[Array, "*B 3"], Float[Array, "*B 45"], Float[Array, "*B 10"], Float[Array, "*B 3"]]:
    """``(global_orient, hand_pose, betas, transl)`` of a 61-vector."""
    p = jnp.asarray(params)
    return p[..., GLOBAL_ORIENT], p[..., HAND_POSE], p[..., BETAS], p[..., TRANSL]


def mirror_hand_params(params: Float[ArrayLike, "*B 61"]) -> Float[Array, "*B 61"]:
    """The same pose read by the other hand's model: axis-angles map to ``(x, -y, -z)``.

    MANO's left model is the right one reflected in the yz-plane, so ``left(mirror(θ))`` is the
    reflection of ``right(θ)``. Betas and translation are kept. Used to simulate left/right
    confusions of a detector.
    """
    p = jnp.asarray(params)
    sign = np.ones(NUM_HAND_PARAMS, np.float32)
    sign[0:48] = np.tile([1.0, -1.0, -1.0], 16)
    return p * jnp.asarray(sign, p.dtype)


def hand_type_id(
    presence: Bool[ArrayLike, " H"], sides: Sequence[mano.Side] = TWO_HANDS
) -> Int[Array, ""]:
    """The hand-type id (index into :data:`HAND_TYPES`) of one frame's presence mask."""
    presence = jnp.asarray(presence, bool)
    if presence.shape != (len(sides),):
        raise ValueError(f"presence {presence.shape} does not match sides {tuple(sides)}")
    right = jnp.any(jnp.stack([presence[i] for i, s in enumerate(sides) if s == "right"]
                              or [jnp.asarray(False)]))
    left = jnp.any(jnp.stack([presence[i] for i, s in enumerate(sides) if s == "left"]
                             or [jnp.asarray(False)]))
    return jnp.where(right & left, BOTH, jnp.where(right, RIGHT, jnp.where(left, LEFT, NONE))
                     ).astype(jnp.int32)


def hand_models(sides: Sequence[mano.Side] = TWO_HANDS, seed: int = 0) -> tuple[mano.ManoModel, ...]:
    """The synthetic MANO model of each slot (pass official ones loaded with ``mano.load_mano``
    instead wherever a function takes ``models``)."""
    return tuple(mano.synthetic_mano(s, seed) for s in sides)


def hands_forward(
    models: Sequence[mano.ManoModel], params: Float[ArrayLike, "H 61"]
) -> tuple[Float[Array, "H 778 3"], Float[Array, "H 21 3"]]:
    """Vertices and 21 keypoints (OpenPose order, smplx tips) of each slot, metres, camera frame.

    One frame; slot ``h`` runs through ``models[h]``. Absent slots are computed too (mask them
    downstream)."""
    params = jnp.asarray(params)
    if params.shape != (len(models), NUM_HAND_PARAMS):
        raise ValueError(f"params {params.shape} != ({len(models)}, {NUM_HAND_PARAMS})")
    verts, kps = [], []
    for h, model in enumerate(models):
        go, pose, betas, transl = split_hand_params(params[h])
        out = mano.forward(model, go, pose, betas, transl, flat_hand_mean=True)
        verts.append(out.vertices)
        kps.append(out.keypoints(tips="smplx", order="openpose"))
    return jnp.stack(verts), jnp.stack(kps)


_forward_batch_flat = jax.jit(functools.partial(mano.forward_batch, flat_hand_mean=True))


def hands_forward_batch(
    models: Sequence[mano.ManoModel], params: Float[ArrayLike, "B H 61"]
) -> tuple[Float[Array, "B H 778 3"], Float[Array, "B H 21 3"]]:
    """:func:`hands_forward` for many frames through ``mano.forward_batch`` (host-side
    evaluation and data generation; inside a vmapped loss use :func:`hands_forward`)."""
    params = jnp.asarray(params)
    verts, kps = [], []
    for h, model in enumerate(models):
        go, pose, betas, transl = split_hand_params(params[:, h])
        out = _forward_batch_flat(model, go, pose, betas, transl)
        verts.append(out.vertices)
        kps.append(out.keypoints(tips="smplx", order="openpose"))
    return jnp.stack(verts, axis=1), jnp.stack(kps, axis=1)
