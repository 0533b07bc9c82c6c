"""TIGeR: template-free hand-object reconstruction by vision-guided refinement of a shape prior
(TIGeR, Text-Instructed Generation and Refinement, §III-B).

The paper's first stage (caption → text-to-image → Point-E) is external: hoijax takes any prior
point cloud ``V̄`` (a generated prior, a retrieved template, a unit sphere) and refines it:

1. data (:class:`TigerData`, the ``.npz`` layout below, :func:`make_synthetic_tiger`): an RGB
   crop and its K, the prior, and for training the ground-truth object points ``V``, the amodal
   mask, the 21 hand keypoints and the object centre;
2. the auxiliary transform A (similarity ICP) and pseudo-mapping ``J(i)`` (Eq. 1,
   :func:`pseudo_mapping`), training only;
3. the network (:class:`TigerNet`): CNN shape encoder, PointNet++ geometric encoder, two 2D-3D
   collaborative-attention blocks, U-Net decoder regressing one xyz per prior point, hand-uvd
   and object-centre heatmap heads (soft-argmax, unprojection by K); widths in
   :class:`TigerConfig`;
4. losses (:func:`tiger_loss`, Eq. 2–7): L_rec, L_mask, L_ph, L_po, λ_weight·L_weight (heatmap
   cross-entropy), λ_proj·L_proj (crop-normalised units × 10⁴, see :mod:`._losses`);
5. training (:func:`train_tiger`: Adam with a cosine decay per phase, then the paper's
   L_rec-only phase with the shape and hand encoders frozen; orbax checkpoints with exact
   resume);
6. the hand: MANO fitted to the keypoints (:func:`fit_mano_to_keypoints`);
7. evaluation (:func:`evaluate_tiger`): CD_o, FS_o@5/10 (camera frame and centred), CD_h,
   FS_h@1/5, and the occlusion-rate bins (:func:`occlusion_bins`, :func:`plot_occlusion_bins`).

``.npz`` layout of :func:`save_tiger_data` / :func:`load_tiger_data` (N examples, S crop side,
P prior points, Q ground-truth points; metres, camera frame unless said):

- ``rgb`` (N, S, S, 3) uint8 crop; ``K`` (N, 3, 3) float32 crop intrinsics, pixels;
- ``prior_obj`` (N, P, 3) the prior, object-centred, in its own canonical orientation;
- ``points_obj`` (N, Q, 3) ground-truth points centred on ``center_cam`` (N, 3), camera axes;
- ``hand_joints`` (N, 21, 3) OpenPose order; ``hand_verts`` (N, 778, 3);
- ``amodal_mask``, ``visible_mask`` (N, S, S) bool;
- optional ``mapping`` (N, Q) int32 J(i) and ``prior_source`` (N,) int32 (0 sphere, 1 instance,
  2 noisy GT, -1 unknown).
"""

from hoijax.tiger._data import (
    PRIOR_SOURCES,
    TigerData,
    TigerDataError,
    concat_tiger_data,
    load_tiger_data,
    noisy_prior,
    occlusion_rate,
    pseudo_mapping,
    sample_mesh_surface,
    save_tiger_data,
    sphere_prior,
    validate_tiger_data,
    with_pseudo_mapping,
)
from hoijax.tiger._dexycb import (
    convert_dexycb_tiger,
    crop_image,
    crop_intrinsics,
    crop_window,
    load_dexycb_tiger,
    prior_file,
    read_prior,
)
from hoijax.tiger._evaluate import (
    HAND_THRESHOLDS_M,
    OBJECT_THRESHOLDS_M,
    binned,
    evaluate_tiger,
    occlusion_bins,
    plot_occlusion_bins,
    predict_tiger,
    score_hands,
    score_objects,
    summarize,
)
from hoijax.tiger._hand import fit_mano_to_keypoints
from hoijax.tiger._obman import (
    OBMAN_CAM_ROTATION,
    OBMAN_K,
    convert_obman_tiger,
    load_obman_tiger,
)
from hoijax.tiger._losses import (
    TigerLossWeights,
    TigerTarget,
    assembled_rec_loss,
    keypoint_loss,
    mask_loss,
    proj_loss,
    rec_loss,
    tiger_loss,
    weight_loss,
)
from hoijax.tiger._model import (
    NUM_HAND_KEYPOINTS,
    PRIOR_UNIT_M,
    CollaborativeAttention,
    TigerConfig,
    TigerNet,
    TigerOutput,
    apply_tiger,
    cell_centers_px,
    downsample_image,
    init_tiger_params,
)
from hoijax.tiger._pointnet2 import (
    FeaturePropagation,
    SetAbstraction,
    ball_query,
    farthest_point_sample,
    three_nn_interpolate,
)
from hoijax.tiger._synthetic import SyntheticTigerConfig, make_synthetic_tiger
from hoijax.tiger._train import (
    FROZEN_IN_PHASE2,
    TigerBatchData,
    TigerTrainConfig,
    TigerTrainResult,
    batch_loss,
    restore_tiger_checkpoint,
    save_tiger_run_meta,
    train_tiger,
)

__all__ = [
    "FROZEN_IN_PHASE2", "HAND_THRESHOLDS_M", "NUM_HAND_KEYPOINTS", "OBJECT_THRESHOLDS_M",
    "OBMAN_CAM_ROTATION", "OBMAN_K", "PRIOR_SOURCES", "PRIOR_UNIT_M", "CollaborativeAttention",
    "FeaturePropagation", "SetAbstraction", "SyntheticTigerConfig", "TigerBatchData",
    "TigerConfig", "TigerData", "TigerDataError", "TigerLossWeights", "TigerNet", "TigerOutput",
    "TigerTarget", "TigerTrainConfig", "TigerTrainResult", "apply_tiger", "assembled_rec_loss",
    "ball_query", "batch_loss", "binned", "cell_centers_px", "concat_tiger_data",
    "convert_dexycb_tiger", "convert_obman_tiger", "crop_image", "crop_intrinsics",
    "crop_window", "downsample_image", "evaluate_tiger", "farthest_point_sample",
    "fit_mano_to_keypoints", "init_tiger_params", "keypoint_loss", "load_dexycb_tiger",
    "load_obman_tiger", "load_tiger_data", "make_synthetic_tiger", "mask_loss", "noisy_prior",
    "occlusion_bins", "occlusion_rate", "plot_occlusion_bins", "predict_tiger", "prior_file",
    "proj_loss", "pseudo_mapping", "read_prior", "rec_loss", "restore_tiger_checkpoint",
    "sample_mesh_surface", "save_tiger_data", "save_tiger_run_meta", "score_hands",
    "score_objects", "sphere_prior", "summarize", "three_nn_interpolate", "tiger_loss",
    "train_tiger", "validate_tiger_data", "weight_loss", "with_pseudo_mapping",
]
