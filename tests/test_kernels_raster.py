"""The Pallas rasterizer kernels (``hoijax.kernels``) against the pure-JAX path, on the CPU.

The kernels run in Pallas' interpreter here; each test compares with
``render.rasterize(..., backend="jax")`` (the reference) on small random two- and three-mesh
scenes with overlaps and an exactly duplicated face (a z-buffer tie). A separate test lowers
the kernels to Triton for CUDA without a GPU, which checks Triton's constraints (power-of-two
blocks, supported primitives, the dynamic-bound loop) but not PTX compilation or speed.
"""

from __future__ import annotations

import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import kernels, render
from hoijax.kernels import _pixel_face
from hoijax.render import _faces
from hoijax.render._binning import enumerate_pairs
from hoijax.render._faces import screen_faces

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import render_reference as ref  # noqa: E402

ATOL = {"float32": 1e-5, "float64": 1e-12}
"""Kernel vs pure JAX, absolute, on silhouettes, depth (m) and barycentrics."""
GRAD_RTOL = {"float32": 1e-5, "float64": 1e-11}
"""Kernel vs pure-JAX gradients, relative to the largest component."""
FIELDS = ("silhouette", "visible", "alpha", "face_id", "mesh_id", "depth", "bary", "incomplete",
          "overflow", "num_pairs")
BATCH = 3

# (dtype, height, width, tile, meshes, pairs per face): the first has partial tiles at the
# right edge (30 = 7.5 tiles of 4), the second a larger tile, three meshes and float64.
CASES = {"f32_t4_m2": ("float32", 24, 30, 4, 2, 16), "f64_t8_m3": ("float64", 16, 20, 8, 3, 8)}


def _scene(seed: int, height: int, width: int, num_meshes: int):
    """Random overlapping soups, one per mesh, a near face duplicated across two meshes (an
    exact z-buffer tie the smaller index must win) and a face behind the near plane."""
    K = ref.intrinsics(1.3 * width, 1.3 * width, 0.47 * width, 0.52 * height)
    verts, faces, mesh = [], [], []
    for m in range(num_meshes):
        v, f = ref.random_soup(10 * seed + m, 14, K, height, width, z_range=(0.6, 1.5),
                               size_px=(3, 9))
        faces.append(f + sum(len(x) for x in verts))
        verts.append(v)
        mesh += [m] * len(f)
    near = ref.camera_rays(K, np.array([[0.4 * width, 0.4 * height], [0.7 * width,
                                        0.5 * height], [0.45 * width, 0.8 * height]])) * 0.5
    behind = near * np.array([1.0, 1.0, -1.0])
    base = sum(len(x) for x in verts)
    verts += [near, behind]
    faces += [np.array([[base, base + 1, base + 2], [base, base + 1, base + 2],
                        [base + 3, base + 4, base + 5]])]
    mesh += [0, num_meshes - 1, 0]
    return (np.concatenate(verts), np.concatenate(faces), np.array(mesh, np.int32), K,
            len(mesh) - 3)


@functools.cache
def _case(name: str):
    """Frames (batch of vertex sets), faces, mesh ids, K, settings, the tied face index."""
    dtype, H, W, tile, M, ppf = CASES[name]
    verts, faces, mesh, K, tied = _scene(1, H, W, M)
    rng = np.random.default_rng(2)
    frames = [verts + rng.normal(scale=0.004, size=verts.shape) * (b > 0) for b in range(BATCH)]
    settings = render.RasterSettings(H, W, tile_size=tile, pairs_per_face=ppf)
    target = rng.uniform(0, 1, (BATCH, M, H, W))
    return (np.stack(frames).astype(dtype), faces, mesh, K.astype(dtype), settings,
            target.astype(dtype), tied)


def _render_fn(backend, faces, mesh, K, settings, num_meshes):
    def one(verts, sigma):
        return render.rasterize(verts, faces, K, settings, face_mesh_id=mesh,
                                num_meshes=num_meshes, sigma_px2=sigma, backend=backend)
    return one


@functools.cache
def _forward(name: str, backend: str, settings=None):
    frames, faces, mesh, K, st, _, _ = _case(name)
    one = _render_fn(backend, faces, mesh, K, settings or st, CASES[name][4])
    return jax.jit(jax.vmap(one, in_axes=(0, None)))


@functools.cache
def _value_and_grad(name: str, backend: str):
    frames, faces, mesh, K, st, target, _ = _case(name)
    one = _render_fn(backend, faces, mesh, K, st, CASES[name][4])

    def loss(verts, sigma):
        r = jax.vmap(one, in_axes=(0, None))(verts, sigma)
        return jnp.sum((r.silhouette - target) ** 2) + jnp.sum(r.visible * target)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _x64(name):
    return jax.enable_x64(CASES[name][0] == "float64")


def _assert_same(a, b, atol):
    for field in FIELDS:
        x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
        assert x.shape == y.shape and x.dtype == y.dtype, field
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(y, x, rtol=0, atol=atol, err_msg=field)
        else:
            np.testing.assert_array_equal(y, x, err_msg=field)


def test_kernel_formulas_are_the_references_bit_for_bit():
    """The kernels' scalar-corner copy of the pixel–face formulas equals ``render._faces``."""
    rng = np.random.default_rng(0)
    uv = jnp.asarray(rng.uniform(-4, 12, (64, 3, 2)), jnp.float32)
    uv = uv.at[0, 2].set(uv[0, 1])  # a zero-length edge
    px, py = (jnp.asarray(rng.integers(0, 8, (64, 16)), jnp.float32) for _ in range(2))
    c = [uv[:, i, j][:, None] for i in range(3) for j in range(2)]
    ref_edges = _faces._edge_functions(px, py, uv[:, None])
    ref_near = _faces._nearest_edge(px, py, uv[:, None])
    ref_area = _faces._area2(uv[:, None])
    for got, want in [(_pixel_face.edge_functions(px, py, c), ref_edges),
                      (_pixel_face.nearest_edge(px, py, c), ref_near),
                      ((_pixel_face.area2(c),), (ref_area,)),
                      ((_pixel_face.inside(ref_edges, ref_area),),
                       (_faces._inside(ref_edges, ref_area),))]:
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    d = jnp.asarray(rng.normal(0, 6, (64, 16)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(_pixel_face.soft_log_transmittance(d, 1.3, 9.0)),
                                  np.asarray(_faces.soft_log_transmittance(d, 1.3, 9.0)))


def test_tile_face_lists_group_each_tiles_faces_in_ascending_order():
    frames, faces, mesh, K, st, _, _ = _case("f32_t4_m2")

    @jax.jit
    def build(verts):
        sf = screen_faces(verts, jnp.asarray(faces), jnp.asarray(K), jnp.asarray(mesh), 1e-3, 2)
        pairs = enumerate_pairs(sf, st, 3.0)
        return pairs, kernels.tile_face_lists(pairs.face, pairs.tile, st.num_tiles)

    pairs, lists = build(jnp.asarray(frames[0]))
    face, tile = np.asarray(pairs.face), np.asarray(pairs.tile)
    start, sorted_face = np.asarray(lists.start), np.asarray(lists.face)
    assert start[0] == 0 and start[-1] == int(pairs.needed) and np.all(np.diff(start) >= 0)
    for t in range(st.num_tiles):
        expected = face[tile == t]
        np.testing.assert_array_equal(sorted_face[start[t]:start[t + 1]], expected)
        assert np.all(np.diff(expected) > 0)  # pairs come face by face, one per (face, tile)
    assert np.all(sorted_face[start[-1]:] == faces.shape[0])  # unused slots: the sentinel
    np.testing.assert_array_equal(face[np.asarray(lists.pair)], sorted_face)
    assert int(np.asarray(lists.count).max()) > 1  # some tile holds several faces


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_pure_jax(name):
    frames, _, _, _, _, _, tied = _case(name)
    with _x64(name):
        frames = jnp.asarray(frames)
        a = _forward(name, "jax")(frames, 1.0)
        b = _forward(name, "pallas")(frames, 1.0)
        _assert_same(a, b, ATOL[CASES[name][0]])
    face_id = np.asarray(b.face_id)
    assert not np.any(np.asarray(b.overflow))
    assert np.mean(face_id >= 0) > 0.3 and np.any(face_id == tied)  # non-trivial scene
    assert not np.any(face_id == tied + 1)  # its exact duplicate loses every tie
    sil = np.asarray(b.silhouette)
    assert np.any((sil[:, 0] > 0.5) & (sil[:, 1] > 0.5))  # meshes overlap


@pytest.mark.parametrize("name", sorted(CASES))
def test_silhouette_gradient_matches_pure_jax(name):
    frames, *_ = _case(name)
    dtype = CASES[name][0]
    with _x64(name):
        frames, sigma = jnp.asarray(frames), jnp.asarray(1.0, dtype)
        (la, (ga, sa)) = _value_and_grad(name, "jax")(frames, sigma)
        (lb, (gb, sb)) = _value_and_grad(name, "pallas")(frames, sigma)
    ga, gb = np.asarray(ga), np.asarray(gb)
    scale = np.abs(ga).max()
    assert scale > 0 and np.mean(np.abs(ga) > 1e-3 * scale) > 0.5  # most vertices move
    np.testing.assert_allclose(float(lb), float(la), rtol=GRAD_RTOL[dtype])
    np.testing.assert_allclose(gb, ga, rtol=0, atol=GRAD_RTOL[dtype] * scale)
    np.testing.assert_allclose(float(sb), float(sa), rtol=GRAD_RTOL[dtype] * 10)


def test_capacity_overflow_is_reported_like_pure_jax():
    name = "f32_t4_m2"
    frames, *_, st, _, _ = _case(name)
    small = render.RasterSettings(st.height, st.width, tile_size=st.tile_size, pairs_per_face=1)
    frames = jnp.asarray(frames)
    a = _forward(name, "jax", small)(frames, 1.0)
    b = _forward(name, "pallas", small)(frames, 1.0)
    assert np.all(np.asarray(b.overflow)) and np.all(np.asarray(b.incomplete))
    assert np.all(np.asarray(b.num_pairs) > small.pair_capacity(frames.shape[1] // 3))
    _assert_same(a, b, ATOL["float32"])  # the same truncated pair list, rendered the same


@pytest.mark.parametrize("dtype,tile,meshes", [("float32", 4, 2), ("float64", 8, 1),
                                               ("float32", 16, 3)])
def test_kernels_lower_to_triton_for_cuda(dtype, tile, meshes):
    """Both kernels, batched and differentiated, pass Pallas' Triton lowering (no GPU needed)."""
    st = render.RasterSettings(24, 40, tile_size=tile)

    def loss(verts, faces, mesh, sigma):
        K = jnp.array([[40.0, 0, 20], [0, 40, 12], [0, 0, 1]], verts.dtype)
        sf = screen_faces(verts, faces, K, mesh, 1e-3, meshes)
        pairs = enumerate_pairs(sf, st, 3.0)
        out = kernels.raster_tiles(sf.uv, sf.inv_z, sf.area2, sf.mesh_id, pairs.face,
                                   pairs.tile, tile_size=tile, tiles_x=st.tiles_x,
                                   tiles_y=st.tiles_y, num_meshes=meshes, sigma_px2=sigma,
                                   cutoff_px2=9.0 * sigma, interpret=False)
        return jnp.sum(out.log_t ** 2) + jnp.sum(jnp.where(out.face < 10, 1.0, 0.0))

    with jax.enable_x64(dtype == "float64"):
        fn = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 3)), in_axes=(0, None, None, None)))
        lowered = fn.trace(jnp.ones((4, 30, 3), dtype), jnp.arange(30).reshape(10, 3),
                           jnp.zeros(10, jnp.int32), jnp.asarray(1.0, dtype)
                           ).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("xla.gpu.triton") == 2  # forward and backward kernels


def _uses_kernel(monkeypatch, env, backend, tile=4):
    if env is None:
        monkeypatch.delenv("HOIJAX_RASTER_BACKEND", raising=False)
    else:
        monkeypatch.setenv("HOIJAX_RASTER_BACKEND", env)
    st = render.RasterSettings(8, 8, tile_size=tile)
    fn = functools.partial(render.rasterize, faces=jnp.arange(3)[None], K=jnp.eye(3),
                           settings=st, backend=backend)
    return "pallas_call" in str(jax.make_jaxpr(fn)(jnp.ones((3, 3))))


def test_backend_selection(monkeypatch):
    assert not _uses_kernel(monkeypatch, None, "auto")  # CPU default: pure JAX
    assert _uses_kernel(monkeypatch, None, "pallas")
    assert _uses_kernel(monkeypatch, "pallas", "auto")
    assert not _uses_kernel(monkeypatch, "pallas", "jax")  # the argument beats the variable
    with pytest.raises(ValueError, match="power of two"):
        _uses_kernel(monkeypatch, None, "pallas", tile=3)
    with pytest.raises(ValueError, match="HOIJAX_RASTER_BACKEND"):
        _uses_kernel(monkeypatch, "triton", "auto")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _uses_kernel(monkeypatch, None, "auto")  # a GPU picks the kernels ...
    assert not _uses_kernel(monkeypatch, None, "auto", tile=3)  # ... where they apply
    assert not _uses_kernel(monkeypatch, "jax", "auto")


def test_a_jax_without_the_kernels_backend_falls_back_to_pure_jax(monkeypatch):
    """Pallas' Triton backend is deprecated in JAX 0.11: where ``hoijax.kernels`` cannot be
    imported, a GPU's ``auto`` renders with the pure-JAX path and says so once, with the same
    result; an explicit ``pallas`` is refused with the cause."""
    from hoijax.render import _raster

    verts = jnp.asarray([[-0.5, -0.5, 2.0], [0.6, -0.4, 2.0], [0.0, 0.7, 2.0]])
    K = jnp.asarray([[8.0, 0, 4.0], [0, 8.0, 4.0], [0, 0, 1.0]])
    st = render.RasterSettings(8, 8, tile_size=4)
    ref = render.rasterize(verts, jnp.arange(3)[None], K, settings=st, backend="jax")
    monkeypatch.delenv("HOIJAX_RASTER_BACKEND", raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setitem(sys.modules, "hoijax.kernels", None)  # import raises ImportError
    _raster._warn_no_kernels.cache_clear()
    with pytest.warns(RuntimeWarning, match="pure-JAX path"):
        assert not _uses_kernel(monkeypatch, None, "auto")
    out = render.rasterize(verts, jnp.arange(3)[None], K, settings=st, backend="auto")
    np.testing.assert_array_equal(np.asarray(out.silhouette), np.asarray(ref.silhouette))
    with pytest.raises(ValueError, match="not available in this JAX"):
        _uses_kernel(monkeypatch, None, "pallas")
