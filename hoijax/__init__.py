"""hoijax: fast, batched, differentiable hand-object reconstruction in JAX.

Subpackages follow the data flow of the tracker (see the README's architecture section):
``geometry`` → ``mano`` → (``render``, ``sdf``, ``features``) → ``losses`` → ``tracking``.
Import them explicitly, e.g. ``from hoijax import mano, geometry``.
"""

__version__ = "0.1.0"

from hoijax._runtime import configure_xla_cpu as _configure_xla_cpu

_configure_xla_cpu()
