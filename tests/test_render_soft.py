"""Soft silhouettes: the σ → 0 limit, parity with the dense O(H·W·F) reference, and the
occlusion-aware ``visible`` silhouettes of several meshes."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import render

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import render_reference as ref  # noqa: E402

H, W = 64, 80
K = ref.intrinsics(150.0, 145.0, 39.4, 33.1)
DENSE_ATOL = 1e-5
"""Binned vs dense silhouettes: the same per-face terms summed in another order (float32)."""

_raster = jax.jit(render.rasterize, static_argnames=("settings", "num_meshes"))
_dense = jax.jit(render.soft_silhouette_dense,
                 static_argnames=("height", "width", "num_meshes", "pixel_chunk"))


@pytest.fixture(scope="module")
def hand():
    return ref.mano_hand(seed=1, z_m=0.42)


def _ball(centre, radius):
    return ref.icosphere(radius=radius, centre=centre, subdivisions=2)


def _scene(meshes):
    return render.Scene.from_meshes([jnp.asarray(v, jnp.float32) for v, _ in meshes],
                                    [f for _, f in meshes])


def _render_scene(scene, settings, **kw):
    out = _raster(scene.verts_cam, scene.faces, jnp.asarray(K, jnp.float32), settings,
                  face_mesh_id=scene.face_mesh_id, num_meshes=scene.num_meshes, **kw)
    assert not bool(out.overflow)
    return out


def test_soft_alpha_converges_to_hard_mask(hand):
    verts, faces = hand
    settings = render.RasterSettings(H, W, pairs_per_face=16)
    edge_dist = ref.distance_to_any_edge_px(verts, faces, K, H, W)
    far_from_edges = edge_dist > 0.05
    sigmas = (1.0, 0.1, 0.01, 1e-4)
    wrong = []
    for sigma in sigmas:
        out = _raster(jnp.asarray(verts, jnp.float32), jnp.asarray(faces),
                      jnp.asarray(K, jnp.float32), settings, sigma_px2=sigma)
        assert not bool(out.overflow)
        err = np.abs(np.asarray(out.alpha) - np.asarray(out.mask, np.float32))
        wrong.append(np.mean(err > 0.05))
        if sigma == sigmas[-1]:
            # At distance >= 0.05 px from every edge, |d²/σ| >= 25: p is within e^-25 of 0 or 1.
            assert np.max(err[far_from_edges]) < 1e-6
            assert wrong[-1] <= np.mean(~far_from_edges)
    assert all(a > b for a, b in zip(wrong, wrong[1:])), wrong
    assert wrong[0] > 0.02 and wrong[-1] < 2e-3, wrong


@pytest.mark.parametrize("scene", ["soup", "hand"])
def test_soft_silhouette_matches_the_softras_formula(hand, scene):
    """Against ``render_reference.soft_silhouette``, a float64 NumPy transcription of the
    SoftRas formula that shares no code with the rasterizer (unlike the dense reference)."""
    verts, faces = hand if scene == "hand" else ref.random_soup(3, 40, K, H, W)
    settings = render.RasterSettings(H, W, pairs_per_face=64)
    for sigma, eps in ((0.5, 1e-4), (3.0, 1e-3)):
        out = _raster(jnp.asarray(verts, jnp.float32), jnp.asarray(faces),
                      jnp.asarray(K, jnp.float32), settings, sigma_px2=sigma, prob_eps=eps)
        assert not bool(out.overflow)
        expected = ref.soft_silhouette(verts, faces, K, H, W, sigma, eps)
        assert 0.05 < np.mean(expected > 0.5) < 0.95
        np.testing.assert_allclose(out.alpha, expected, atol=2e-5, err_msg=str(sigma))


def test_binned_silhouettes_match_dense_reference(hand):
    """Two meshes (a hand and a ball that partly hides behind it), several σ."""
    scene = _scene([hand, _ball((0.03, 0.05, 0.5), 0.06)])
    settings = render.RasterSettings(H, W, pairs_per_face=40)
    for sigma in (0.3, 1.0, 4.0, 10.0):
        out = _render_scene(scene, settings, sigma_px2=sigma)
        dense = _dense(scene.verts_cam, scene.faces, jnp.asarray(K, jnp.float32), height=H,
                       width=W, face_mesh_id=scene.face_mesh_id, num_meshes=2, sigma_px2=sigma)
        assert dense.shape == out.silhouette.shape == (2, H, W)
        np.testing.assert_allclose(out.silhouette, dense, atol=DENSE_ATOL, err_msg=str(sigma))
        # Both meshes show, each partly, so the comparison is not trivially 0 == 0.
        assert np.all(np.mean(np.asarray(dense) > 0.5, axis=(1, 2)) > 0.02)
        # alpha is the union: 1 - Π(1 - sil_m) over meshes.
        np.testing.assert_allclose(out.alpha, 1 - np.prod(1 - np.asarray(dense), 0),
                                   atol=DENSE_ATOL)


def test_prob_eps_is_the_cutoff(hand):
    """Farther than the blur radius ``sqrt(σ log(1/eps - 1))`` a face contributes nothing."""
    verts, faces = hand
    settings = render.RasterSettings(H, W, pairs_per_face=40)
    sigma = 2.0
    edge_dist = ref.distance_to_any_edge_px(verts, faces, K, H, W)
    for eps in (1e-2, 1e-4):
        out = _raster(jnp.asarray(verts, jnp.float32), jnp.asarray(faces),
                      jnp.asarray(K, jnp.float32), settings, sigma_px2=sigma, prob_eps=eps)
        radius = float(render.default_blur_radius_px(sigma, eps))
        alpha, mask = np.asarray(out.alpha), np.asarray(out.mask)
        outside = ~mask & (edge_dist > radius + 1e-3)
        just_inside = ~mask & (edge_dist < radius - 1e-3)
        assert outside.any() and just_inside.any()
        assert np.all(alpha[outside] == 0)
        # Within the radius, p = sigmoid(-d²/σ) >= eps for the nearest face alone.
        assert np.all(alpha[just_inside] >= eps * (1 - 1e-4))


def test_visible_of_one_mesh_is_its_silhouette(hand):
    verts, faces = hand
    out = _render_scene(_scene([hand]), render.RasterSettings(H, W, pairs_per_face=16))
    np.testing.assert_array_equal(out.visible, out.silhouette)
    np.testing.assert_allclose(out.silhouette[0], out.alpha, atol=1e-6)


@pytest.mark.parametrize("ball_in_front", [False, True])
def test_visible_composites_meshes_front_to_back(hand, ball_in_front):
    """A ball behind the hand shows only where the hand lets it through; in front, the
    roles swap. The order comes from depth, not from the mesh index."""
    z = 0.3 if ball_in_front else 0.55
    scene_meshes = [hand, _ball((0.02, 0.04, z), 0.045 if ball_in_front else 0.07)]
    scene = _scene(scene_meshes)
    # A small σ, so the interiors saturate (with σ = 1 px², pixels less than a pixel from the
    # edges of the hand's small faces stay below alpha = 0.999, as in SoftRas).
    out = _render_scene(scene, render.RasterSettings(H, W, pairs_per_face=24), sigma_px2=0.25)
    sil, vis = np.asarray(out.silhouette), np.asarray(out.visible)
    front, back = (1, 0) if ball_in_front else (0, 1)
    np.testing.assert_allclose(vis[front], sil[front], atol=1e-6)
    np.testing.assert_allclose(vis[back], sil[back] * (1 - sil[front]), atol=1e-6)
    np.testing.assert_allclose(vis.sum(0), out.alpha, atol=1e-5)
    covered_by_front = sil[front] > 0.999
    back_there = sil[back] > 0.5
    assert np.sum(covered_by_front & back_there) > 50  # the meshes really overlap
    assert np.all(vis[back][covered_by_front] < 1e-3)
    front_absent = sil[front] < 1e-6
    assert np.sum(front_absent & back_there) > 50
    np.testing.assert_allclose(vis[back][front_absent], sil[back][front_absent], atol=1e-5)
    # The z-buffer agrees: wherever the front mesh covers the pixel centre, it wins.
    front_verts, front_faces = scene_meshes[front]
    front_fid, _, _ = ref.ray_cast(front_verts, front_faces, K, H, W)
    assert np.sum(front_fid >= 0) > 100
    np.testing.assert_array_equal(np.asarray(out.mesh_id)[front_fid >= 0], front)


def test_visible_orders_meshes_by_their_depth_at_the_pixel(hand):
    """A large tilted quad lies 12 cm or more behind the hand at every pixel the hand covers,
    but one of its corners (far to the side) is nearer to the camera than the hand. The hand
    must still hide it: ordering meshes by a face's nearest corner gets this wrong."""
    quad = np.array([[-0.5, -0.4, 0.30], [0.5, -0.4, 0.80], [0.5, 0.4, 0.80],
                     [-0.5, 0.4, 0.30]])
    quad_faces = np.array([[0, 1, 2], [0, 2, 3]])
    scene = _scene([hand, (quad, quad_faces)])
    out = _render_scene(scene, render.RasterSettings(H, W, pairs_per_face=64), sigma_px2=0.25)
    sil, vis = np.asarray(out.silhouette), np.asarray(out.visible)
    _, quad_depth, _ = ref.ray_cast(quad, quad_faces, K, H, W)
    hand_core = (np.asarray(out.mesh_id) == 0) & (sil[0] > 0.999)
    assert hand_core.sum() > 100
    assert np.all(quad_depth[hand_core] > np.asarray(out.depth)[hand_core] + 0.1)
    np.testing.assert_allclose(vis[0][hand_core], sil[0][hand_core], atol=1e-3)
    assert np.all(vis[1][hand_core] < 1e-3)
    np.testing.assert_allclose(vis.sum(0), out.alpha, atol=1e-5)
