"""Hand-object sequences: the in-memory pytree, the on-disk format, the synthetic benchmark
generator and converters from public datasets (HO3D-v3, DexYCB)."""

from hoijax.data._sequence import (
    FORMAT_VERSION,
    GroundTruth,
    HandParams,
    ObjectMesh,
    Sequence,
    Side,
)

__all__ = ["FORMAT_VERSION", "GroundTruth", "HandParams", "ObjectMesh", "Sequence", "Side"]
