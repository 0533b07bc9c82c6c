"""``hoijax.render.interpolate``: constants, perspective-correct positions, parity with the ray
caster's barycentrics, and its gradient with respect to the attributes."""

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

H, W = 56, 64
K_NP = ref.intrinsics(110.0, 104.0, 30.6, 27.9)
SETTINGS = render.RasterSettings(H, W, max_pairs=16 * 1538)
"""Enough pairs for the hand (1538 faces) and for a few large faces."""

_raster = jax.jit(render.rasterize, static_argnames=("settings", "num_meshes"))
_interpolate = jax.jit(render.interpolate, static_argnames="background")


@pytest.fixture(scope="module")
def hand():
    verts, faces = ref.mano_hand(seed=2, z_m=0.45)
    # Tilt the hand in depth, so perspective correction matters across each face.
    verts = (verts - [0, 0, 0.45]) @ ref.rotation([1.0, 0.2, 0.0], 0.9).T + [0, 0, 0.45]
    return verts, faces


def _render(verts, faces, dtype=jnp.float32):
    out = _raster(jnp.asarray(verts, dtype), jnp.asarray(faces), jnp.asarray(K_NP, dtype),
                  SETTINGS)
    assert not bool(out.overflow) and 0.1 < np.mean(np.asarray(out.mask)) < 0.95
    return out


def test_constant_attribute(hand):
    verts, faces = hand
    out = _render(verts, faces)
    attrs = np.tile(np.array([[2.5, -1.0, 0.125]], np.float32), (verts.shape[0], 1))
    img = np.asarray(_interpolate(out, jnp.asarray(attrs), jnp.asarray(faces), background=-7.0))
    mask = np.asarray(out.mask)
    assert img.shape == (H, W, 3)
    np.testing.assert_allclose(img[mask], np.broadcast_to(attrs[0], img[mask].shape), rtol=1e-5)
    np.testing.assert_array_equal(img[~mask], -7.0)


@pytest.mark.parametrize("scene", ["hand", "box"])
@pytest.mark.parametrize("dtype,tol_px,depth_rtol", [(jnp.float32, 1e-4, 2e-6),
                                                     (jnp.float64, 1e-8, 1e-10)])
def test_interpolated_positions_lie_on_the_pixel_ray(hand, scene, dtype, tol_px, depth_rtol):
    """Interpolating the vertices gives the 3D surface point seen at each pixel: its z is
    ``depth`` and it projects back onto the pixel centre (perspective-correct barycentrics;
    screen-space barycentrics miss by pixels on the box's large faces, tilted in depth)."""
    verts, faces = hand if scene == "hand" else ref.box(extents=(0.3, 0.25, 0.25),
                                                        centre=(0.0, 0.0, 0.7))
    with jax.enable_x64(dtype == jnp.float64):
        out = _render(verts, faces, dtype)
        pts = np.asarray(_interpolate(out, jnp.asarray(verts, dtype), jnp.asarray(faces)),
                         np.float64)
        mask, depth = np.asarray(out.mask), np.asarray(out.depth, np.float64)
    np.testing.assert_allclose(pts[..., 2][mask], depth[mask], rtol=depth_rtol)
    uv = ref.project(pts[mask], K_NP)
    np.testing.assert_allclose(uv, ref.pixel_centres(H, W)[mask.ravel()], atol=tol_px)
    if scene == "hand":
        return
    # The error of affine (screen-space) interpolation, for scale.
    fid = np.asarray(out.face_id)[mask]
    bary = np.asarray(out.bary, np.float64)[mask]
    inv_z = 1 / verts[faces[fid]][..., 2]
    screen = bary * inv_z / np.sum(bary * inv_z, -1, keepdims=True)
    affine = np.einsum("pk,pkc->pc", screen, verts[faces[fid]])
    assert np.max(np.abs(ref.project(affine, K_NP) - uv)) > 0.5


def test_random_attributes_match_ray_caster_barycentrics(hand):
    verts, faces = hand
    out = _render(verts, faces)
    attrs = np.random.default_rng(0).normal(size=(verts.shape[0], 5))
    img = np.asarray(_interpolate(out, jnp.asarray(attrs, jnp.float32), jnp.asarray(faces)))
    fid_ref, _, bary_ref = ref.ray_cast(verts, faces, K_NP, H, W)
    same = (np.asarray(out.face_id) == fid_ref) & (fid_ref >= 0)
    assert same.mean() > 0.1 and np.mean(same[fid_ref >= 0]) > 0.999
    expected = np.einsum("pk,pkc->pc", bary_ref[same], attrs[faces[fid_ref[same]]])
    np.testing.assert_allclose(img[same], expected, atol=1e-3)


def test_gradient_wrt_attributes_is_the_barycentrics(hand):
    verts, faces = hand
    out = _render(verts, faces)
    attrs = jnp.zeros((verts.shape[0], 2), jnp.float32)
    rows, cols = np.nonzero(np.asarray(out.mask))
    pick = np.random.default_rng(1).choice(rows.size, 5, replace=False)
    for r, c in zip(rows[pick], cols[pick]):
        grad = np.asarray(jax.grad(lambda a, r=r, c=c: _interpolate(
            out, a, jnp.asarray(faces))[r, c, 1])(attrs))
        expected = np.zeros(grad.shape, np.float32)
        np.add.at(expected[:, 1], faces[int(out.face_id[r, c])], np.asarray(out.bary[r, c]))
        np.testing.assert_allclose(grad, expected, atol=1e-7)
