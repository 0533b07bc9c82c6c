"""Object symmetries, and the pose errors that do not count them: rotation error modulo the
symmetry group and BOP's MSSD.

A rotation ``S`` about the object's surface centroid ``c`` (``x -> S (x - c) + c``) is a
symmetry when it maps the surface onto itself: poses ``T`` and ``T ∘ S`` then look the same,
and an error between them is not the tracker's. :func:`detect_symmetries` finds the group from
the mesh; a sequence whose object is known may declare it instead (:class:`Symmetry` from
:func:`symmetry_from_rotations`).

Detection, on dense area-uniform surface samples (host NumPy, a fraction of a second):

1. The principal axes of the surface's second moment about ``c``.
2. About each axis: continuous symmetry when two incommensurate turns (49.3° and 140.0°) both
   map the surface onto itself, else the largest order ``n`` ≤ :data:`MAX_ORDER` whose turn
   ``360°/n`` does.
3. Where two moments are equal (a square prism, a cylinder, a torus) the axes in their plane are
   arbitrary, so that plane is searched in 2° steps for a half-turn axis; where all three are
   equal and random rotations map the surface onto itself, the object is a sphere
   (``spherical``: every rotation about ``c``).
4. The group is the closure of these generators; continuous symmetries are discretized as BOP
   does, in steps that move no surface point more than 1 % of the diameter.

"Onto itself" means: the rotated samples' mean (and 99th-percentile) distance to a second,
denser sample of the surface exceeds that of unrotated samples by at most ``tol`` (mean) and
``4 tol`` (99th percentile) of the diameter. What it does not find: symmetries whose axes are
not principal axes where the moments are all equal but the object is not a sphere (a cube:
declare those), and reflections (not rotations, so never a pose ambiguity).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from hoijax.metrics._pose import rotation_error_deg

MAX_ORDER = 12
"""Largest order of a discrete rotational symmetry looked for."""

SYMMETRY_TOL = 0.005
"""Mean surface mismatch, as a fraction of the diameter, below which a rotation counts as a
symmetry (the sampling's own mismatch is subtracted first)."""

MAX_GROUP = 2048
"""The closure stops growing here (a continuous axis with flips is a few hundred)."""

_TEST_TURNS = (np.radians(49.3), np.radians(140.0))


@dataclasses.dataclass(frozen=True)
class Symmetry:
    """The symmetry group of an object, as rotations about its centre."""

    rotations: np.ndarray
    """``(K, 3, 3)`` float64, the identity first."""
    centre: np.ndarray
    """``(3,)`` the point the rotations turn about (object frame, metres)."""
    spherical: bool = False
    """Every rotation about ``centre`` is a symmetry (``rotations`` holds the identity only)."""
    continuous_axes: int = 0
    """How many axes of continuous symmetry were found (0, 1; a sphere has them all)."""

    @property
    def transforms(self) -> np.ndarray:
        """``(K, 4, 4)``: ``x -> S (x - c) + c`` as homogeneous matrices."""
        K = len(self.rotations)
        out = np.tile(np.eye(4), (K, 1, 1))
        out[:, :3, :3] = self.rotations
        out[:, :3, 3] = self.centre - self.rotations @ self.centre
        return out

    def describe(self) -> str:
        """A short description for reports: ``none``, ``spherical``, ``continuous`` or the
        order of the finite group."""
        if self.spherical:
            return "spherical"
        if self.continuous_axes:
            return f"continuous ({len(self.rotations)} rotations)"
        return "none" if len(self.rotations) == 1 else f"finite, order {len(self.rotations)}"


def symmetry_from_rotations(
    rotations: Float[ArrayLike, "K 3 3"] | list[np.ndarray],
    centre: Float[ArrayLike, "3"] | tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Symmetry:
    """A declared symmetry group (the identity is added when missing)."""
    R = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    if not np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-5):
        raise ValueError("symmetry rotations must be orthonormal")
    return Symmetry(_closure([np.eye(3), *R]), np.asarray(centre, np.float64).reshape(3))


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    return Rotation.from_rotvec(angle * axis / np.linalg.norm(axis)).as_matrix()


def _closure(gens: list[np.ndarray]) -> np.ndarray:
    """The group the rotations ``gens`` generate (up to :data:`MAX_GROUP` elements)."""
    group: dict[tuple, np.ndarray] = {}

    def add(R) -> bool:
        key = tuple(np.round(R, 3).ravel() + 0.0)
        if key in group:
            return False
        group[key] = R
        return True

    add(np.eye(3))
    gens = [g for g in gens if add(g)]
    frontier = list(gens)
    while frontier and len(group) < MAX_GROUP:
        new = [R for R in (_snap(A @ g) for A in frontier for g in gens) if add(R)]
        frontier = new[:max(MAX_GROUP - len(group), 0)]
    return np.stack(list(group.values())[:MAX_GROUP])


def detect_symmetries(vertices: ArrayLike, faces: ArrayLike, *, tol: float = SYMMETRY_TOL,
                      num_samples: int = 1500, reference_samples: int = 20000,
                      seed: int = 0) -> Symmetry:
    """The rotational symmetry group of a closed or open triangle mesh (module docstring)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    rng = np.random.default_rng(seed)
    mesh = trimesh.Trimesh(v, f, process=False)
    ref = trimesh.sample.sample_surface(mesh, reference_samples, seed=seed)[0]
    pts = trimesh.sample.sample_surface(mesh, num_samples, seed=seed + 1)[0]
    c = ref.mean(0)
    ref, pts = ref - c, pts - c
    tree = cKDTree(ref)
    diam = 2.0 * float(np.linalg.norm(ref, axis=-1).max())

    def mismatch(R):
        d = tree.query(pts @ R.T)[0]
        return d.mean(), np.percentile(d, 99)

    base_mean, base_hi = mismatch(np.eye(3))

    def symmetric(R):
        m, hi = mismatch(R)
        return m - base_mean <= tol * diam and hi - base_hi <= 4 * tol * diam

    moments, axes = np.linalg.eigh(ref.T @ ref / len(ref))
    rel = lambda a, b: abs(a - b) / max(moments[-1], 1e-30)  # noqa: E731
    if rel(moments[0], moments[2]) < 0.05:
        rs = [_axis_rotation(rng.normal(size=3), rng.uniform(0.5, 2.5)) for _ in range(3)]
        if all(symmetric(R) for R in rs):
            return Symmetry(np.eye(3)[None], c, spherical=True, continuous_axes=3)
    r_max = float(np.linalg.norm(ref, axis=-1).max())
    step = max(0.01 * diam / max(r_max, 1e-12), np.radians(1.0))
    gens, continuous = [], 0
    for i in range(3):
        a = axes[:, i]
        if all(symmetric(_axis_rotation(a, t)) for t in _TEST_TURNS):
            continuous += 1
            n = 2 * int(np.ceil(np.pi / step))  # even: the half turn is in the group
            gens.append(_axis_rotation(a, 2 * np.pi / n))
            continue
        for n in range(MAX_ORDER, 1, -1):
            if symmetric(_axis_rotation(a, 2 * np.pi / n)):
                gens.append(_axis_rotation(a, 2 * np.pi / n))
                break
    # Equal moments: the axes in their plane are arbitrary; look there for a half-turn axis.
    for i, j, k in ((0, 1, 2), (1, 2, 0)):
        if rel(moments[i], moments[j]) < 0.05 and rel(moments[j], moments[k]) >= 0.05:
            for theta in np.radians(np.arange(0.0, 180.0, 2.0)):
                a = np.cos(theta) * axes[:, i] + np.sin(theta) * axes[:, j]
                if symmetric(_axis_rotation(a, np.pi)):
                    gens.append(_axis_rotation(a, np.pi))
                    break
    gens = [_snap(g) for g in gens]
    return Symmetry(_closure(gens), c, continuous_axes=min(continuous, 1))


def _snap(R: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(R)
    return u @ vt


def symmetric_rotation_error_deg(R_pred: Float[ArrayLike, "3 3"], R_gt: Float[ArrayLike, "3 3"],
                                 rotations: Float[ArrayLike, "K 3 3"],
                                 spherical: bool = False) -> Float[Array, ""]:
    """The rotation error modulo the symmetry group: ``min_S ∠(R_pred, R_gt S)`` in degrees
    (0 for a spherical object). ``rotations``: :attr:`Symmetry.rotations`."""
    if spherical:
        return jnp.zeros((), jnp.result_type(R_pred, float))
    S = jnp.asarray(rotations, jnp.result_type(R_pred, float))
    errs = jax.vmap(lambda s: rotation_error_deg(R_pred, jnp.asarray(R_gt) @ s))(S)
    return jnp.min(errs)


def mssd_mm(T_pred: Float[ArrayLike, "4 4"], T_gt: Float[ArrayLike, "4 4"],
            points: Float[ArrayLike, "n 3"], symmetry: Symmetry) -> Float[Array, ""]:
    """BOP's Maximum Symmetry-aware Surface Distance in mm:
    ``min_S max_x ‖T_pred x − T_gt S x‖`` over the model points ``x`` (object frame, metres)
    and the symmetries ``S`` (about the centre). For a spherical object the best ``S`` turns
    the true pose into the predicted rotation, leaving the displacement of the centre."""
    T_pred, T_gt = jnp.asarray(T_pred), jnp.asarray(T_gt)
    x = jnp.asarray(points, T_pred.dtype)
    c = jnp.asarray(symmetry.centre, T_pred.dtype)
    if symmetry.spherical:
        moved = (T_pred[:3, :3] @ c + T_pred[:3, 3]) - (T_gt[:3, :3] @ c + T_gt[:3, 3])
        return jnp.linalg.norm(moved) * 1000.0
    return mssd_transforms_mm(T_pred, T_gt, x, jnp.asarray(symmetry.transforms, T_pred.dtype))


def mssd_transforms_mm(T_pred: Float[ArrayLike, "4 4"], T_gt: Float[ArrayLike, "4 4"],
                       points: Float[ArrayLike, "n 3"],
                       transforms: Float[ArrayLike, "K 4 4"]) -> Float[Array, ""]:
    """:func:`mssd_mm` for a finite group given as :attr:`Symmetry.transforms` (arrays only:
    ``jit`` it once per group size)."""
    T_pred, T_gt = jnp.asarray(T_pred), jnp.asarray(T_gt)
    x = jnp.asarray(points, T_pred.dtype)
    pred = x @ T_pred[:3, :3].T + T_pred[:3, 3]

    def one(S):
        xs = x @ S[:3, :3].T + S[:3, 3]
        gt = xs @ T_gt[:3, :3].T + T_gt[:3, 3]
        return jnp.max(jnp.linalg.norm(pred - gt, axis=-1))

    return jnp.min(jax.lax.map(one, jnp.asarray(transforms, T_pred.dtype))) * 1000.0
