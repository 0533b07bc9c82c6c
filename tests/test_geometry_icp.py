"""Tests for hoijax.geometry constrained, trimmed ICP (AGILE §3.2 scale initialisation)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from hoijax.geometry import constrained_icp

R_TRUE = Rotation.from_rotvec([0.4, -0.7, 0.3]).as_matrix()
T_TRUE = np.array([0.03, -0.02, 0.5])


@functools.lru_cache(maxsize=None)
def _scene(
    anisotropic: bool, subdivisions: int = 4, n_target: int = 1500, outlier_fraction: float = 0.3, seed: int = 0
):
    """A smooth egg-shaped model (about 10 x 7 x 9 cm) and a noisy, outlier-ridden depth cloud.

    The target samples the camera-visible surface of the scaled, rotated, translated model
    (uniform surface samples, not the model's vertices), adds 1 mm Gaussian noise and
    replaces ``outlier_fraction`` of the points with uniform clutter around the object.
    """
    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = sphere.vertices * np.array([0.05, 0.035, 0.045])
    v[:, 0] *= 1 + 0.3 * v[:, 2] / 0.045  # taper and bend: no symmetry to hide errors
    v[:, 1] += 0.2 * v[:, 0] ** 2 / 0.05
    model = trimesh.Trimesh(v, sphere.faces, process=False)
    scale = np.array([1.15, 0.9, 1.05]) if anisotropic else np.full(3, 1.1)
    observed = trimesh.Trimesh((v * scale) @ R_TRUE.T + T_TRUE, sphere.faces, process=False)
    points, face = trimesh.sample.sample_surface(observed, 4 * n_target, seed=seed)
    visible = np.einsum("ij,ij->i", observed.face_normals[face], points) < 0  # convex: facing = visible
    points = points[visible][:n_target]
    assert len(points) == n_target
    points = points + rng.normal(scale=1e-3, size=points.shape)
    n_out = int(outlier_fraction * n_target)
    idx = rng.choice(n_target, n_out, replace=False)
    points[idx] = np.stack(
        [rng.uniform(-0.15, 0.15, n_out), rng.uniform(-0.15, 0.15, n_out), rng.uniform(0.35, 0.7, n_out)], -1
    )
    return (
        v.astype(np.float32),
        np.asarray(model.vertex_normals, np.float32),
        points.astype(np.float32),
        scale,
    )


@pytest.mark.parametrize("anisotropic", [False, True])
def test_point_to_plane_recovers_scale_and_translation(anisotropic):
    model, normals, target, scale = _scene(anisotropic)
    icp = jax.jit(functools.partial(constrained_icp, anisotropic=anisotropic, num_iters=30))
    result = icp(model, target, R_TRUE.astype(np.float32), normals_model=normals, trim_fraction=0.7)
    np.testing.assert_allclose(result.scale, scale, rtol=0.01)
    np.testing.assert_allclose(result.translation, T_TRUE, atol=1e-3)
    assert bool(result.valid)
    assert float(result.rmse_m) < 1.5e-3  # about the 1 mm noise
    assert 0.65 < float(result.inlier_fraction) < 0.75  # the 70 % that are not clutter
    if not anisotropic:
        assert float(jnp.ptp(result.scale)) == 0.0


def test_point_to_point_recovers_isotropic_scale_and_translation():
    # Point-to-point ICP converges more slowly and carries a bias of the order of the model's
    # vertex spacing, so it gets more iterations (and the anisotropic case is not asserted).
    model, _, target, scale = _scene(False)
    result = jax.jit(functools.partial(constrained_icp, num_iters=100))(model, target, R_TRUE.astype(np.float32))
    np.testing.assert_allclose(result.scale, scale, rtol=0.01)
    np.testing.assert_allclose(result.translation, T_TRUE, atol=1e-3)


def test_invalid_target_points_are_ignored_and_trim_fraction_is_traced():
    model, normals, target, _ = _scene(True, subdivisions=3, n_target=400)
    padded = np.concatenate([target, np.full((50, 3), np.nan, np.float32), np.full((30, 3), 5.0, np.float32)])
    valid = np.arange(len(padded)) < len(target)
    R = R_TRUE.astype(np.float32)

    def solve(points, mask, trim):
        return constrained_icp(
            model,
            points,
            R,
            target_valid=mask,
            normals_model=normals,
            trim_fraction=trim,
            anisotropic=True,
            num_iters=10,
        )

    icp = jax.jit(eqx.debug.assert_max_traces(solve, max_traces=1))

    ref = icp(target, np.ones(len(target), bool), 0.7)
    got = icp(jnp.asarray(padded[: len(target)]), np.ones(len(target), bool), 0.6)  # new trim: no retrace
    assert not np.allclose(got.scale, ref.scale)  # the trim fraction reaches the computation
    padded_result = jax.jit(solve)(padded, valid, 0.7)
    # Same problem up to float32 summation order (the padding changes the reductions).
    np.testing.assert_allclose(padded_result.scale, ref.scale, rtol=3e-4)
    np.testing.assert_allclose(padded_result.translation, ref.translation, atol=3e-5)
    assert int(padded_result.num_kept) == int(ref.num_kept) == int(np.ceil(0.7 * len(target)))

    # vmap over trim fractions (an ablation grid) equals separate solves.
    all_valid = np.ones(len(target), bool)
    batched = jax.jit(jax.vmap(solve, in_axes=(None, None, 0)))(target, all_valid, jnp.array([0.7, 0.6]))
    np.testing.assert_allclose(batched.scale[0], ref.scale, rtol=1e-5)
    np.testing.assert_allclose(batched.scale[1], got.scale, rtol=1e-5)


def test_no_valid_target_points_is_finite_and_flagged():
    model, normals, target, _ = _scene(False, subdivisions=2, n_target=100)

    def run(points):
        return constrained_icp(
            model, points, R_TRUE, target_valid=jnp.zeros(len(points), bool), init_scale=1.2, num_iters=3
        )

    @jax.jit
    def run_and_grad(points):
        return run(points), jax.grad(lambda p: jnp.sum(run(p).scale) + jnp.sum(run(p).translation))(points)

    result, g = run_and_grad(jnp.asarray(target))
    assert not bool(result.valid)
    np.testing.assert_allclose(result.scale, 1.2)
    assert np.all(np.isfinite(result.translation))
    assert np.all(np.isfinite(g))


def test_final_solve_gradient_is_finite_and_matches_finite_differences():
    model, normals, target, _ = _scene(False, subdivisions=2, n_target=150, outlier_fraction=0.0)
    with jax.enable_x64(True):
        model64, target64 = jnp.asarray(model, jnp.float64), jnp.asarray(target, jnp.float64)
        R = jnp.asarray(R_TRUE)

        @jax.jit
        def scale_of(points):
            return constrained_icp(model64, points, R, num_iters=15, trim_fraction=0.9).scale[0]

        g = jax.grad(scale_of)(target64)
        assert np.all(np.isfinite(g))
        direction = jnp.asarray(np.random.default_rng(0).normal(size=target.shape))
        eps = 1e-7
        fd = (scale_of(target64 + eps * direction) - scale_of(target64 - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(g, direction), fd, rtol=1e-3)
