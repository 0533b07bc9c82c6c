"""GPU kernels (Pallas) for hoijax, importable as ``hoijax.kernels``.

The directory sits at the top level of the repository and is mapped into the package by the
build backend (``[tool.setuptools] package-dir`` in ``pyproject.toml``), so it never becomes a
generic top-level ``kernels`` import. The pure-JAX code in ``hoijax`` is the reference and the
CPU path; :func:`hoijax.render.rasterize` picks these kernels on a GPU (``backend="auto"``).

* :func:`tile_face_lists`: the coarse stage's (face, tile) pairs regrouped into per-tile face
  lists (stable sort by tile + cumsum offsets).
* :func:`raster_tiles`: the rasterizer's fine stage (soft silhouettes' ``Σ log(1 - p)`` per
  mesh, per-mesh nearest depth for compositing, nearest covering face) as a Pallas (Triton)
  kernel with one program per tile, and its backward kernel through ``jax.custom_vjp``.
* :func:`pixel_face_ops`: the kernels' operations per pixel–face evaluation, counted from
  their traced code (for the roofline floors of ``experiments/bench_kernels.py``).
"""

from hoijax.kernels._cost import pixel_face_ops
from hoijax.kernels._raster_tiles import (
    MAX_TILE_SIZE,
    TileRaster,
    raster_tiles,
    unsupported_reason,
)
from hoijax.kernels._tile_lists import TileLists, tile_face_lists

__all__ = ["MAX_TILE_SIZE", "TileLists", "TileRaster", "pixel_face_ops", "raster_tiles",
           "tile_face_lists", "unsupported_reason"]
