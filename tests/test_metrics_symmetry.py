"""Symmetry-aware pose errors (hoijax.metrics._symmetry): the groups detected from meshes of
known symmetry, the rotation error modulo the group, and BOP's MSSD against hand computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import metrics
from hoijax.data import make_object_trimesh


def _rot(axis, deg):
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float)).as_matrix()


def _bottle():
    cone = trimesh.creation.cone(0.03, 0.05)
    cone.apply_translation((0, 0, 0.1))
    return trimesh.util.concatenate([trimesh.creation.cylinder(0.03, 0.2, sections=48), cone])


def _ellipsoid():
    m = trimesh.creation.icosphere(3, 1.0)
    m.apply_scale((0.03, 0.05, 0.08))
    return m


@pytest.mark.parametrize("mesh, kind, order", [
    (trimesh.creation.box((0.04, 0.06, 0.1)), "finite", 4),   # D2: three half-turn axes
    (_ellipsoid(), "finite", 4),
    (trimesh.creation.box((0.05, 0.05, 0.12)), "finite", 8),   # D4: square prism
    (trimesh.creation.cylinder(0.03, 0.1, sections=48), "continuous", None),
    (trimesh.creation.torus(0.04, 0.01, major_sections=64, minor_sections=24), "continuous", None),
    (_bottle(), "continuous", None),
    (trimesh.creation.icosphere(3, 0.04), "spherical", 1),
    (make_object_trimesh("mug", seed=0), "none", 1),
    (make_object_trimesh("drill", seed=0), "none", 1),
])
def test_detected_groups(mesh, kind, order):
    sym = metrics.detect_symmetries(mesh.vertices, mesh.faces)
    assert sym.describe().split(" ")[0].rstrip(",") == kind, sym.describe()
    if order is not None:
        assert len(sym.rotations) == order
    np.testing.assert_allclose(sym.rotations[0], np.eye(3))
    R = sym.rotations
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-9)
    # Every element maps the surface onto itself (checked on the vertices of these meshes).
    if kind in ("finite", "continuous"):
        v = np.asarray(mesh.vertices) - sym.centre
        diam = 2 * np.linalg.norm(v, axis=-1).max()
        from scipy.spatial import cKDTree

        tree = cKDTree(mesh.sample(20000, seed=1) - sym.centre)
        for S in R[:: max(len(R) // 16, 1)]:
            assert tree.query(v @ S.T)[0].mean() < 0.02 * diam


def test_a_flip_is_a_symmetry_of_a_cylinder_but_not_of_a_bottle():
    flip = _rot((1, 0, 0), 180)
    for mesh, expect in ((trimesh.creation.cylinder(0.03, 0.1, sections=48), 0.0),
                         (_bottle(), 180.0)):
        sym = metrics.detect_symmetries(mesh.vertices, mesh.faces)
        err = float(metrics.symmetric_rotation_error_deg(jnp.eye(3), jnp.asarray(flip),
                                                         sym.rotations))
        assert err == pytest.approx(expect, abs=1.5)


def test_rotation_error_modulo_the_group():
    can = trimesh.creation.cylinder(0.03, 0.1, sections=48)
    sym = metrics.detect_symmetries(can.vertices, can.faces)
    R_gt = _rot((0.3, -0.2, 0.9), 70)
    # A turn about the object's own axis (z) is invisible; a tilt of 10° is not.
    spin = R_gt @ _rot((0, 0, 1), 37)
    tilt = R_gt @ _rot((1, 0, 0), 10)
    e = lambda R: float(metrics.symmetric_rotation_error_deg(  # noqa: E731
        jnp.asarray(R), jnp.asarray(R_gt), sym.rotations))
    assert float(metrics.rotation_error_deg(jnp.asarray(spin), jnp.asarray(R_gt))) > 36
    assert e(spin) < 1.2  # within the discretization (1 % of the diameter)
    assert e(tilt) == pytest.approx(10.0, abs=0.2)
    # No symmetry: the plain error.
    none = metrics.symmetry_from_rotations(np.zeros((0, 3, 3)))
    assert float(metrics.symmetric_rotation_error_deg(
        jnp.asarray(tilt), jnp.asarray(R_gt), none.rotations)) == pytest.approx(10.0, abs=1e-3)
    # A sphere: none at all.
    assert float(metrics.symmetric_rotation_error_deg(jnp.asarray(tilt), jnp.asarray(R_gt),
                                                      none.rotations, spherical=True)) == 0.0


def test_rotation_error_gradient_is_finite_at_zero_error():
    sym = metrics.symmetry_from_rotations([_rot((0, 0, 1), 90)])
    g = jax.grad(lambda w: metrics.symmetric_rotation_error_deg(
        jnp.asarray(_rot((0, 0, 1), 0)) @ (jnp.eye(3) + jnp.asarray(
            [[0, -w, 0], [w, 0, 0], [0, 0, 0]])), jnp.eye(3), sym.rotations))(0.0)
    assert np.isfinite(float(g))


def test_mssd_against_a_hand_computation():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3)) * 0.03
    T_gt = np.eye(4)
    T_gt[:3, :3], T_gt[:3, 3] = _rot((1, 2, 3), 40), (0.1, -0.05, 0.6)
    T_p = np.eye(4)
    T_p[:3, :3], T_p[:3, 3] = T_gt[:3, :3] @ _rot((0, 0, 1), 180), T_gt[:3, 3] + (0.002, 0, 0)
    centre = np.array([0.01, 0.0, 0.0])
    ident = metrics.symmetry_from_rotations(np.zeros((0, 3, 3)), centre)
    half = metrics.symmetry_from_rotations([_rot((0, 0, 1), 180)], centre)

    def by_hand(S_all):
        out = []
        for S in S_all:
            xs = (pts - centre) @ S[:3, :3].T + centre
            d = (pts @ T_p[:3, :3].T + T_p[:3, 3]) - (xs @ T_gt[:3, :3].T + T_gt[:3, 3])
            out.append(np.linalg.norm(d, axis=-1).max())
        return 1000 * min(out)

    for sym in (ident, half):
        got = float(metrics.mssd_mm(jnp.asarray(T_p), jnp.asarray(T_gt), jnp.asarray(pts), sym))
        assert got == pytest.approx(by_hand(sym.rotations), rel=1e-4)
    # The half turn about the centre explains the rotation: what is left is the centre's shift
    # (the turn about z through (0.01, 0, 0) instead of the origin moves the centre 2 cm).
    assert float(metrics.mssd_mm(jnp.asarray(T_p), jnp.asarray(T_gt), jnp.asarray(pts),
                                 half)) < float(metrics.mssd_mm(
                                     jnp.asarray(T_p), jnp.asarray(T_gt), jnp.asarray(pts),
                                     ident))
    sphere = metrics.Symmetry(np.eye(3)[None], centre, spherical=True)
    moved = (T_p[:3, :3] @ centre + T_p[:3, 3]) - (T_gt[:3, :3] @ centre + T_gt[:3, 3])
    assert float(metrics.mssd_mm(jnp.asarray(T_p), jnp.asarray(T_gt), jnp.asarray(pts),
                                 sphere)) == pytest.approx(1000 * np.linalg.norm(moved), rel=1e-5)


def test_declared_rotations_must_be_rotations():
    with pytest.raises(ValueError, match="orthonormal"):
        metrics.symmetry_from_rotations(np.full((1, 3, 3), 0.5))
    # The closure of one quarter turn is the cyclic group of order 4.
    assert len(metrics.symmetry_from_rotations([_rot((0, 0, 1), 90)]).rotations) == 4
