"""Static capacities and compilation: overflow reporting, ``rasterize_checked`` retries, one
compilation per shape (also under ``vmap``), and ``vmap`` == per-frame renders."""

from __future__ import annotations

import math
import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import render

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import render_reference as ref  # noqa: E402

H, W = 40, 48
K_NP = ref.intrinsics(60.0, 62.0, 23.3, 18.8)
FIELDS = ("silhouette", "visible", "alpha", "face_id", "mesh_id", "depth", "bary", "incomplete",
          "overflow", "num_pairs")

_raster = jax.jit(render.rasterize, static_argnames=("settings", "num_meshes"))


def _soup(seed=0):
    verts, faces = ref.random_soup(seed, 40, K_NP, H, W)
    return jnp.asarray(verts, jnp.float32), jnp.asarray(faces), jnp.asarray(K_NP, jnp.float32)


def _assert_same(a, b, atol=1e-6):
    for name in FIELDS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def soup_and_reference():
    verts, faces, K = _soup()
    generous = _raster(verts, faces, K, render.RasterSettings(H, W, max_pairs=4096))
    assert not bool(generous.overflow)
    assert 200 < int(generous.num_pairs) < 4096
    return (verts, faces, K), generous


def test_overflow_is_reported_at_the_exact_capacity(soup_and_reference):
    (verts, faces, K), generous = soup_and_reference
    needed = int(generous.num_pairs)
    exact = _raster(verts, faces, K, render.RasterSettings(H, W, max_pairs=needed))
    _assert_same(exact, generous)
    assert not np.any(exact.incomplete)
    for capacity in (needed - 1, 8):
        short = _raster(verts, faces, K, render.RasterSettings(H, W, max_pairs=capacity))
        assert bool(short.overflow) and np.all(short.incomplete), capacity
        assert int(short.num_pairs) == needed  # what the scene needs, not what fitted
        assert np.all(np.isfinite(short.alpha)) and np.all(np.isfinite(short.depth))


def test_rasterize_checked_retries_until_it_fits(soup_and_reference):
    (verts, faces, K), generous = soup_and_reference
    needed = int(generous.num_pairs)
    start = math.ceil(needed / 3)  # 3 < 4: the second doubling fits
    out, used = render.rasterize_checked(verts, faces, K,
                                         render.RasterSettings(H, W, max_pairs=start))
    assert used.max_pairs == 4 * start
    _assert_same(out, generous)
    # Each retry doubles the capacity, whichever way it is given.
    for settings in (render.RasterSettings(H, W, pairs_per_face=3),
                     render.RasterSettings(H, W, pairs_per_face=3, max_pairs=50)):
        F = int(faces.shape[0])
        assert settings.doubled().pair_capacity(F) == 2 * settings.pair_capacity(F)


def test_rasterize_checked_raises_when_retries_run_out(soup_and_reference):
    (verts, faces, K), generous = soup_and_reference
    start = math.ceil(int(generous.num_pairs) / 3)
    with pytest.raises(render.CapacityError, match=str(int(generous.num_pairs))):
        render.rasterize_checked(verts, faces, K, render.RasterSettings(H, W, max_pairs=start),
                                 max_retries=0)
    with pytest.raises(render.CapacityError):
        render.rasterize_checked(verts, faces, K, render.RasterSettings(H, W, max_pairs=start),
                                 max_retries=1)


# --- compilation ----------------------------------------------------------------------------

def _frames(n, seed=0):
    """``n`` posed hands (different poses and positions) with the same topology."""
    verts = [ref.mano_hand(seed=seed + i, z_m=0.5 + 0.05 * i)[0] for i in range(n)]
    _, faces = ref.mano_hand(seed=0)
    return jnp.asarray(np.stack(verts), jnp.float32), jnp.asarray(faces)


HAND_SETTINGS = render.RasterSettings(H, W, pairs_per_face=8)
K_HAND = ref.intrinsics(80.0, 80.0, 23.5, 19.5)


def test_new_scene_of_the_same_shapes_does_not_recompile():
    traces = []

    def render_one(verts, faces, K, sigma, eps, near):
        traces.append(1)
        return render.rasterize(verts, faces, K, HAND_SETTINGS, sigma_px2=sigma, prob_eps=eps,
                                near_m=near)

    fn = jax.jit(eqx.debug.assert_max_traces(render_one, max_traces=1))
    frames, faces = _frames(2)
    K = jnp.asarray(K_HAND, jnp.float32)
    a = fn(frames[0], faces, K, 1.0, 1e-4, 1e-3)
    b = fn(frames[1], faces, K, 0.5, 1e-3, 2e-3)  # new vertices and new traced numbers
    assert len(traces) == 1
    assert not np.array_equal(a.alpha, b.alpha)  # really a different scene
    # A new shape must retrace, and the guard sees it: the check is not vacuous.
    with pytest.raises(RuntimeError, match="trace"):
        fn(frames[0][:-1], faces[:-1], K, 1.0, 1e-4, 1e-3)


def test_vmap_over_frames_compiles_once_and_matches_per_frame_renders():
    traces = []

    def render_one(verts, faces, K):
        traces.append(1)
        return render.rasterize(verts, faces, K, HAND_SETTINGS)

    batched = jax.jit(jax.vmap(render_one, in_axes=(0, None, None)))
    single = jax.jit(lambda v, f, K: render.rasterize(v, f, K, HAND_SETTINGS))
    frames, faces = _frames(4)
    K = jnp.asarray(K_HAND, jnp.float32)
    first = batched(frames[:2], faces, K)
    second = batched(frames[2:], faces, K)
    assert len(traces) == 1
    for out, chunk in ((first, frames[:2]), (second, frames[2:])):
        assert out.alpha.shape == (2, H, W) and out.face_id.shape == (2, H, W)
        for i in range(2):
            one = single(chunk[i], faces, K)
            assert not bool(one.overflow) and np.mean(np.asarray(one.mask)) > 0.05
            _assert_same(jax.tree.map(lambda x, i=i: x[i], out), one)


def test_vmap_over_sigma_matches_separate_renders():
    """σ is traced, so an ablation grid over it is one vmapped call."""
    frames, faces = _frames(1)
    K = jnp.asarray(K_HAND, jnp.float32)
    sigmas = jnp.array([0.25, 1.0, 3.0])
    grid = jax.jit(jax.vmap(lambda s: render.rasterize(frames[0], faces, K, HAND_SETTINGS,
                                                       sigma_px2=s)))(sigmas)
    single = jax.jit(lambda s: render.rasterize(frames[0], faces, K, HAND_SETTINGS, sigma_px2=s))
    for i, s in enumerate(sigmas):
        _assert_same(jax.tree.map(lambda x, i=i: x[i], grid), single(s))
    assert not np.allclose(grid.alpha[0], grid.alpha[2])


def test_out_of_range_mesh_ids_are_culled_not_spilled(soup_and_reference):
    """A face tagged with a mesh id outside [0, num_meshes) renders nowhere, and cannot leak
    into a neighbouring tile's segment."""
    (verts, faces, K), _ = soup_and_reference
    settings = render.RasterSettings(H, W, max_pairs=4096)
    ids = np.zeros(len(faces), np.int32)
    ids[::2] = 1  # only mesh 0 exists when num_meshes=1
    out = _raster(verts, faces, K, settings, face_mesh_id=ids, num_meshes=1)
    only_even = _raster(verts, faces[1::2], K, settings)
    np.testing.assert_allclose(out.alpha, only_even.alpha, atol=1e-6)
    assert int(out.mesh_id.max()) <= 0


def test_rasterize_checked_accepts_plain_lists(soup_and_reference):
    (verts, faces, K), _ = soup_and_reference
    settings = render.RasterSettings(H, W, max_pairs=4096)
    out, used = render.rasterize_checked(verts, np.asarray(faces).tolist(), K, settings)
    assert not bool(out.overflow) and used == settings
