"""Signed distance grids of object meshes, built once on the host from the exact distance.

The build is exact at every grid point (no sampling): the unsigned distance comes from an
octree of grid blocks that culls faces with lower bounds, and the sign from the generalized
winding number, evaluated only where the sign is not already implied by a neighbour.

* **Distance.** A block of grid points with centre ``c`` and radius ``ρ`` can only have, as
  nearest face of any of its points, a face ``f`` whose lower bound
  ``lb_f = max(|c - centre_f| - radius_f, |n_f · (c - a_f)|) - ρ`` is at most ``d(c) + ρ`` (an
  upper bound on every point's distance). Blocks are split 2×2×2 level by level; each child
  evaluates its centre's exact distance against its parent's candidate faces and keeps the faces
  that pass the test. At single points (``ρ = 0``) the minimum over the candidates is exact.
* **Sign.** Winding numbers (:func:`hoijax.sdf.winding_number`, ``|w| > 1/2`` inside) on a
  coarse lattice (every 8th point); then, lattice by lattice (every 4th, 2nd, each point), a point
  ``p`` takes the sign of its parent ``q`` on the coarser lattice when ``|p - q| < d(p) + d(q)``
  (the balls of radius ``d`` around each hold no surface and overlap, so they are on the same
  side); only points too near the surface get their own winding number.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from hoijax.sdf._exact import _face_frames, _pair_d2, winding_number

DEFAULT_RESOLUTION = 64
"""Grid points along the longest side of the padded bounding box."""
DEFAULT_PADDING = 0.1
"""Padding around the mesh's bounding box, as a fraction of its longest side (each side)."""
_PAIR_CHUNK = 1 << 21
"""(point, face) pairs evaluated per NumPy batch in the octree (bounds host memory)."""
_WINDING_CHUNK = 512
"""Points per chunk of the JAX winding-number kernel."""


class NonWatertightMeshError(ValueError):
    """The mesh has boundary or non-manifold edges, so "inside" is not defined exactly."""


class SdfGrid(eqx.Module):
    """A signed distance field sampled on a regular grid (positive outside, negative inside).

    Grid point ``(i, j, k)`` sits at ``origin + voxel_size · (i, j, k)``, in the frame of the mesh
    it was built from (the canonical object frame). Every field is a traced leaf, so grids of the
    same resolution can be stacked and vmapped."""

    values: Float[Array, "Dx Dy Dz"]
    """Signed distance at the grid points, metres."""
    origin: Float[Array, "3"]
    """Position of grid point (0, 0, 0), metres."""
    voxel_size: Float[Array, ""]
    """Spacing of the grid points, metres."""

    @property
    def resolution(self) -> tuple[int, int, int]:
        """Grid points per axis (static)."""
        return tuple(self.values.shape[-3:])

    @property
    def upper(self) -> Float[Array, "3"]:
        """Position of the last grid point, metres."""
        return self.origin + self.voxel_size * (jnp.asarray(self.resolution) - 1)


def mesh_defects(faces: Int[ArrayLike, "F 3"]) -> tuple[int, int]:
    """``(open, flipped)``: edges without exactly two faces (boundary or non-manifold), and
    edges whose two faces are wound the same way. Both are 0 for a closed, consistently
    oriented 2-manifold."""
    f = np.asarray(faces, np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return int(np.sum(counts != 2)), int(np.sum(dcounts != 1))


def check_watertight(faces: Int[ArrayLike, "F 3"], *, source: str = "mesh") -> None:
    """Raise :class:`NonWatertightMeshError` unless every edge has exactly two faces, wound
    in opposite directions (a closed, consistently oriented 2-manifold)."""
    f = np.asarray(faces, np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise NonWatertightMeshError(f"{source}: faces must be (F, 3) with F >= 1, got {f.shape}")
    bad, flipped = mesh_defects(f)
    if bad or flipped:
        raise NonWatertightMeshError(
            f"{source}: the mesh is not watertight ({bad} boundary or non-manifold edges, "
            f"{flipped} edges with inconsistent winding); inside/outside is undefined. Fix the "
            "mesh, or pass repair=True to sign the distance by the generalized winding number "
            "(robust to small holes).")


_SLACK = 1e-3
"""Slack of the culling test, in voxels (float32 rounding of the bounds is far below it)."""


def _face_consts(tri: np.ndarray) -> dict:
    """Face constants of the distance kernel plus bounding spheres and unit planes."""
    fr = _face_frames(tri, np)
    centre = tri.mean(axis=1)
    nrm = np.linalg.norm(fr["nor"], axis=-1)
    unit_n = np.where(nrm[:, None] > 0, fr["nor"] / np.where(nrm > 0, nrm, 1.0)[:, None], 0.0)
    fr.update(centre=centre, radius=np.max(np.linalg.norm(tri - centre[:, None], axis=-1), 1),
              unit_n=unit_n, offset=np.sum(unit_n * fr["a"], -1))
    return {k: jnp.asarray(v, jnp.float32) for k, v in fr.items()}


@jax.jit
def _pair_kernel(consts: dict, p, face):
    """Squared distance and a lower bound on the distance for (point, face) pairs."""
    fr = {k: v[face] for k, v in consts.items()}
    d2 = _pair_d2(fr, p)
    lb = jnp.maximum(jnp.linalg.norm(p - fr["centre"], axis=-1) - fr["radius"],
                     jnp.abs(jnp.sum(fr["unit_n"] * p, -1) - fr["offset"]))
    return d2, lb


def _pair_kernel_host(consts: dict, p: np.ndarray, face: np.ndarray):
    """:func:`_pair_kernel` padded to a power of two (a few compilations per process)."""
    n = p.shape[0]
    size = max(1 << 12, 1 << int(np.ceil(np.log2(max(n, 1)))))
    p_pad = np.zeros((size, 3), np.float32)
    f_pad = np.zeros((size,), np.int32)
    p_pad[:n], f_pad[:n] = p, face
    d2, lb = _pair_kernel(consts, p_pad, f_pad)
    return np.asarray(d2, np.float64)[:n], np.asarray(lb, np.float64)[:n]


def _unsigned_octree(tri: np.ndarray, origin: np.ndarray, h: float,
                     res: tuple[int, int, int]) -> np.ndarray:
    """Exact unsigned distance at every grid point (see the module docstring)."""
    consts = _face_consts(tri)
    res_a = np.asarray(res)
    size = 1 << int(np.ceil(np.log2(max(res))))
    blocks = np.zeros((1, 3), np.int64)
    pair_block = np.zeros(tri.shape[0], np.int64)
    pair_face = np.arange(tri.shape[0])
    while size > 1:
        half = size // 2
        offs = np.asarray(list(itertools.product((0, half), repeat=3)))
        child = (blocks[:, None, :] + offs[None]).reshape(-1, 3)
        keep_child = np.all(child < res_a, axis=-1)
        new_id = np.full(child.shape[0], -1)
        new_id[keep_child] = np.arange(int(keep_child.sum()))
        blocks = child[keep_child]
        last = np.minimum(blocks + half, res_a) - 1
        c = origin + h * (blocks + last) / 2.0
        rho = h * np.linalg.norm((last - blocks) / 2.0, axis=-1)
        d_c = np.full(blocks.shape[0], np.inf)
        kept_b, kept_f, kept_lb = [], [], []
        step = _PAIR_CHUNK // 8
        for s in range(0, pair_block.shape[0], step):
            cb = new_id[(pair_block[s:s + step, None] * 8 + np.arange(8)).reshape(-1)]
            cf = np.repeat(pair_face[s:s + step], 8)
            ok = cb >= 0
            cb, cf = cb[ok], cf[ok]
            d2, lb = _pair_kernel_host(consts, c[cb], cf)
            np.minimum.at(d_c, cb, d2)
            kept_b.append(cb)
            kept_f.append(cf)
            kept_lb.append(lb)
        d_c = np.sqrt(d_c)
        pair_block, pair_face = np.concatenate(kept_b), np.concatenate(kept_f)
        lbs = np.concatenate(kept_lb)
        # Lower bound over the block vs upper bound d(c) + rho; a hair of slack for rounding.
        keep = lbs - rho[pair_block] <= d_c[pair_block] + rho[pair_block] + _SLACK * h
        pair_block, pair_face = pair_block[keep], pair_face[keep]
        size = half
    dist = np.zeros(res)
    dist[tuple(blocks.T)] = d_c
    return dist


@jax.jit
def _winding_kernel(tri, points):
    return winding_number(tri.reshape(-1, 3), jnp.arange(tri.shape[0] * 3).reshape(-1, 3),
                          points, chunk=_WINDING_CHUNK)


def _winding_host(tri: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Winding numbers of many points, padded to a power of two (few compilations)."""
    n = points.shape[0]
    if n == 0:
        return np.zeros((0,))
    n_pad = max(_WINDING_CHUNK, 1 << int(np.ceil(np.log2(n))))
    padded = np.concatenate([points, np.repeat(points[:1], n_pad - n, axis=0)])
    return np.asarray(_winding_kernel(jnp.asarray(tri, jnp.float32),
                                      jnp.asarray(padded, jnp.float32)))[:n]


def sdf_grid_from_mesh(
    vertices: Float[ArrayLike, "V 3"],
    faces: Int[ArrayLike, "F 3"],
    resolution: int = DEFAULT_RESOLUTION,
    padding: float = DEFAULT_PADDING,
    *,
    repair: bool = False,
    source: str = "mesh",
) -> SdfGrid:
    """Exact signed distance of a mesh on a regular grid (host-side, once per object).

    AGILE's Φ (Eq. 6) for the canonical object mesh. See the module docstring for the method;
    measured at 64³ on two busy CPU cores, compilation included: about 2.5 s
    for 320 faces, 3.6 s for 1280, 9 s for 5120.

    Args:
        vertices: ``(V, 3)`` vertices in the object frame, metres.
        faces: ``(F, 3)`` triangles, counter-clockwise seen from outside (either consistent
            orientation works: the inside test is ``|w| > 1/2``).
        resolution: grid points along the longest side of the padded box (cubic voxels;
            the other sides get as many as they need).
        padding: margin around the bounding box on each side, as a fraction of its longest side.
            Queries outside the grid extrapolate (:func:`hoijax.sdf.query_sdf`).
        repair: accept a mesh that is not watertight. The sign then comes from the generalized
            winding number as always, which is robust to small holes (points near a hole get
            ``w ≈ 1/2`` and may take either sign, and a sign may propagate through the hole to
            neighbours whose surface-free balls overlap); the distance is still exact.
        source: name of the mesh in error messages (e.g. the file and field it came from).

    Raises:
        NonWatertightMeshError: the mesh has boundary or inconsistently wound edges and
            ``repair`` is False.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
        raise ValueError(f"{source}: vertices must be finite (V, 3), got shape {v.shape}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if not repair:
        check_watertight(f, source=source)
    tri = v[f]
    lo, hi = v[f.reshape(-1)].min(0), v[f.reshape(-1)].max(0)
    extent = float(np.max(hi - lo))
    lo, hi = lo - padding * extent, hi + padding * extent
    h = float(np.max(hi - lo)) / (resolution - 1)
    res = tuple(int(np.ceil((hi[i] - lo[i]) / h - 1e-9)) + 1 for i in range(3))
    centre = (lo + hi) / 2
    origin = centre - h * (np.asarray(res) - 1) / 2
    dist = _unsigned_octree(tri, origin, h, res)

    # Signs: winding numbers on a coarse lattice, then lattice by lattice down to every point;
    # a point inherits its coarse parent's sign when their surface-free balls overlap.
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in res], indexing="ij"), -1)
    pts = origin + h * idx
    inside = np.zeros(res, bool)
    done = np.zeros(res, bool)
    for stride in (8, 4, 2, 1):
        on = np.all(idx % stride == 0, axis=-1) & ~done
        if stride == 8:
            direct = on
        else:
            parent = idx - idx % (2 * stride)
            gap = h * np.linalg.norm(idx - parent, axis=-1)
            # The surface-free balls around the point and its parent overlap: same side.
            inherit = on & (gap < dist + dist[tuple(np.moveaxis(parent, -1, 0))])
            inside[inherit] = inside[tuple(parent[inherit].T)]
            direct = on & ~inherit
        inside[direct] = np.abs(_winding_host(tri, pts[direct])) > 0.5
        done |= on
    values = np.where(inside, -dist, dist)
    return SdfGrid(values=jnp.asarray(values, jnp.float32),
                   origin=jnp.asarray(origin, jnp.float32),
                   voxel_size=jnp.asarray(h, jnp.float32))
