"""Hard coverage of ``hoijax.render.rasterize`` (face id, depth, barycentrics) against an
independent NumPy ray caster (``render_reference.ray_cast``: 3D Möller–Trumbore, float64)."""

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

MIN_AGREEMENT = 0.999
"""Fraction of pixels whose face id and depth must agree with the ray caster."""
DEPTH_RTOL = 1e-4
"""Relative depth tolerance (the rasterizer runs in float32)."""
EDGE_TOL_PX = 1e-4
"""A disagreement is excused on a pixel centre this close (screen px) to an edge of either face:
there the inside test is decided by float32 rounding."""
TIE_RTOL = 1e-6
"""... or where both faces meet the ray at the same depth to this relative tolerance: random
soups contain intersecting triangles, and on their intersection line either face is right."""
BARY_ATOL = 2e-4
"""Perspective-correct barycentrics vs the 3D hit point's barycentrics (float32)."""

H, W = 72, 88
K_SOUP = np.array([[95.0, 0.7, 41.3], [0.0, 90.0, 37.6], [0.0, 0.0, 1.0]])  # skewed, off-centre
K_OBJ = ref.intrinsics(150.0, 140.0, 44.2, 35.7)

_raster = jax.jit(render.rasterize, static_argnames=("settings", "num_meshes"))


def _render(verts, faces, K, settings, **kw):
    out = _raster(jnp.asarray(verts, jnp.float32), jnp.asarray(faces, jnp.int32),
                  jnp.asarray(K, jnp.float32), settings, **kw)
    assert not bool(out.overflow), (int(out.num_pairs), settings)
    return out


def check_against_ray_caster(verts, faces, K, height, width, out):
    """Face id and depth agree with the ray caster except on explainable pixels; barycentrics
    agree wherever the face does."""
    fid_ref, depth_ref, bary_ref = ref.ray_cast(verts, faces, K, height, width)
    fid, depth = np.asarray(out.face_id), np.asarray(out.depth)
    bary = np.asarray(out.bary)
    assert fid.shape == depth.shape == (height, width) and bary.shape == (height, width, 3)
    assert 0.03 < np.mean(fid_ref >= 0), "degenerate test scene: (almost) nothing covered"

    bad = (fid != fid_ref) | (np.abs(depth - depth_ref) > DEPTH_RTOL * depth_ref)
    assert 1.0 - bad.mean() >= MIN_AGREEMENT, f"{bad.sum()} of {bad.size} pixels disagree"

    uv = ref.pixel_centres(height, width)[bad.ravel()]
    f_ras, f_ref, z_ref = fid[bad], fid_ref[bad], depth_ref[bad]
    near_edge = np.zeros(uv.shape[0], bool)
    for ids in (f_ras, f_ref):
        hit = ids >= 0
        dist = np.full(uv.shape[0], np.inf)
        dist[hit] = ref.edge_distance_px(verts, faces, K, uv[hit], ids[hit])
        near_edge |= dist <= EDGE_TOL_PX
    both = (f_ras >= 0) & (f_ref >= 0)
    z_ras_face = np.full(uv.shape[0], np.inf)
    z_ras_face[both] = ref.ray_depth(verts, faces, K, uv[both], f_ras[both])
    tie = both & (np.abs(z_ras_face - z_ref) <= TIE_RTOL * z_ref)
    unexplained = ~(near_edge | tie)
    assert not unexplained.any(), (
        "pixels (u, v), rasterizer face/depth, ray-caster face/depth:\n" + "\n".join(
            f"{p} {a} {da:.6g} {b} {db:.6g}" for p, a, da, b, db in zip(
                uv[unexplained][:20], f_ras[unexplained], depth[bad][unexplained],
                f_ref[unexplained], z_ref[unexplained])))

    good = ~bad & (fid >= 0)
    np.testing.assert_allclose(bary[good], bary_ref[good], atol=BARY_ATOL)
    np.testing.assert_array_equal(np.asarray(out.mask), fid >= 0)
    assert np.all(depth[fid < 0] == 0) and np.all(bary[fid < 0] == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_soup_matches_ray_caster(seed):
    verts, faces = ref.random_soup(seed, 60, K_SOUP, H, W)
    out = _render(verts, faces, K_SOUP, render.RasterSettings(H, W, tile_size=8, pairs_per_face=24))
    check_against_ray_caster(verts, faces, K_SOUP, H, W, out)
    np.testing.assert_array_equal(np.asarray(out.mesh_id), np.where(out.face_id >= 0, 0, -1))


@pytest.mark.parametrize("tile_size,height,width", [(5, 61, 47), (16, 40, 100)])
def test_tiles_not_dividing_the_image_match_ray_caster(tile_size, height, width):
    """Edge tiles that stick out of the image, odd tile sizes, very non-square images."""
    K = ref.intrinsics(70.0, 75.0, width / 2 - 3.2, height / 2 + 1.9)
    verts, faces = ref.random_soup(10 + tile_size, 50, K, height, width)
    settings = render.RasterSettings(height, width, tile_size=tile_size, pairs_per_face=48)
    check_against_ray_caster(verts, faces, K, height, width,
                             _render(verts, faces, K, settings))


@pytest.mark.parametrize("scene", ["icosphere", "box", "mano"])
def test_meshes_match_ray_caster(scene):
    verts, faces = {"icosphere": ref.icosphere, "box": ref.box,
                    "mano": lambda: ref.mano_hand(seed=3, z_m=0.45)}[scene]()
    out = _render(verts, faces, K_OBJ, render.RasterSettings(H, W, tile_size=8, pairs_per_face=64))
    check_against_ray_caster(verts, faces, K_OBJ, H, W, out)


def test_tile_size_does_not_change_the_image():
    """Binning is an implementation detail: every output is the same for any tile size."""
    verts, faces = ref.random_soup(5, 60, K_SOUP, H, W)
    outs = [_render(verts, faces, K_SOUP, render.RasterSettings(H, W, tile_size=t,
                                                                 pairs_per_face=80))
            for t in (4, 8, 13)]
    for out in outs[1:]:
        np.testing.assert_array_equal(out.face_id, outs[0].face_id)
        for name in ("silhouette", "visible", "alpha", "depth", "bary"):
            np.testing.assert_allclose(getattr(out, name), getattr(outs[0], name), atol=1e-6,
                                       err_msg=name)
