"""Hand-object sequences: the in-memory pytree, the on-disk format, the synthetic benchmark
generator and converters from public datasets (HO3D-v3, DexYCB)."""

from hoijax.data._batch import load_batch, stack_sequences
from hoijax.data._errors import (
    EmptyMaskError,
    FrameCountError,
    GeometryError,
    ManifestError,
    MeshError,
    MissingFileError,
    NonFiniteError,
    NonWatertightMeshWarning,
    SequenceFormatError,
    ShapeError,
    VersionError,
)
from hoijax.data._objects import (
    ALL_OBJECT_KINDS,
    EXTRA_OBJECT_KINDS,
    OBJECT_KINDS,
    ObjectKind,
    make_object_trimesh,
    object_mesh_from_trimesh,
    vertex_features,
)
from hoijax.data._textured import TexturedMesh, read_textured_mesh, transfer_appearance
from hoijax.data._dexycb import convert_dexycb, dexycb_annotated_frames, load_dexycb
from hoijax.data._ho3d import Converted, convert_ho3d, load_ho3d
from hoijax.data._inputs import (
    ORACLE_INPUTS,
    MaskInputs,
    SparseMaskWarning,
    parse_oracle,
    read_detections,
    read_init_pose,
    read_masks,
)
from hoijax.data._protocol import (
    AGILE_DEXYCB,
    AGILE_HO3D,
    AGILE_MAX_FRAMES,
    AGILE_STRIDE,
    ProtocolEntry,
    agile_protocol,
    input_files,
    load_protocol_sequence,
    protocol_frames,
)
from hoijax.data._recording import load_recording, read_intrinsics_txt
from hoijax.data._format import (
    load_object_mesh,
    load_sequence,
    load_trimesh,
    read_manifest,
    save_sequence,
)
from hoijax.data._synthetic import (
    OcclusionLevel,
    SyntheticConfig,
    default_benchmark_configs,
    tracking_benchmark_configs,
    generate_sequence,
    motion_summary,
    write_benchmark,
)
from hoijax.data._benchmark import (
    DEV_SEED,
    HELDOUT_SEED,
    V2_SIZE,
    benchmark_v2_configs,
    split_seed,
)
from hoijax.data._sequence import (
    FORMAT_VERSION,
    GroundTruth,
    HandParams,
    ObjectMesh,
    Sequence,
    Side,
)

__all__ = [
    "ALL_OBJECT_KINDS", "DEV_SEED", "EXTRA_OBJECT_KINDS", "HELDOUT_SEED", "V2_SIZE",
    "benchmark_v2_configs", "motion_summary", "split_seed",
    "AGILE_DEXYCB", "AGILE_HO3D", "AGILE_MAX_FRAMES", "AGILE_STRIDE", "ProtocolEntry",
    "agile_protocol", "dexycb_annotated_frames", "input_files", "load_protocol_sequence",
    "protocol_frames", "load_recording", "read_intrinsics_txt",
    "Converted", "EmptyMaskError", "FORMAT_VERSION", "FrameCountError", "GeometryError",
    "GroundTruth", "HandParams", "ManifestError", "MaskInputs", "MeshError", "MissingFileError",
    "NonFiniteError", "NonWatertightMeshWarning", "OBJECT_KINDS", "ORACLE_INPUTS", "ObjectKind",
    "ObjectMesh", "OcclusionLevel", "Sequence", "SequenceFormatError", "ShapeError", "Side",
    "SparseMaskWarning", "SyntheticConfig", "TexturedMesh", "VersionError",
    "convert_dexycb", "convert_ho3d",
    "default_benchmark_configs", "generate_sequence", "load_batch", "load_dexycb", "load_ho3d",
    "load_object_mesh", "load_trimesh", "load_sequence", "make_object_trimesh", "object_mesh_from_trimesh",
    "parse_oracle", "read_detections", "read_init_pose", "read_manifest", "read_masks",
    "read_textured_mesh", "transfer_appearance", "save_sequence", "stack_sequences", "tracking_benchmark_configs",
    "vertex_features", "write_benchmark",
]
