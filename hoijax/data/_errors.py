"""What loading a sequence can go wrong with: one error class per kind, all naming file and field."""

from __future__ import annotations

from pathlib import Path


class SequenceFormatError(ValueError):
    """A sequence directory (or one of its files) is not valid.

    ``path`` is the offending file (or the directory), ``field`` the ``Sequence`` field it holds
    (dotted, e.g. ``"hand_init.betas"``; ``"manifest"`` for the manifest itself, ``"mesh"`` for
    the object mesh). The message names both.
    """

    def __init__(self, path: str | Path, field: str, detail: str):
        self.path = Path(path)
        self.field = field
        self.detail = detail
        super().__init__(f"{self.path}: field '{field}': {detail}")

    def __reduce__(self):  # keep pickling (e.g. across processes) working with 3 arguments
        return (type(self), (self.path, self.field, self.detail))


class MissingFileError(SequenceFormatError):
    """A file the manifest requires (or the manifest itself) does not exist."""


class ManifestError(SequenceFormatError):
    """``manifest.json`` is not valid JSON or lacks / mistypes a key."""


class VersionError(SequenceFormatError):
    """The manifest's ``format_version`` is not one this library reads."""


class ShapeError(SequenceFormatError):
    """An array's shape (other than its frame axis) or dtype differs from what the format says."""


class FrameCountError(SequenceFormatError):
    """An array's frame axis disagrees with the manifest's ``num_frames`` (and thus with the
    other arrays)."""


class NonFiniteError(SequenceFormatError):
    """NaN or inf where a number is required (e.g. a keypoint whose confidence is > 0)."""


class GeometryError(SequenceFormatError):
    """Numbers that are finite but not what they stand for: a pose whose rotation block is not
    a proper rotation (or whose last row is not ``0 0 0 1``), or intrinsics with a non-positive
    focal length."""


class EmptyMaskError(SequenceFormatError):
    """A mask is empty in every real frame: nothing to track (see ``load_sequence``)."""


class MeshError(SequenceFormatError):
    """The object mesh is unreadable, empty, or (when watertightness is required) not
    watertight."""


class NonWatertightMeshWarning(UserWarning):
    """The object mesh is not watertight: its signed distance field (L_interact, L_contact) is
    unreliable. A warning by default because real scanned meshes often have small holes."""
