"""Reading an object mesh together with its colours (UV texture, vertex colours or material).

:func:`hoijax.data.load_object_mesh` and the converters' ``read_obj`` keep only geometry.
:func:`read_textured_mesh` reads the same file the same way (``trimesh.load`` with
``process=False, maintain_order=True``, so the vertices are exactly those of
:func:`hoijax.data.load_object_mesh` and per-vertex arrays line up with a sequence's mesh) and
bakes its appearance into per-vertex colours with trimesh's ``visual.to_color()``: a UV
texture is sampled at each vertex's UV, a material without a texture gives its diffuse colour,
vertex colours are kept. A file with no colour information gives a uniform grey and
``has_texture=False``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

GREY = 128
"""The uniform colour (uint8) of a mesh without any colour information."""


class TexturedMesh(NamedTuple):
    vertices: np.ndarray
    """(V, 3) float32, in the file's order (that of :func:`hoijax.data.load_object_mesh`)."""
    faces: np.ndarray
    """(F, 3) int32."""
    colors: np.ndarray
    """(V, 3) uint8 RGB per vertex."""
    has_texture: bool
    """Whether the file had colour information (texture, material or vertex colours)."""
    source: str
    """Where the colours came from: ``"texture"``, ``"material"``, ``"vertex_colors"``,
    ``"face_colors"`` or ``"none"``."""
    uv: np.ndarray | None = None
    """(V, 2) float32 texture coordinates (OBJ/glTF convention: origin at the image's
    bottom-left), when the file has a UV texture; None otherwise."""
    texture: np.ndarray | None = None
    """(H, W, 3) uint8 texture image that ``uv`` indexes, or None. Renderers sample it per
    pixel (:func:`hoijax.features.render_views`), so a texture finer than the mesh (a
    checkerboard on two triangles) keeps its appearance, which ``colors`` cannot."""


def _uv_from_unordered_load(path: Path, verts: np.ndarray):
    """The visual of the file loaded without ``maintain_order``, when its vertices are the
    same as ``verts`` (in the same order), else None."""
    import trimesh

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            other = trimesh.load(path, force="mesh", process=False)
    except Exception:
        return None
    if (isinstance(other, trimesh.Trimesh) and other.vertices.shape == verts.shape
            and np.allclose(other.vertices, verts) and getattr(other.visual, "uv", None) is not None):
        return other.visual
    return None


def read_textured_mesh(path: str | Path) -> TexturedMesh:
    """Vertices, faces and per-vertex colours of a mesh file (any format trimesh reads, with
    its material and texture: OBJ + MTL + image, GLB/GLTF, PLY with colours, ...)."""
    from hoijax.data._format import load_trimesh

    path = Path(path)
    mesh = load_trimesh(path)
    verts = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    n = len(verts)
    visual = mesh.visual
    colors, source = None, "none"
    tex_uv = tex = None
    if visual.kind == "texture":
        material = getattr(visual, "material", None)
        has_image = (getattr(material, "image", None) is not None
                     or getattr(material, "baseColorTexture", None) is not None)
        uv = getattr(visual, "uv", None)
        if uv is None:  # trimesh drops an OBJ's UVs on polygons with maintain_order=True
            visual = _uv_from_unordered_load(path, verts) or visual
            uv = getattr(visual, "uv", None)
        if uv is not None and len(uv) == n:
            colors = np.asarray(visual.to_color().vertex_colors)
            source = "texture" if has_image else "material"
            image = getattr(material, "image", None)
            if image is None:
                image = getattr(material, "baseColorTexture", None)
            if image is not None:
                tex_uv = np.asarray(uv, np.float32)[:, :2]
                tex = np.asarray(image.convert("RGB"), np.uint8)
        elif material is not None:
            colors = np.asarray(visual.to_color().vertex_colors)
            source = "material"
    elif visual.kind == "vertex":
        colors, source = np.asarray(visual.vertex_colors), "vertex_colors"
    elif visual.kind == "face":
        colors, source = np.asarray(visual.vertex_colors), "face_colors"
    if colors is None or colors.shape[0] != n:
        return TexturedMesh(verts, faces, np.full((n, 3), GREY, np.uint8), False, "none")
    return TexturedMesh(verts, faces, np.asarray(colors)[:, :3].astype(np.uint8), True, source,
                        tex_uv, tex)


def transfer_appearance(vertices: np.ndarray, faces: np.ndarray, source: TexturedMesh,
                        tol: float = 1e-5) -> TexturedMesh:
    """``source``'s appearance on another copy of the same surface (``vertices``, ``faces``):
    each vertex takes the colour (and the texture coordinate) of the nearest source vertex.
    A converter stores the object as plain geometry and records the original textured file
    (``meta["object_model"]``); this puts the texture back on the stored vertices. Texture
    coordinates are kept only when every vertex has a source vertex within ``tol`` of the
    bounding-box diagonal (the same vertices, in any order); otherwise colours only."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float32)
    dist, idx = cKDTree(np.asarray(source.vertices, np.float64)).query(v.astype(np.float64))
    diag = float(np.linalg.norm(np.ptp(v, axis=0))) or 1.0
    exact = bool(np.max(dist) <= tol * diag)
    uv = source.uv[idx] if exact and source.uv is not None else None
    return TexturedMesh(v, np.asarray(faces, np.int32), source.colors[idx], source.has_texture,
                        source.source, uv, source.texture if uv is not None else None)


__all__ = ["GREY", "TexturedMesh", "read_textured_mesh", "transfer_appearance"]
