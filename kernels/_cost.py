"""Arithmetic per pixel–face evaluation of the rasterizer kernels (for roofline floors).

Counted, not estimated: the kernels' per-face functions are traced on one tile's lanes and
every primitive whose result has a value per pixel is counted once per pixel (reductions over
the tile once per input element). Comparisons and selects count as one operation like
additions; a fused multiply-add counts as its two. Transcendentals (``exp``, ``log1p``,
``logistic``, …) are also reported apart: they run on the GPU's special-function units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from hoijax.kernels._raster_tiles import (
    _GEOM_ROWS,
    _accumulate,
    _pair_backward,
    _pair_forward,
)

_TRANSCENDENTAL = {"exp", "exp2", "log", "log1p", "logistic", "expm1", "tanh", "sqrt",
                   "rsqrt", "pow", "sin", "cos"}
_FREE = {"broadcast_in_dim", "convert_element_type", "reshape", "squeeze", "iota", "copy",
         "copy_p", "stop_gradient"}


def _count(jaxpr, lanes: int) -> tuple[int, int]:
    ops = trans = 0
    for eqn in jaxpr.eqns:
        subs = [v for v in eqn.params.values()
                if isinstance(v, (jex_core.Jaxpr, jex_core.ClosedJaxpr))]
        if subs:
            for sub in subs:
                o, t = _count(getattr(sub, "jaxpr", sub), lanes)
                ops, trans = ops + o, trans + t
            continue
        name = eqn.primitive.name
        if name in _FREE:
            continue
        per_pixel = any(getattr(v.aval, "shape", ()) == (lanes,) for v in eqn.outvars)
        reduces_pixels = name.startswith("reduce") and any(
            getattr(v.aval, "shape", ()) == (lanes,) for v in eqn.invars)
        if per_pixel or reduces_pixels:
            ops += 1
            trans += name in _TRANSCENDENTAL
    return ops, trans


def pixel_face_ops(num_meshes: int, lanes: int = 16) -> dict[str, int]:
    """Operations per pixel per (face, tile) pair: ``forward``, ``backward`` and the
    transcendental share of each, for ``num_meshes`` meshes (float32)."""
    f32 = jnp.float32
    px = py = jnp.zeros((lanes,), f32)
    g = [jnp.float32(1.0)] * _GEOM_ROWS
    s = jnp.float32(1.0)

    def forward(px, py, g, s):
        carry = (tuple(px for _ in range(num_meshes)), tuple(px for _ in range(num_meshes)),
                 px, jnp.zeros((lanes,), jnp.int32))
        return _accumulate(carry, jnp.int32(0), jnp.int32(0), *_pair_forward(px, py, g, s, s))

    def backward(px, py, g, s):
        ct = px
        for j in range(1, num_meshes):  # the kernel picks the pair's mesh's cotangent
            ct = jnp.where(jnp.int32(0) == j, px, ct)
        return _pair_backward(px, py, g[:6], s, s, ct)

    fo, ft = _count(jax.make_jaxpr(forward)(px, py, g, s).jaxpr, lanes)
    bo, bt = _count(jax.make_jaxpr(backward)(px, py, g, s).jaxpr, lanes)
    return {"forward": fo, "forward_transcendental": ft, "backward": bo,
            "backward_transcendental": bt}
