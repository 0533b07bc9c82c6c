"""EgoHandICL: in-context refinement of coarse MANO estimates (ICLR 2026, arXiv 2601.19850).

A query frame's coarse MANO estimate (e.g. WiLoR's) is refined by reading it beside a
retrieved template whose coarse and ground-truth MANO are both known:

- retrieval (:func:`retrieve_template`, :func:`retrieve_for`): same hand type, then nearest
  text embedding (:func:`embed_texts` is a built-in deterministic embedder);
- tokenizer + masked transformer (:class:`EgoHandIcl`, Flax linen): image, MANO and text tokens
  fused into ``T_tpl_in, T_tpl_tar, T_qry_in, T_qry_tar``; target tokens randomly masked in
  training (:func:`sample_target_masks`), the query target fully masked at inference
  (:func:`refine`);
- losses (:func:`icl_loss`): MANO parameters, vertices, PointNet perceptual term, keypoints;
- training (:func:`train_icl`: AdamW + cosine, orbax checkpoints, exact resume) and evaluation
  (:func:`evaluate_icl`: P-MPJPE, P-MPVPE, F@5, F@15, MRRPE, and EgoExo4D's MPJPE and joint
  F@10 / F@15, :mod:`hoijax.icl._metrics`);
- converters from ARCTIC-style and EgoExo4D-style egocentric annotations
  (:func:`arctic_to_icl`, :func:`egoexo4d_to_icl`, layouts in ``_convert.py``);
- synthetic data where the context matters (:func:`make_synthetic_icl`).

The parameter layout shared by inputs and outputs is documented in ``_params.py``.
"""

from hoijax.icl._convert import (
    EGOEXO4D_JOINTS,
    EgocentricInputs,
    arctic_to_icl,
    egoexo4d_to_icl,
    load_egocentric_inputs,
    read_arctic_sequence,
    read_egoexo4d_take,
    world_mano_to_camera,
)
from hoijax.icl._data import (
    IclData,
    IclDataError,
    all_joints_valid,
    batch_indices,
    concat_icl_data,
    epoch_permutation,
    gather_examples,
    hand_types,
    load_icl_data,
    retrieve_for,
    save_icl_data,
    validate_icl_data,
)
from hoijax.icl._evaluate import (
    evaluate_icl,
    hand_metrics_arrays,
    keypoint_metrics_arrays,
    predict_icl,
    summarize_metrics,
)
from hoijax.icl._metrics import (
    JOINT_FSCORE_THRESHOLDS_M,
    egoexo_mpjpe_mm,
    joint_fscores,
    joints_pa_mpjpe_mm,
)
from hoijax.icl._losses import PERCEPTUAL_NUM_POINTS, IclLossWeights, icl_loss
from hoijax.icl._model import (
    EgoHandIcl,
    IclConfig,
    IclExample,
    IclTokenizer,
    IclTokens,
    ManoEncoder,
    apply_icl,
    example_shapes,
    inference_masks,
    init_icl_params,
    refine,
    sample_target_masks,
    template_relevance,
    tokenize,
    vit_image_tokens,
)
from hoijax.icl._params import (
    BETAS,
    BOTH,
    GLOBAL_ORIENT,
    HAND_POSE,
    HAND_TYPES,
    LEFT,
    NONE,
    NUM_HAND_PARAMS,
    PARAM_GROUPS,
    RIGHT,
    TRANSL,
    TWO_HANDS,
    from_network_units,
    group_masks,
    hand_models,
    hand_type_id,
    hands_forward,
    hands_forward_batch,
    join_hand_params,
    mirror_hand_params,
    split_hand_params,
    to_network_units,
)
from hoijax.icl._pointnet import (
    DEFAULT_POINTNET_FEATURES,
    PointNet,
    init_pointnet,
    normalize_cloud,
    perceptual_3d_loss,
    pointnet_features,
)
from hoijax.icl._retrieval import (
    Retrieval,
    cosine_similarity,
    retrieve_template,
    retrieve_templates,
)
from hoijax.icl._synthetic import SyntheticIclConfig, make_synthetic_icl, split_by_scene
from hoijax.icl._text import DEFAULT_TEXT_DIM, embed_texts, hashed_text_embedding
from hoijax.icl._train import (
    GATE_PARAMS,
    TrainConfig,
    TrainResult,
    batch_loss,
    calibrate_gate,
    make_optimizer,
    restore_checkpoint,
    save_run_meta,
    train_icl,
)

__all__ = [
    "EGOEXO4D_JOINTS", "GATE_PARAMS", "JOINT_FSCORE_THRESHOLDS_M", "EgocentricInputs",
    "all_joints_valid",
    "arctic_to_icl", "egoexo4d_to_icl", "egoexo_mpjpe_mm", "joint_fscores",
    "joints_pa_mpjpe_mm", "keypoint_metrics_arrays", "load_egocentric_inputs",
    "read_arctic_sequence", "read_egoexo4d_take", "world_mano_to_camera",
    "BETAS", "BOTH", "DEFAULT_POINTNET_FEATURES", "DEFAULT_TEXT_DIM", "GLOBAL_ORIENT",
    "HAND_POSE", "HAND_TYPES", "LEFT", "NONE", "NUM_HAND_PARAMS", "PARAM_GROUPS", "PERCEPTUAL_NUM_POINTS",
    "RIGHT", "TRANSL", "TWO_HANDS", "EgoHandIcl", "IclConfig", "IclData", "IclDataError",
    "IclExample", "IclLossWeights", "IclTokenizer", "IclTokens", "ManoEncoder", "PointNet",
    "Retrieval", "SyntheticIclConfig", "TrainConfig", "TrainResult", "apply_icl",
    "batch_indices", "batch_loss", "calibrate_gate", "concat_icl_data", "cosine_similarity",
    "embed_texts",
    "epoch_permutation", "evaluate_icl", "example_shapes", "from_network_units",
    "gather_examples", "group_masks", "hand_metrics_arrays", "hand_models", "hand_type_id", "hand_types",
    "hands_forward", "hands_forward_batch", "hashed_text_embedding", "icl_loss",
    "inference_masks", "init_icl_params", "init_pointnet", "join_hand_params",
    "load_icl_data", "make_optimizer", "make_synthetic_icl", "mirror_hand_params",
    "normalize_cloud", "perceptual_3d_loss", "pointnet_features", "predict_icl", "refine",
    "restore_checkpoint", "retrieve_for", "retrieve_template", "retrieve_templates",
    "sample_target_masks", "save_icl_data", "save_run_meta", "split_by_scene",
    "split_hand_params", "summarize_metrics", "template_relevance", "to_network_units",
    "tokenize",
    "train_icl", "validate_icl_data", "vit_image_tokens",
]
