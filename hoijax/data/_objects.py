"""Procedural, watertight, metric object meshes and their per-vertex "texture" features.

Every object is built in its canonical frame (metres), centred on its bounding box, longest
side along x, shortest along z, then subdivided so that no edge is longer than
``max_edge_m`` (long sliver triangles cost the binned rasterizer many (face, tile) pairs, and
short edges let per-vertex features vary across a face). Unions and differences use
``trimesh.boolean`` with the manifold engine, so results are watertight.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hoijax.data._sequence import ObjectMesh

ObjectKind = Literal["box", "can", "mug", "scissors", "drill", "sphere", "torus", "bottle",
                     "ellipsoid", "marker", "spatula"]
OBJECT_KINDS: tuple[str, ...] = ("box", "can", "mug", "scissors", "drill")
"""The five kinds of the original benchmark (:func:`hoijax.data.default_benchmark_configs`)."""
EXTRA_OBJECT_KINDS: tuple[str, ...] = ("sphere", "torus", "bottle", "ellipsoid", "marker",
                                       "spatula")
"""Kinds added for benchmark v2: continuous symmetry (sphere, torus, bottle), thin and
elongated objects (ellipsoid, marker) and a handle (spatula)."""
ALL_OBJECT_KINDS: tuple[str, ...] = OBJECT_KINDS + EXTRA_OBJECT_KINDS


def _rot(axis: str, angle: float) -> np.ndarray:
    import trimesh

    vec = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1]}[axis]
    return trimesh.transformations.rotation_matrix(angle, vec)


def _moved(mesh, *, T=None, shift=(0.0, 0.0, 0.0)):
    mesh = mesh.copy()
    if T is not None:
        mesh.apply_transform(T)
    mesh.apply_translation(shift)
    return mesh


def _union(*meshes):
    import trimesh

    return trimesh.boolean.union(list(meshes), engine="manifold")


def _difference(a, b):
    import trimesh

    return trimesh.boolean.difference([a, b], engine="manifold")


def _ring(r_out: float, r_in: float, thickness: float, sections: int = 32):
    """A flat annulus (washer) in the xy plane: a scissors' finger ring."""
    import trimesh

    outer = trimesh.creation.cylinder(radius=r_out, height=thickness, sections=sections)
    inner = trimesh.creation.cylinder(radius=r_in, height=2 * thickness, sections=sections)
    return _difference(outer, inner)


def _build(kind: str, rng: np.random.Generator):
    """The raw metric mesh of a kind, with mild seeded size variation."""
    import trimesh

    jitter = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if kind == "box":
        return trimesh.creation.box(extents=(jitter(0.09, 0.11), jitter(0.055, 0.07),
                                             jitter(0.035, 0.05)))
    if kind == "can":
        return trimesh.creation.cylinder(radius=jitter(0.03, 0.036), height=jitter(0.1, 0.12),
                                         sections=28)
    if kind == "mug":
        r, h, wall = jitter(0.036, 0.042), jitter(0.085, 0.1), 0.005
        outer = trimesh.creation.cylinder(radius=r, height=h, sections=28)
        handle = trimesh.creation.torus(major_radius=0.026, minor_radius=0.0065,
                                        major_sections=24, minor_sections=10)
        handle = _moved(handle, T=_rot("x", np.pi / 2), shift=(r + 0.012, 0.0, 0.0))
        cavity = trimesh.creation.cylinder(radius=r - wall, height=h, sections=28)
        cavity.apply_translation((0.0, 0.0, wall))
        return _difference(_union(outer, handle), cavity)
    if kind == "scissors":
        t = 0.004
        blade_len = jitter(0.09, 0.11)
        blade = trimesh.creation.box(extents=(blade_len, 0.012, t))
        blades = [_moved(blade, T=_rot("z", s * 0.12), shift=(blade_len / 2 - 0.01, 0.0, 0.0))
                  for s in (-1, 1)]
        rings = [_moved(_ring(0.016, 0.010, t), shift=(-0.03, s * 0.018, 0.0)) for s in (-1, 1)]
        shanks = [_moved(trimesh.creation.box(extents=(0.03, 0.008, t)),
                         T=_rot("z", -s * 0.5), shift=(-0.006, s * 0.006, 0.0)) for s in (-1, 1)]
        pivot = trimesh.creation.cylinder(radius=0.005, height=t * 1.6, sections=16)
        return _union(*blades, *rings, *shanks, pivot)
    if kind == "drill":
        body_len = jitter(0.14, 0.17)
        body = _moved(trimesh.creation.cylinder(radius=0.028, height=body_len, sections=32),
                      T=_rot("y", np.pi / 2))
        chuck = _moved(trimesh.creation.cylinder(radius=0.014, height=0.04, sections=24),
                       T=_rot("y", np.pi / 2), shift=(body_len / 2 + 0.018, 0.0, 0.0))
        grip = _moved(trimesh.creation.box(extents=(0.035, 0.11, 0.03)), T=_rot("z", 0.25),
                      shift=(-0.02, -0.07, 0.0))
        battery = trimesh.creation.box(extents=(0.07, 0.03, 0.06))
        battery.apply_translation((-0.005, -0.135, 0.0))
        return _union(body, chuck, grip, battery)
    if kind == "sphere":
        return trimesh.creation.icosphere(subdivisions=3, radius=jitter(0.03, 0.045))
    if kind == "torus":
        return trimesh.creation.torus(major_radius=jitter(0.035, 0.045),
                                      minor_radius=jitter(0.009, 0.014), major_sections=40,
                                      minor_sections=14)
    if kind == "bottle":
        r, h = jitter(0.028, 0.036), jitter(0.16, 0.2)
        neck = jitter(0.011, 0.014)
        # Profile (radius, height) from the bottom centre up, revolved about z.
        z = np.array([0.0, 0.0, 0.62, 0.72, 0.8, 0.95, 0.95, 1.0, 1.0]) * h
        rr = np.array([0.0, r, r, 0.8 * r, neck, neck, neck * 1.15, neck * 1.15, 0.0])
        return trimesh.creation.revolve(np.c_[rr, z], sections=28)
    if kind == "ellipsoid":
        m = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        m.apply_scale((jitter(0.07, 0.09), jitter(0.025, 0.032), jitter(0.022, 0.026)))
        return m
    if kind == "marker":
        body = trimesh.creation.cylinder(radius=jitter(0.0065, 0.008), height=jitter(0.12, 0.14),
                                         sections=20)
        cap = trimesh.creation.cylinder(radius=0.009, height=0.035, sections=20)
        cap.apply_translation((0.0, 0.0, 0.05))
        return _union(body, cap)
    if kind == "spatula":
        handle_len = jitter(0.14, 0.17)
        handle = _moved(trimesh.creation.cylinder(radius=0.008, height=handle_len, sections=16),
                        T=_rot("y", np.pi / 2))
        blade = trimesh.creation.box(extents=(jitter(0.07, 0.09), 0.06, 0.004))
        blade.apply_translation((handle_len / 2 + 0.035, 0.0, 0.0))
        return _union(handle, blade)
    raise ValueError(f"unknown object kind {kind!r}; choose one of {ALL_OBJECT_KINDS}")


def _canonicalize(mesh, max_edge_m: float):
    """Centre on the bounding box, order the axes by extent (x longest), bound edge lengths."""
    import trimesh

    mesh = mesh.copy()
    mesh.apply_translation(-mesh.bounds.mean(0))
    order = np.argsort(-mesh.extents)
    perm = np.eye(3)[order]
    if np.linalg.det(perm) < 0:
        perm[2] *= -1
    T = np.eye(4)
    T[:3, :3] = perm
    mesh.apply_transform(T)
    verts, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces,
                                                    max_edge=max_edge_m, max_iter=12)
    out = trimesh.Trimesh(verts, faces, process=True)
    out.merge_vertices()
    out.fix_normals()
    return out


_MAX_EDGE_M = {"box": 0.016, "can": 0.016, "mug": 0.019, "scissors": 0.016, "drill": 0.024,
               "sphere": 0.016, "torus": 0.016, "bottle": 0.018, "ellipsoid": 0.016,
               "marker": 0.016, "spatula": 0.018}


def make_object_trimesh(kind: ObjectKind, seed: int = 0, *, max_edge_m: float | None = None):
    """A procedural, watertight, metric ``trimesh.Trimesh`` of the given kind (see module doc).

    Kinds: ``box`` (a cereal-box-like cuboid), ``can`` (cylinder), ``mug`` (cup with a torus
    handle, hollow), ``scissors`` (thin: two blades, two finger rings, 4 mm thick), ``drill``
    (body, chuck, slanted grip and battery block); and for benchmark v2 ``sphere``, ``torus``,
    ``bottle`` (a revolved profile with shoulder and neck), ``ellipsoid`` (elongated),
    ``marker`` (a thin pen with a cap) and ``spatula`` (a long handle and a thin blade).
    Sizes vary a little with ``seed``.
    ``max_edge_m`` defaults per kind so that every object has fewer than 4096 faces.
    """
    rng = np.random.default_rng([seed, ALL_OBJECT_KINDS.index(kind)
                                 if kind in ALL_OBJECT_KINDS else 99])
    mesh = _build(kind, rng)
    mesh = _canonicalize(mesh, _MAX_EDGE_M[kind] if max_edge_m is None else max_edge_m)
    if not mesh.is_watertight:
        raise RuntimeError(f"procedural {kind} came out non-watertight (trimesh/manifold bug?)")
    return mesh


def vertex_features(vertices: np.ndarray, dim: int = 16, seed: int = 0, *,
                    frequency: float = 0.35) -> np.ndarray:
    """Per-vertex "texture" features (V, dim), unit norm: smooth functions of canonical position.

    Positions are normalised by the bounding box to [-1, 1]³, lifted by random Fourier features
    ``sin(2π B p + φ)`` (``B`` of scale ``frequency`` cycles per box) and the raw coordinates,
    then mixed by a random projection to ``dim`` channels. Distant parts of an object thus get
    distinct features, close points similar ones (like DINO features of a textured mesh).
    """
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    p = 2 * (v - (lo + hi) / 2) / np.maximum(hi - lo, 1e-9).max()
    nf = 2 * dim
    B = rng.normal(scale=frequency, size=(3, nf))
    phase = rng.uniform(0, 2 * np.pi, size=nf)
    lifted = np.concatenate([np.sin(2 * np.pi * p @ B + phase), p], axis=1)
    proj = rng.normal(size=(lifted.shape[1], dim)) / np.sqrt(lifted.shape[1])
    f = lifted @ proj
    return (f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-9)).astype(np.float32)


def object_mesh_from_trimesh(mesh, *, feature_dim: int = 16, seed: int = 0,
                             features: np.ndarray | None = None) -> ObjectMesh:
    """An :class:`ObjectMesh` from a ``trimesh.Trimesh`` (metres, object frame), with given
    per-vertex ``features`` or generated ones (:func:`vertex_features`)."""
    import jax.numpy as jnp

    verts = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    if features is None:
        features = vertex_features(verts, feature_dim, seed)
    features = np.asarray(features, np.float32)
    if features.shape[0] != verts.shape[0]:
        raise ValueError(f"features have {features.shape[0]} rows for {verts.shape[0]} vertices")
    return ObjectMesh(vertices=jnp.asarray(verts), faces=jnp.asarray(faces),
                      face_valid=jnp.ones((faces.shape[0],), bool),
                      vertex_features=jnp.asarray(features))


__all__ = ["ALL_OBJECT_KINDS", "EXTRA_OBJECT_KINDS", "OBJECT_KINDS", "ObjectKind", "make_object_trimesh", "object_mesh_from_trimesh",
           "vertex_features"]
