"""Shared bits of the benchmark scripts (run them as ``python experiments/bench_*.py``)."""

from __future__ import annotations

import importlib.metadata as md
import os


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out), for results files."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def kernel_backend(tile_size: int = 4, dtype: str = "float32") -> dict:
    """Which implementation renders, in this process, for results files.

    * ``pallas_lowering``: how ``hoijax.kernels.raster_tiles`` runs when it is used: ``"triton"``
      on a GPU (the kernels pass ``pallas.triton.CompilerParams``, which selects Pallas' Triton
      lowering whatever ``jax_pallas_use_mosaic_gpu`` says; there is no Mosaic GPU port yet),
      ``"interpret"`` elsewhere (Pallas' interpreter: ``interpret`` defaults to
      ``jax.default_backend() != "gpu"``);
    * ``rasterize_auto``: what ``render.rasterize(backend="auto")`` picks for ``tile_size`` and
      ``dtype`` (the tracker's setting): ``"pallas"`` or ``"jax"`` (the pure-JAX segment
      reductions), after ``$HOIJAX_RASTER_BACKEND``.
    """
    import jax
    import jax.numpy as jnp

    from hoijax import render
    from hoijax.render._raster import BACKEND_ENV, _use_pallas

    settings = render.RasterSettings(8 * tile_size, 8 * tile_size, tile_size=tile_size)
    try:
        auto = "pallas" if _use_pallas("auto", settings, jnp.dtype(dtype)) else "jax"
    except ValueError as e:  # a bad $HOIJAX_RASTER_BACKEND
        auto = f"error: {e}"
    return {
        "pallas_lowering": "triton" if jax.default_backend() == "gpu" else "interpret",
        "mosaic_gpu": False,
        "rasterize_auto": auto,
        "rasterize_auto_for": {"tile_size": tile_size, "dtype": dtype},
        BACKEND_ENV: os.environ.get(BACKEND_ENV),
    }


def run_info(with_kernels: bool = True) -> dict:
    """The device and software of this run (``jax.devices()``, versions), the same block in
    every results file the GPU suite reads (``experiments/gpu_suite.py``)."""
    import jax

    devices = jax.devices()
    info = {
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
        "jax_version": jax.__version__,
        "versions": package_versions("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt",
                                     "jax-cuda13-plugin", "jax-cuda13-pjrt", "numpy",
                                     "equinox"),
        "env": {k: os.environ[k] for k in ("JAX_PLATFORMS", "XLA_FLAGS",
                                            "XLA_PYTHON_CLIENT_PREALLOCATE",
                                            "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                            "JAX_ENABLE_COMPILATION_CACHE", "CUDA_VISIBLE_DEVICES")
                if k in os.environ},
    }
    if with_kernels:
        info["kernel_backend"] = kernel_backend()
    return info
