"""Residual forms of the tracking terms (``hoijax.losses.*_residuals``), the Levenberg–Marquardt
solver's curvature model: a sum of squares reproduces its loss exactly, a reweighted robust term
reproduces its gradient exactly (``2 J_rᵀ r = ∇L``, J by forward mode through the rasterizer),
and every residual has finite values and forward-mode derivatives at the singular inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import losses, mano, render, sdf
from hoijax.geometry import axis_angle_to_matrix

H, W = 32, 40
K = np.array([[80.0, 0.0, 20.0], [0.0, 80.0, 16.0], [0.0, 0.0, 1.0]], np.float32)
SETTINGS = render.RasterSettings(H, W, pairs_per_face=32)
SCALE = jnp.array([1.1, 1.0, 0.9])


def _pose(x):
    """4×4 pose of a 6-vector (axis-angle, translation) around a base pose 0.35 m away."""
    R = axis_angle_to_matrix(jnp.array([0.3, -0.2, 0.1]) + x[:3])
    t = jnp.array([0.0, 0.0, 0.35]) + x[3:]
    return jnp.eye(4).at[:3, :3].set(R).at[:3, 3].set(t)


@pytest.fixture(scope="module")
def scene():
    ico = trimesh.creation.icosphere(subdivisions=1, radius=0.03)
    verts = jnp.asarray(ico.vertices, jnp.float32)
    faces = jnp.asarray(ico.faces, jnp.int32)

    def rend(x):
        return render.rasterize(losses.obj_to_cam(_pose(x), SCALE, verts), faces, K, SETTINGS,
                                sigma_px2=0.5)

    truth = rend(jnp.zeros(6))
    obj_mask = truth.silhouette[0] > 0.5
    hand_mask = jnp.zeros((H, W), bool).at[:, : W // 3].set(True)
    depth = jnp.where(truth.mesh_id == 0, truth.depth, 0.0)
    grid = sdf.sdf_grid_from_mesh(np.asarray(verts), np.asarray(faces), resolution=16)
    return dict(verts=verts, faces=faces, rend=rend, obj_mask=obj_mask, hand_mask=hand_mask,
                depth=depth, grid=grid)


X = jnp.array([0.04, -0.03, 0.02, 0.003, -0.002, 0.006])
"""A pose off the truth (radians, metres)."""


def _check_gradient(loss, residuals, x, rtol=2e-3):
    g = jax.jit(jax.grad(loss))(x)
    r, J = jax.jit(lambda x: (residuals(x), jax.jacfwd(residuals)(x)))(x)
    np.testing.assert_allclose(np.asarray(2.0 * J.T @ r), np.asarray(g), rtol=rtol,
                               atol=rtol * float(jnp.max(jnp.abs(g))))


def test_mask_residuals_square_to_the_loss(scene):
    rendering = jax.jit(scene["rend"])(X)
    r = losses.mask_residuals(rendering, scene["obj_mask"], scene["hand_mask"])
    loss, _ = losses.mask_loss(rendering, scene["obj_mask"], scene["hand_mask"],
                               normalize="object")
    assert float(loss) > 1e-3
    np.testing.assert_allclose(float(jnp.sum(r**2)), float(loss), rtol=1e-5)
    # ... so their Gauss-Newton gradient is the loss's, through the rasterizer's forward mode.
    _check_gradient(
        lambda x: losses.mask_loss(scene["rend"](x), scene["obj_mask"], scene["hand_mask"],
                                   normalize="object")[0],
        lambda x: losses.mask_residuals(scene["rend"](x), scene["obj_mask"], scene["hand_mask"]),
        X)


def test_joint_residuals_square_to_the_loss_with_missing_detections():
    rng = np.random.default_rng(0)
    joints = jnp.asarray(rng.normal(size=(21, 3)) * 0.05 + [0, 0, 0.4], jnp.float32)
    kp = jnp.asarray(rng.uniform(0, 40, size=(21, 2)), jnp.float32).at[3].set(jnp.nan)
    conf = jnp.asarray(rng.uniform(0.2, 1.0, size=21), jnp.float32).at[5].set(0.0)
    r = losses.joint_residuals(joints, kp, conf, K)
    loss, _ = losses.joint_loss(joints, kp, conf, K)
    np.testing.assert_allclose(float(jnp.sum(r**2)), float(loss), rtol=1e-5)
    # No valid detection: zero residuals, finite zero Jacobian.
    J = jax.jacfwd(lambda j: losses.joint_residuals(j, kp, jnp.zeros(21), K))(joints)
    assert np.all(np.asarray(J) == 0.0)


def test_depth_residuals_reweighted_gradient(scene):
    far = scene["depth"] + jnp.where(jnp.arange(W) % 4 == 0, 0.05, 0.0)  # outlier columns

    def loss(x):
        return losses.depth_loss(scene["rend"](x), far, scene["obj_mask"], scene["hand_mask"])[0]

    def res(x):
        return losses.depth_residuals(scene["rend"](x), far, scene["obj_mask"],
                                      scene["hand_mask"])

    _check_gradient(loss, res, X)
    # The reweighting: e (in 1 cm units) enters with weight 1/sqrt(1 + e²), so each pixel's
    # r² = e²/(2 s) with s = sqrt(1 + e²), which is at most its pseudo-Huber s - 1 (as s ≥ 1).
    assert 0.0 < float(jnp.sum(res(X) ** 2)) <= float(loss(X))


def test_point_to_surface_residuals_reweighted_gradient():
    rng = np.random.default_rng(1)
    verts = jnp.asarray(rng.normal(size=(50, 3)) * 0.03, jnp.float32)
    normals = verts / jnp.linalg.norm(verts, axis=1, keepdims=True)
    pts = verts[:30] * 1.3
    ok = jnp.ones(30, bool).at[4].set(False)

    def loss(t):
        return losses.point_to_surface_loss(pts, ok, verts + t, normals)[0]

    def res(t):
        return losses.point_to_surface_residuals(pts, ok, verts + t, normals)

    _check_gradient(loss, res, jnp.array([0.002, -0.001, 0.004]))


def test_interaction_residuals_reweighted_gradient_and_rigid_motion(scene):
    model = mano.synthetic_mano("right")
    hv = mano.forward(model, jnp.zeros(3), jnp.zeros(45), jnp.zeros(10)).vertices
    prev_hand = hv - hv.mean(0) + jnp.array([0.045, 0.0, 0.35])
    T_prev = _pose(jnp.zeros(6))
    moved = prev_hand + jnp.array([0.004, -0.002, 0.003])

    def loss(x):
        return losses.interaction_loss(moved, prev_hand, _pose(x), T_prev, scene["grid"],
                                       SCALE)[0]

    def res(x):
        return losses.interaction_residuals(moved, prev_hand, _pose(x), T_prev, scene["grid"],
                                            SCALE)

    assert float(loss(X)) > 0.0
    _check_gradient(loss, res, X)
    # At a rigid hand-object motion every distance is 0: zero residuals, finite Jacobian.
    J = jax.jacfwd(lambda x: losses.interaction_residuals(
        prev_hand, prev_hand, _pose(x), T_prev, scene["grid"], SCALE))(jnp.zeros(6))
    r0 = losses.interaction_residuals(prev_hand, prev_hand, T_prev, T_prev, scene["grid"], SCALE)
    assert np.all(np.isfinite(np.asarray(J))) and float(jnp.max(jnp.abs(r0))) == 0.0


def test_dino_residuals_equal_the_loss_on_a_uniform_feature_map(scene):
    """With every feature cell alike the bilinear blend is a unit vector, and the residuals'
    squares sum to L_dino exactly; on a varying map they sum to at most L_dino (the blend's
    shortening between cells, module doc)."""
    verts, faces = scene["verts"], scene["faces"]
    rng = np.random.default_rng(2)
    vfeat = jnp.asarray(rng.normal(size=(verts.shape[0], 6)), jnp.float32)
    pool = losses.sample_surface(jax.random.PRNGKey(0), verts, faces, 64)
    T = _pose(X)
    for fmap, exact in ((jnp.broadcast_to(jnp.arange(1.0, 7.0), (8, 10, 6)), True),
                        (jnp.asarray(rng.normal(size=(8, 10, 6)), jnp.float32), False)):
        args = (pool, verts, faces, vfeat, T, SCALE, K, fmap, scene["hand_mask"])
        loss = float(losses.dino_loss(*args, fixed_support=True)[0])
        total = float(jnp.sum(losses.dino_residuals(*args) ** 2))
        if exact:
            np.testing.assert_allclose(total, loss, rtol=1e-5)
        else:
            assert 0.0 < total < loss
    # No valid point: zeros, finite Jacobian in the pose.
    empty = losses.SurfacePoints(pool.face, pool.bary, jnp.zeros_like(pool.valid))
    J = jax.jacfwd(lambda x: losses.dino_residuals(
        empty, verts, faces, vfeat, _pose(x), SCALE, K, fmap, scene["hand_mask"]))(X)
    assert np.all(np.asarray(J) == 0.0)


def test_mask_residuals_all_under_the_hand_are_zero(scene):
    J = jax.jit(jax.jacfwd(lambda x: losses.mask_residuals(scene["rend"](x), scene["obj_mask"],
                                                           jnp.ones((H, W), bool))))(X)
    assert np.all(np.asarray(J) == 0.0)
