"""GPU kernels (Pallas) for hoijax, importable as ``hoijax.kernels``.

The directory sits at the top level of the repository and is mapped into the package by the
build backend (``[tool.setuptools] package-dir`` in ``pyproject.toml``), so it never becomes a
generic top-level ``kernels`` import. No kernel exists yet: the rasterizer kernels arrive with the
GPU issue, and the pure-JAX code in ``hoijax`` is the reference and CPU path.
"""
