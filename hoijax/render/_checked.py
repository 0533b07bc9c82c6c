"""Capacity overflow handling outside ``jit``: retry with doubled capacities, or fail loudly."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from hoijax.render._raster import Rendering, rasterize
from hoijax.render._settings import RasterSettings


class CapacityError(RuntimeError):
    """The scene needs more binning capacity than allowed."""


@functools.lru_cache(maxsize=32)
def _jitted(settings: RasterSettings, num_meshes: int):
    return jax.jit(functools.partial(rasterize, settings=settings, num_meshes=num_meshes))


def rasterize_checked(
    verts_cam, faces, K, settings: RasterSettings, *, num_meshes: int = 1,
    max_retries: int = 4, **kwargs,
) -> tuple[Rendering, RasterSettings]:
    """:func:`rasterize` (jitted), retried with doubled capacities while it overflows.

    Returns the rendering and the settings that sufficed (reuse them for the next frames so
    nothing recompiles). Raises :class:`CapacityError` after ``max_retries`` doublings. Call it
    outside ``jit``: it reads the overflow flag on the host.
    """
    faces = np.asarray(faces, np.int32)  # a list would be traced element by element
    for attempt in range(max_retries + 1):
        out = _jitted(settings, num_meshes)(verts_cam, faces, K, **kwargs)
        if not bool(out.overflow):
            return out, settings
        if attempt < max_retries:
            settings = settings.doubled()
    raise CapacityError(
        f"rasterizer pair capacity still exceeded after {max_retries} doublings: the scene "
        f"needs {int(out.num_pairs)} (face, tile) pairs, capacity "
        f"{settings.pair_capacity(len(faces))} ({dataclasses.asdict(settings)})")
