"""Command-line flags derived from the library's settings classes, so no default is copied.

:class:`hoijax.tracking.TrackConfig` is a plain frozen dataclass that tyro reads directly.
:class:`hoijax.tracking.TrackHyper` holds traced arrays, which a command line cannot spell, so
:func:`flags_of` mirrors it as a dataclass of floats (nested the same way, defaults and help
texts read from the class), and :func:`build` turns parsed flags back into the pytree.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from typing import Annotated

import equinox as eqx
import numpy as np
import tyro


def plain(text: str) -> str:
    """Docstring text as a terminal shows it: RST roles and literals unwrapped
    (":class:`a.B`" and "``x``" become "a.B" and "x"), lines joined."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return " ".join(re.sub(r"``([^`]+)``", r"\1", text).split())


def _attribute_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right after a field) of a class and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for a, b in zip(body, body[1:]):
            if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)):
                docs[a.target.id] = plain(b.value.value)
    return docs


@functools.cache
def flags_of(cls: type) -> type:
    """A dataclass of floats mirroring the ``eqx.Module`` ``cls`` of scalar fields (nested
    modules become nested flag groups), with ``cls()``'s values as defaults."""
    default, docs = cls(), _attribute_docs(cls)
    fields = []
    for f in dataclasses.fields(cls):
        value, help_ = getattr(default, f.name), docs.get(f.name, "")
        if isinstance(value, eqx.Module):
            sub = flags_of(type(value))
            fields.append((f.name, Annotated[sub, tyro.conf.arg(help=help_)],
                           dataclasses.field(default_factory=sub)))
        else:
            fields.append((f.name, Annotated[float, tyro.conf.arg(help=help_)],
                           # float32 defaults printed as the shortest decimal that reads
                           # back the same (0.001, not 0.0010000000474974513)
                           dataclasses.field(default=float(str(np.asarray(value))))))
    return dataclasses.make_dataclass(f"{cls.__name__}Flags", fields,
                                      namespace={"__doc__": plain(cls.__doc__ or "")})


def build(cls: type, flags) -> eqx.Module:
    """The ``cls`` pytree that parsed ``flags`` (an instance of ``flags_of(cls)``) stand for."""
    default = cls()
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(flags, f.name)
        sub = getattr(default, f.name)
        values[f.name] = build(type(sub), v) if isinstance(sub, eqx.Module) else v
    return cls(**values)
