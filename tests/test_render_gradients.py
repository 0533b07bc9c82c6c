"""Gradients of ``hoijax.render``: finite differences in float64, ``check_grads``, analytic
identities of depth, and finite values and gradients at the singular inputs."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hoijax import render

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import render_reference as ref  # noqa: E402

FD_RTOL = 1e-3
"""Autodiff vs central finite differences (float64)."""
FD_STEP_M = 1e-6
"""Finite-difference step, metres (about 1e-4 px for these scenes)."""
TINY_EPS = 1e-12
"""Blur cut-off for gradient checks: the silhouette jumps by ``prob_eps`` where a face leaves
the blur radius, negligible at this size."""

H, W = 40, 48
K_NP = np.array([[60.0, 0.4, 22.7], [0.0, 58.0, 19.2], [0.0, 0.0, 1.0]])


SOFT_SETTINGS = render.RasterSettings(H, W, pairs_per_face=64)


@jax.jit
def _soft_loss(verts, faces, target, sigma):
    """L2 silhouette loss of a fixed target (jitted once per shape; σ is traced)."""
    out = render.rasterize(verts, faces, jnp.asarray(K_NP, verts.dtype), SOFT_SETTINGS,
                           sigma_px2=sigma, prob_eps=TINY_EPS)
    return jnp.sum((out.silhouette - target) ** 2), out.overflow


def _soft_setup(seed, n, sigma):
    """A random soup and its loss as a function of the vertices alone (call under x64)."""
    verts, faces = ref.random_soup(seed, n, K_NP, H, W, z_range=(0.6, 1.5), size_px=(8, 18))
    target = jnp.asarray(np.random.default_rng(100 + seed).uniform(0, 1, (1, H, W)))
    faces, sigma = jnp.asarray(faces), jnp.asarray(sigma)
    verts = jnp.asarray(verts)
    assert verts.dtype == jnp.float64
    assert not bool(_soft_loss(verts, faces, target, sigma)[1])
    return (lambda v: _soft_loss(v, faces, target, sigma)[0]), verts


@pytest.mark.parametrize("seed,sigma", [(0, 1.0), (1, 4.0)])
def test_soft_loss_directional_derivatives_match_finite_differences(seed, sigma):
    with jax.enable_x64(True):
        f, verts = _soft_setup(seed, 30, sigma)
        grad = np.asarray(jax.grad(f)(verts))
        rng = np.random.default_rng(seed)
        for _ in range(4):
            u = jnp.asarray(rng.normal(size=verts.shape))
            fd = (f(verts + FD_STEP_M * u) - f(verts - FD_STEP_M * u)) / (2 * FD_STEP_M)
            ad = np.sum(grad * np.asarray(u))
            assert abs(fd) > 1e-2  # not a trivially flat direction
            assert abs(ad - fd) <= FD_RTOL * abs(fd), (ad, float(fd))


def test_soft_loss_gradient_matches_finite_differences_per_coordinate():
    with jax.enable_x64(True):
        f, verts = _soft_setup(2, 5, 2.0)
        grad = np.asarray(jax.grad(f)(verts))
        fd = np.zeros(verts.shape)
        for i in np.ndindex(*verts.shape):
            step = jnp.zeros(verts.shape).at[i].set(FD_STEP_M)
            fd[i] = (f(verts + step) - f(verts - step)) / (2 * FD_STEP_M)
        assert np.count_nonzero(np.abs(fd) > 1e-3 * np.max(np.abs(fd))) > verts.size // 2
        np.testing.assert_allclose(grad, fd, rtol=FD_RTOL, atol=FD_RTOL * np.max(np.abs(fd)))


def test_soft_loss_check_grads():
    with jax.enable_x64(True):
        f, verts = _soft_setup(3, 5, 1.5)
        check_grads(f, (verts,), order=1, modes=["rev"], eps=FD_STEP_M)


# --- depth and barycentrics -----------------------------------------------------------------


def _interior(verts, faces, out, margin_px=0.3):
    """Pixels whose centre is at least ``margin_px`` inside the face that covers it: the face
    choice does not change under small perturbations, so depth and bary are smooth there."""
    margin = ref.inside_margin_px(verts, faces, K_NP, H, W, np.asarray(out.face_id))
    idx = np.flatnonzero(margin.ravel() > margin_px)
    assert idx.size > 100
    return jnp.asarray(idx)


@jax.jit
def _hard_raster(verts, faces):
    return render.rasterize(verts, faces, jnp.asarray(K_NP, verts.dtype),
                            render.RasterSettings(H, W, tile_size=8, pairs_per_face=16))


def _hard_setup(scene):
    """A closed mesh, its rasterizer as a function of the vertices, and its interior pixels."""
    verts, faces = {"box": lambda: ref.box(centre=(0.0, 0.0, 0.8)),
                    "icosphere": lambda: ref.icosphere(radius=0.15, centre=(0.0, 0.0, 0.7))
                    }[scene]()
    faces_j = jnp.asarray(faces)

    def raster(v):
        return _hard_raster(v, faces_j)

    out = raster(jnp.asarray(verts))
    assert not bool(out.overflow)
    return raster, jnp.asarray(verts), faces, _interior(verts, faces, out)


@pytest.mark.parametrize("scene", ["box", "icosphere"])
def test_depth_and_bary_check_grads(scene):
    with jax.enable_x64(True):
        raster, verts, _, idx = _hard_setup(scene)

        def depth_bary(v):
            out = raster(v)
            return out.depth.ravel()[idx], out.bary.reshape(-1, 3)[idx]

        check_grads(depth_bary, (verts,), order=1, modes=["rev"], eps=1e-5)


def test_depth_gradient_wrt_vertex_z_matches_finite_differences():
    with jax.enable_x64(True):
        raster, verts, faces, idx = _hard_setup("box")

        def depth_of_z(z):
            return raster(verts.at[:, 2].set(z)).depth.ravel()[idx]

        z = verts[:, 2]
        jac = np.asarray(jax.jacrev(depth_of_z)(z))  # (pixels, verts)
        fd = np.stack([(depth_of_z(z.at[i].add(FD_STEP_M)) - depth_of_z(z.at[i].add(-FD_STEP_M)))
                       / (2 * FD_STEP_M) for i in range(z.shape[0])], -1)
        assert np.count_nonzero(np.abs(fd) > 1e-3) > idx.size  # each pixel depends on its face
        np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)
        # Only the corners of the covering face matter.
        fid = np.asarray(raster(verts).face_id).ravel()[np.asarray(idx)]
        corner = np.zeros_like(jac, bool)
        corner[np.arange(idx.size)[:, None], np.asarray(faces)[fid]] = True
        assert np.all(jac[~corner] == 0)


@pytest.mark.parametrize("scene", ["icosphere"])
def test_depth_is_homogeneous_of_degree_one(scene):
    """Scaling the scene about the camera (v → s·v) leaves the image unchanged and scales depth:
    by Euler, Σ_i ∂depth/∂v_i · v_i = depth, and Σ_i ∂bary/∂v_i · v_i = 0."""
    with jax.enable_x64(True):
        raster, verts, _, idx = _hard_setup(scene)
        out = raster(verts)
        depth, bary = out.depth.ravel()[idx], out.bary.reshape(-1, 3)[idx]
        _, scale_jvp = jax.jvp(
            lambda v: (raster(v).depth.ravel()[idx], raster(v).bary.reshape(-1, 3)[idx]),
            (verts,), (verts,))
        np.testing.assert_allclose(scale_jvp[0], depth, rtol=1e-9)
        np.testing.assert_allclose(scale_jvp[1], 0.0, atol=1e-9)
        assert np.all((np.asarray(bary) > 0) & (np.asarray(bary) < 1))  # interior pixels


# --- finite values and gradients at singular inputs --------------------------------------------

K_INT = np.array([[64.0, 0.0, 16.0], [0.0, 64.0, 16.0], [0.0, 0.0, 1.0]])
"""Powers of two: vertices at z = 1 and x, y = k/64 project exactly onto pixel centres."""
H_S, W_S = 32, 40


PARK = np.array([[-8.0, -8.0, 1.0], [-7.9, -8.0, 1.0], [-8.0, -7.9, 1.0]])
"""A triangle about 500 px off-screen: pads scenes to a common shape (one compilation)."""
NUM_V, NUM_F = 18, 5
SINGULAR_SETTINGS = render.RasterSettings(H_S, W_S, pairs_per_face=128)


def _px(c, r, z=1.0):
    """The camera point at depth z that projects exactly onto pixel (row r, column c)."""
    return [(c - K_INT[0, 2]) * z / K_INT[0, 0], (r - K_INT[1, 2]) * z / K_INT[1, 1], z]


def _padded(verts, faces):
    """Pad to NUM_V vertices (copies of PARK) and NUM_F faces (the PARK triangle)."""
    verts, faces = np.asarray(verts, np.float64), np.asarray(faces)
    n = verts.shape[0]
    verts = np.concatenate([verts, np.resize(PARK, (NUM_V - n, 3))])
    faces = np.concatenate([faces, np.tile(np.arange(n, n + 3), (NUM_F - faces.shape[0], 1))])
    return verts, faces


@jax.jit
def _outputs_and_grad(verts, faces):
    """All outputs of a rendering, and the gradient of a weighted sum of all of them."""

    def scalar(v):
        out = render.rasterize(v, faces, jnp.asarray(K_INT, v.dtype), SINGULAR_SETTINGS)
        attrs = render.interpolate(out, v, faces)
        total = (jnp.sum(out.silhouette) + 0.5 * jnp.sum(out.visible)
                 + 0.3 * jnp.sum(out.alpha) + jnp.sum(out.depth)
                 + jnp.sum(out.bary * jnp.array([0.1, 0.2, 0.3], v.dtype)) + jnp.sum(attrs))
        return total, (out, attrs)

    (_, (out, attrs)), grad = jax.value_and_grad(scalar, has_aux=True)(verts)
    return out, attrs, grad


def _everything(verts, faces, dtype=jnp.float32):
    verts, faces = _padded(verts, faces)
    out, attrs, grad = _outputs_and_grad(jnp.asarray(verts, dtype), jnp.asarray(faces))
    for name in ("silhouette", "visible", "alpha", "depth", "bary"):
        assert np.all(np.isfinite(getattr(out, name))), name
    assert np.all(np.isfinite(attrs))
    assert np.all(np.isfinite(grad)), grad
    assert not bool(out.overflow)
    return out, np.asarray(grad)


DEGENERATE_VERTS = np.array([_px(5.3, 4.1), _px(20.2, 6.7), _px(9.6, 22.4),  # a proper triangle
                             _px(12.5, 12.5), _px(14.5, 14.5), _px(16.5, 16.5),  # collinear
                             _px(30.0, 20.0), _px(35.0, 26.0)])
DEGENERATE_FACES = np.array([[0, 1, 2],
                             [3, 4, 5],  # collinear corners
                             [6, 6, 7],  # a repeated corner
                             [7, 7, 7],  # a point
                             [0, 1, 1]])  # a repeated corner on the proper triangle's edge


def test_zero_area_faces_have_finite_values_and_gradients():
    out, grad = _everything(DEGENERATE_VERTS, DEGENERATE_FACES)
    assert set(np.unique(out.face_id)) == {-1, 0}
    np.testing.assert_array_equal(grad[3:8], 0.0)  # vertices of zero-area faces only
    assert np.all(np.abs(grad[:3]) > 0)


_A, _B = np.array([0.013, -0.021, 0.93]), np.array([0.071, 0.052, 1.07])
GENERIC_DEGENERATE_VERTS = np.concatenate([DEGENERATE_VERTS[:3],
                                           [_A, _B, _A + 0.37 * (_B - _A)]])
GENERIC_DEGENERATE_FACES = np.array([[0, 1, 2],
                                     [3, 4, 5],  # corners on a 3D line
                                     [3, 4, 4],  # a repeated corner
                                     [5, 3, 3],
                                     [0, 1, 1]])


@pytest.mark.parametrize("case", ["exact", "generic"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_zero_area_faces_are_culled(dtype, case):
    """Zero-area faces are culled (``AREA_EPS_PX2``): they must not change the image.

    Fails in float32 under jit: XLA contracts ``e1.x*e2.y - e1.y*e2.x`` into an FMA, so a face
    with a repeated corner (``[0, 1, 1]``) or with corners on a 3D line gets |area2| ~ 1e-6 px²
    of rounding instead of 0, above the absolute threshold 1e-8 px²; such a face then renders
    as a soft line segment (p = 0.5 on it, up to +0.25 alpha next to it).
    """
    verts, faces = {"exact": (DEGENERATE_VERTS, DEGENERATE_FACES),
                    "generic": (GENERIC_DEGENERATE_VERTS, GENERIC_DEGENERATE_FACES)}[case]
    parked = faces.copy()
    n = verts.shape[0]
    parked[1:] = np.arange(n, n + 3)  # the first PARK vertices after padding
    with jax.enable_x64(dtype == jnp.float64):
        out, _ = _everything(verts, faces, dtype)
        alone, _ = _everything(verts, parked, dtype)
    np.testing.assert_array_equal(out.face_id, alone.face_id)
    np.testing.assert_allclose(out.alpha, alone.alpha, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_pixel_centres_on_edges_and_vertices(dtype):
    """A square of two triangles with corners on pixel centres: pixel centres lie exactly on
    its sides, on the shared diagonal and on its corners."""
    verts = np.array([_px(4, 4), _px(20, 4), _px(20, 12), _px(4, 12),
                      _px(24, 8), _px(30, 8), _px(24, 14)])  # and a right triangle
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    with jax.enable_x64(dtype == jnp.float64):
        out, grad = _everything(verts, faces, dtype)
    fid = np.asarray(out.face_id)
    # Edges are inside (closed triangles): the whole closed square is covered, the diagonal
    # (shared edge) too, so no crack; nothing outside is.
    square = np.zeros((H_S, W_S), bool)
    square[4:13, 4:21] = True
    tri = np.zeros((H_S, W_S), bool)
    for r in range(8, 15):
        tri[r, 24:24 + (30 - 24) * (14 - r) // 6 + 1] = True
    np.testing.assert_array_equal(fid >= 0, square | tri)
    assert np.all(np.isin(fid[square], [0, 1])) and np.all(fid[tri] == 2)
    np.testing.assert_allclose(np.asarray(out.depth)[square | tri], 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.bary).sum(-1)[square | tri], 1.0, rtol=1e-6)
    # On a corner pixel the barycentrics are one-hot.
    corners = np.asarray(out.bary)[[4, 4, 12, 12, 8, 8, 14], [4, 20, 20, 4, 24, 30, 24]]
    np.testing.assert_allclose(np.max(corners, -1), 1.0, atol=1e-6)
    assert np.any(grad[:7] != 0)


@pytest.mark.parametrize("where", ["off_screen", "behind_camera", "straddling_camera"])
def test_empty_images_have_zero_finite_gradients(where):
    tri = np.array([_px(5, 5), _px(15, 6), _px(8, 14)])
    verts = {"off_screen": tri + np.array([2.0, 0.0, 0.0]),  # far right of the image
             "behind_camera": tri * np.array([1.0, 1.0, -1.0]),
             "straddling_camera": tri * np.array([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0],
                                                  [1.0, 1.0, 1.0]])}[where]
    out, grad = _everything(verts, np.array([[0, 1, 2]]))
    assert np.all(out.face_id == -1) and np.all(out.alpha == 0)
    assert np.all(out.depth == 0) and np.all(out.bary == 0) and np.all(out.visible == 0)
    assert int(out.num_pairs) == 0
    np.testing.assert_array_equal(grad, 0.0)


def test_mesh_partly_outside_the_image():
    verts, faces = ref.random_soup(4, 30, K_INT, H_S, W_S, size_px=(20, 40))
    settings = render.RasterSettings(H_S, W_S, tile_size=8, pairs_per_face=64)
    faces_j, K = jnp.asarray(faces), jnp.asarray(K_INT, jnp.float32)

    def loss(v):
        out = render.rasterize(v, faces_j, K, settings)
        return jnp.sum(out.silhouette) + jnp.sum(out.depth) + jnp.sum(out.bary[..., 0]), out

    (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        jnp.asarray(verts, jnp.float32))
    for name in ("silhouette", "visible", "alpha", "depth", "bary"):
        assert np.all(np.isfinite(getattr(out, name))), name
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    uv = ref.project(verts, K_INT)
    assert np.any(uv < -5) and np.any(uv[:, 0] > W_S + 5) and np.any(uv[:, 1] > H_S + 5)
    assert 0.2 < np.mean(np.asarray(out.mask)) < 1 and not bool(out.overflow)


def test_vertices_behind_or_on_the_near_plane():
    near = render.DEFAULT_NEAR_M
    verts = np.array([
        _px(4, 4), _px(18, 5), _px(9, 17),  # 0-2: in front
        _px(20, 10), _px(30, 12), [0.05, 0.1, -0.3],  # 3-5: one corner behind the camera
        _px(22, 20), _px(34, 24), [0.0, 0.0, 0.0],  # 6-8: one at the camera centre
        _px(24, 2), _px(36, 3), [1e-4, 2e-4, near],  # 9-11: one exactly on the near plane
        [0.01, 0.0, near * 1.001], _px(10, 25), _px(3, 30),  # 12-14: just in front of it
    ])
    faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]])
    out, grad = _everything(verts, faces)
    assert set(np.unique(out.face_id)) == {-1, 0, 4}
    for culled_only in (5, 8, 11):
        np.testing.assert_array_equal(grad[culled_only], 0.0)
    # The culled faces change nothing.
    parked = faces.copy()
    parked[1:4] = np.arange(15, 18)
    alone, _ = _everything(verts, parked)
    np.testing.assert_allclose(out.alpha, alone.alpha, atol=1e-6)
    np.testing.assert_array_equal(out.face_id, alone.face_id)
