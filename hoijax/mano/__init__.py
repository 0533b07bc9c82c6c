"""The MANO hand model: loading (chumpy-free), a synthetic MANO-format hand, and the forward pass.

Typical use::

    from hoijax import mano
    model = mano.synthetic_mano("right")          # or mano.load_mano("MANO_RIGHT.pkl")
    out = mano.forward(model, global_orient, hand_pose, betas, transl)
    kp = out.keypoints(tips="smplx", order="openpose")   # (21, 3)
"""

from hoijax.mano._forward import (
    OPENPOSE_FROM_MANO,
    TIP_VERTEX_IDS,
    JointOrder,
    ManoOutput,
    ManoShaped,
    PoseSpace,
    TipConvention,
    JointFrames,
    articulation,
    forward,
    forward_batch,
    joint_frames,
    keypoints21,
    skin,
    with_shape,
)
from hoijax.mano._io import (
    ManoFileError,
    load_mano,
    model_to_arrays,
    read_official_pickle,
    save_mano_npz,
)
from hoijax.mano._model import NUM_JOINTS, NUM_POSE_COEFFS, ManoModel, Side
from hoijax.mano._synthetic import (
    NUM_FACES,
    NUM_VERTS,
    synthetic_mano,
    synthetic_mano_arrays,
    write_synthetic_mano,
)

__all__ = [
    "NUM_FACES", "NUM_JOINTS", "NUM_POSE_COEFFS", "NUM_VERTS", "OPENPOSE_FROM_MANO",
    "TIP_VERTEX_IDS", "JointFrames", "JointOrder", "ManoFileError", "ManoModel", "ManoOutput",
    "ManoShaped", "PoseSpace", "Side", "TipConvention", "articulation", "forward",
    "forward_batch", "joint_frames", "keypoints21", "load_mano", "model_to_arrays",
    "read_official_pickle", "save_mano_npz", "skin", "synthetic_mano", "synthetic_mano_arrays",
    "with_shape", "write_synthetic_mano",
]
