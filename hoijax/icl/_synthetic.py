"""Synthetic EgoHandICL data where context genuinely helps, built on the (synthetic) MANO model.

The data are organized in **scenes** (a recording: one person, one object, one place, one
camera). Each scene gets a text description (action, object, place, camera, and the person's
look: sleeve and accessory, as a VLM would describe the visible forearm), and every frame of the
scene a description made of the scene's words plus a few frame words, embedded by the built-in
hashed n-gram embedder.

- Ground truth: per hand, articulation = ``hands_mean`` + a low-dimensional grasp (coefficients
  of the model's first 6 PCA components: flexion synergy, spread, thumb, index, ...) drawn
  around the object's typical grasp, plus small full-rank noise; betas per scene (the person);
  orientations around a scene base; translations around a right / left hand position at
  0.35–0.6 m depth.
- Coarse "detector" estimates with **structured** errors: each scene has a systematic error
  vector (grasp-coefficient bias, i.e. finger curl errors; relative depth bias per hand;
  orientation bias; shape bias), part of it determined by the scene's words (object and camera
  phrase, which the query's own text also reveals), optionally part of it shared by the scenes
  of a recording setup (``setup_error_fraction``: a rig and detector deployment whose bias no
  text or image shows), and the rest specific to the scene. Then
  per-frame noise, shrinkage of the pose towards the mean (a regression-to-the-mean detector),
  and in scenes described as "hands crossed", left/right confusions in two-hand frames (the
  two slots swapped and each read by the other hand's model).
- Image features: per patch, a fixed random nonlinear projection of the hand as the image
  shows it, a scene appearance vector and noise (consistent per hand, informative but noisy).
  With ``view_ambiguity = 1`` (default) the image shows the ground truth *plus the scene's
  systematic error*: the detector's bias is a property of the viewpoint and grasp that the image
  alone cannot resolve (an occluded finger looks the same curled or not), so only a template
  whose ground truth is known reveals it; per-frame noise and the shrinkage stay visible.
  ``view_ambiguity = 0`` shows the ground truth itself (then a refiner can learn most of the
  correction from the query alone, and the template is worth little).

So for a held-out scene, a template retrieved from the same scene (same hand type, nearest
description) shows, through its (coarse, ground truth) pair, the scene's systematic error, which
neither the query's coarse input nor its own text determines. ``SyntheticIclConfig`` sets the
sizes; everything is NumPy and deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from hoijax import mano
from hoijax.icl._data import IclData, all_joints_valid
from hoijax.icl._params import (
    NUM_HAND_PARAMS,
    TWO_HANDS,
    hands_forward_batch,
    mirror_hand_params,
    to_network_units,
)
from hoijax.icl._text import embed_texts

_ACTIONS = ("holding", "twisting", "lifting", "pouring from", "cutting with", "typing on",
            "opening", "wiping")
_COLORS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple")
_OBJECTS = ("mug", "kettle", "knife", "phone", "bottle", "box", "scissors", "drill", "bowl",
            "pen", "book", "plate")
_PLACES = ("kitchen counter", "office desk", "workbench", "dining table", "sofa",
           "bathroom sink", "garage shelf", "lab bench")
_CAMERAS = ("in dim light", "under bright light", "with motion blur", "seen from above",
            "close to the camera", "far from the camera")
_FRAME_WORDS = ("clear view", "slight occlusion", "fingers partly hidden", "palm covered",
                "moving fast", "still")
_SLEEVES = ("red sleeve", "grey sleeve", "striped sleeve", "bare forearm", "denim sleeve",
            "green sleeve", "white sleeve", "black sleeve")
_ACCESSORIES = ("a watch", "a ring", "a bracelet", "no jewellery", "a glove", "painted nails")
_HAND_WORDS = {0: "left hand", 1: "right hand", 2: "both hands", 3: "no hands"}

_NUM_GRASP = 6
_GRASP_SPREAD = np.array([1.2, 0.6, 0.7, 0.7, 0.5, 0.5])
"""Per-object typical grasp coefficients (std over objects)."""
_GRASP_FRAME = np.array([0.6, 0.3, 0.4, 0.4, 0.3, 0.3])
"""Frame-to-frame variation of the grasp coefficients within a scene."""
_ERR_GRASP = np.array([1.0, 0.6, 0.8, 0.8, 0.6, 0.6])
"""Scale of the systematic grasp-coefficient (finger curl) error."""
_ERR_DEPTH = 0.06
"""Scale of the systematic relative depth error (fraction of the distance)."""
_ERR_ORIENT = 0.12
"""Scale of the systematic orientation error, radians."""
_ERR_BETAS = 0.6
"""Scale of the systematic shape error on betas 0..2."""


@dataclasses.dataclass(frozen=True)
class SyntheticIclConfig:
    """Sizes and difficulty of the synthetic EgoHandICL data."""

    num_scenes: int = 600
    """Scenes (recordings); split train / test by scene."""
    frames_per_scene: int = 6
    """Frames per scene."""
    sides: tuple[mano.Side, ...] = TWO_HANDS
    """Hand slots (two hands by default; ``("right",)`` for single-hand data)."""
    num_patches: int = 16
    """Image tokens per frame."""
    feature_dim: int = 32
    """Channels of an image token."""
    text_dim: int = 64
    """Text-embedding size (hashed n-grams)."""
    feature_noise: float = 0.5
    """Std of the image-feature noise (the signal part is O(1))."""
    view_ambiguity: float = 1.0
    """Share of the scene's systematic error that the image features show as if it were the
    truth (1: the bias is invisible in the image; 0: features of the ground truth)."""
    scene_error_scale: float = 1.0
    """Multiplies every systematic (per-scene) error."""
    word_error_fraction: float = 0.4
    """Share of the systematic error explained by the scene's words (object, camera)."""
    scenes_per_setup: int = 0
    """Scenes per recording setup (a camera rig and detector deployment: consecutive scenes,
    so that a split by scene holds out whole setups when the test scenes are a multiple of
    it); 0: one setup for the whole draw."""
    setup_error_fraction: float = 0.0
    """Share of the systematic error shared by all scenes of a setup and shown by no text or
    image (0: none, every scene's error is its own and its words'). With a setup share, a
    template from another scene of the query's setup reveals that part of the query's error."""
    frame_noise_scale: float = 1.0
    """Multiplies the per-frame detector noise."""
    crossed_scene_prob: float = 0.3
    """Fraction of scenes described as "hands crossed"."""
    confusion_prob: float = 0.3
    """Probability of a left/right swap in a two-hand frame of a crossed scene."""
    none_prob: float = 0.03
    """Fraction of frames without hands."""
    dominant_type_prob: float = 0.85
    """Two hands: probability that a frame has its scene's dominant hand type."""
    seed: int = 0
    """Seeds the data."""
    world_seed: int = 1234
    """Seeds what stays fixed across datasets: the feature projection and the per-word
    grasps and errors (keep it when generating separate train and test sets)."""


def _world(cfg: SyntheticIclConfig) -> dict:
    rng = np.random.default_rng(cfg.world_seed)
    h = len(cfg.sides)
    in_dim = h * NUM_HAND_PARAMS + h
    err_dim = _NUM_GRASP + 2 + 3 + 3
    return {
        "proj": rng.standard_normal((cfg.num_patches, in_dim, cfg.feature_dim)) / np.sqrt(in_dim),
        "object_grasp": rng.standard_normal((len(_OBJECTS), _NUM_GRASP)) * _GRASP_SPREAD,
        "object_error": rng.standard_normal((len(_OBJECTS), err_dim)),
        "camera_error": rng.standard_normal((len(_CAMERAS), err_dim)),
    }


def _scale_error(e: np.ndarray) -> dict:
    return {"grasp": e[..., :_NUM_GRASP] * _ERR_GRASP,
            "depth": e[..., _NUM_GRASP:_NUM_GRASP + 2] * _ERR_DEPTH,
            "orient": e[..., _NUM_GRASP + 2:_NUM_GRASP + 5] * _ERR_ORIENT,
            "betas": e[..., _NUM_GRASP + 5:] * _ERR_BETAS}


def make_synthetic_icl(cfg: SyntheticIclConfig = SyntheticIclConfig()) -> tuple[IclData, dict]:
    """Generate ``num_scenes × frames_per_scene`` frames.

    Returns the data and a metadata dict: ``scene_id`` (N,), ``description`` (N texts),
    ``crossed`` (N,) scene flag, ``confused`` (N,) frames whose coarse hands are swapped,
    ``scene_error`` (num_scenes, 14) the scenes' systematic error vectors, ``setup_id`` (N,)
    the recording setup of each frame.
    """
    rng = np.random.default_rng(cfg.seed)
    world = _world(cfg)
    sides = tuple(cfg.sides)
    h = len(sides)
    models = [mano.synthetic_mano(s) for s in sides]
    comps = [np.asarray(m.hands_components[:_NUM_GRASP]) for m in models]
    means = [np.asarray(m.hands_mean) for m in models]
    two = h == 2

    combos = list(itertools.product(range(len(_ACTIONS)), range(len(_COLORS)),
                                    range(len(_OBJECTS)), range(len(_PLACES)),
                                    range(len(_CAMERAS))))
    picks = rng.choice(len(combos), size=cfg.num_scenes, replace=False)
    n = cfg.num_scenes * cfg.frames_per_scene
    coarse = np.zeros((n, h, NUM_HAND_PARAMS))
    gt = np.zeros((n, h, NUM_HAND_PARAMS))
    seen = np.zeros((n, h, NUM_HAND_PARAMS))  # the hand as the image shows it
    presence = np.zeros((n, h), bool)
    scene_id = np.repeat(np.arange(cfg.num_scenes), cfg.frames_per_scene)
    crossed_frame = np.zeros(n, bool)
    confused = np.zeros(n, bool)
    descriptions: list[str] = []
    scene_errors = []
    setup_of_scene = (np.arange(cfg.num_scenes) // cfg.scenes_per_setup
                      if cfg.scenes_per_setup > 0 else np.zeros(cfg.num_scenes, np.int64))
    # Own stream: a draw without a setup share is the same as before the setups existed.
    setup_error = np.random.default_rng([cfg.seed, 7]).standard_normal(
        (int(setup_of_scene.max()) + 1, 14))
    scene_share = cfg.word_error_fraction ** 2 + cfg.setup_error_fraction ** 2
    if scene_share > 1.0:
        raise ValueError(f"word_error_fraction² + setup_error_fraction² = {scene_share:.3f} > 1")
    appearance = rng.standard_normal((cfg.num_scenes, cfg.feature_dim)) * 0.5

    base_xy = {"right": np.array([0.08, 0.02]), "left": np.array([-0.08, 0.02])}
    for si, pick in enumerate(picks):
        a, col, obj, place, cam = combos[pick]
        crossed = two and rng.uniform() < cfg.crossed_scene_prob
        e = (cfg.word_error_fraction * (world["object_error"][obj] + world["camera_error"][cam])
             / np.sqrt(2.0)
             + cfg.setup_error_fraction * setup_error[setup_of_scene[si]]
             + np.sqrt(1.0 - scene_share) * rng.standard_normal(14))
        e = e * cfg.scene_error_scale
        scene_errors.append(e)
        err = _scale_error(e)
        betas_person = rng.standard_normal(10) * 0.7
        orient_base = rng.standard_normal(3) * 0.8
        offset = rng.standard_normal(3) * np.array([0.03, 0.03, 0.04])
        depth = rng.uniform(0.35, 0.6)
        if two:  # each scene has a dominant hand type (a recording of one activity)
            dominant = rng.choice(3, p=[0.2, 0.25, 0.55])
            type_p = np.full(4, (1.0 - cfg.dominant_type_prob - cfg.none_prob) / 2)
            type_p[dominant] = cfg.dominant_type_prob
            type_p[3] = cfg.none_prob
        else:
            type_p = np.array([0.0, 1.0 - cfg.none_prob, 0.0, cfg.none_prob])
        look = (f"{_SLEEVES[rng.integers(len(_SLEEVES))]}, "
                f"{_ACCESSORIES[rng.integers(len(_ACCESSORIES))]}")
        scene_text = (f"{_ACTIONS[a]} the {_COLORS[col]} {_OBJECTS[obj]} on the {_PLACES[place]}, "
                      f"{_CAMERAS[cam]}, {look}" + (", hands crossed" if crossed else ""))
        for fi in range(cfg.frames_per_scene):
            i = si * cfg.frames_per_scene + fi
            t = rng.choice(4, p=type_p)
            want = {"right": t in (1, 2), "left": t in (0, 2)}
            for k, side in enumerate(sides):
                if not want[side]:
                    continue
                presence[i, k] = True
                c = world["object_grasp"][obj] + rng.standard_normal(_NUM_GRASP) * _GRASP_FRAME
                fine = rng.standard_normal(45) * 0.04
                pose = means[k] + c @ comps[k] + fine
                orient = orient_base + rng.standard_normal(3) * 0.25
                xyz = np.array([*(base_xy[side] + offset[:2]), depth + offset[2]])
                transl = xyz + rng.standard_normal(3) * np.array([0.02, 0.02, 0.03])
                gt[i, k] = np.concatenate([orient, pose, betas_person, transl])

                fs = cfg.frame_noise_scale
                mean_c = world["object_grasp"][obj]
                c_hat = (c + err["grasp"] - 0.2 * (c - mean_c)
                         + rng.standard_normal(_NUM_GRASP) * 0.12 * fs)
                pose_hat = means[k] + c_hat @ comps[k] + 0.5 * fine + rng.standard_normal(45) * (
                    0.02 * fs)
                orient_hat = orient + err["orient"] + rng.standard_normal(3) * 0.03 * fs
                betas_hat = 0.7 * betas_person + rng.standard_normal(10) * 0.1 * fs
                betas_hat[:3] += err["betas"]
                depth_k = err["depth"][0 if side == "right" else 1]
                transl_hat = transl * (1.0 + depth_k) + rng.standard_normal(3) * 0.004 * fs
                coarse[i, k] = np.concatenate([orient_hat, pose_hat, betas_hat, transl_hat])
                bias = np.zeros(NUM_HAND_PARAMS)  # the systematic part of the detector's error
                bias[0:3] = err["orient"]
                bias[3:48] = err["grasp"] @ comps[k]
                bias[48:51] = err["betas"]
                bias[58:61] = transl * depth_k
                seen[i, k] = gt[i, k] + cfg.view_ambiguity * bias
            crossed_frame[i] = crossed
            if crossed and t == 2 and rng.uniform() < cfg.confusion_prob:
                confused[i] = True
                coarse[i] = np.asarray(mirror_hand_params(coarse[i, ::-1]))
            descriptions.append(f"{_HAND_WORDS[t]}: {scene_text}. "
                                f"{_FRAME_WORDS[rng.integers(len(_FRAME_WORDS))]}")

    # Image features: fixed random projection of the hand as seen + appearance + noise.
    z = np.concatenate([np.asarray(to_network_units(seen)).reshape(n, -1) * np.repeat(
        presence, NUM_HAND_PARAMS, axis=1), presence.astype(float)], axis=1)
    feats = np.tanh(np.einsum("ni,pic->npc", z, world["proj"]))
    feats = feats + appearance[scene_id][:, None, :] + rng.standard_normal(feats.shape) * (
        cfg.feature_noise)

    _, kp = hands_forward_batch(models, gt.astype(np.float32))
    data = IclData(
        image_features=feats.astype(np.float32),
        text_embedding=embed_texts(descriptions, cfg.text_dim),
        coarse=coarse.astype(np.float32),
        gt=gt.astype(np.float32),
        presence=presence,
        keypoints_gt=np.asarray(kp, np.float32) * presence[:, :, None, None],
        has_mano_gt=np.ones(n, bool),
        keypoints_valid=all_joints_valid(presence),
    )
    meta = {"scene_id": scene_id, "description": descriptions, "crossed": crossed_frame,
            "confused": confused, "scene_error": np.stack(scene_errors),
            "setup_id": setup_of_scene[scene_id]}
    return data, meta


def split_by_scene(data: IclData, meta: dict, num_test_scenes: int
                   ) -> tuple[IclData, IclData, dict, dict]:
    """Train / test split: the last ``num_test_scenes`` scenes are the test set."""
    cut = int(meta["scene_id"].max()) + 1 - num_test_scenes
    tr = np.flatnonzero(meta["scene_id"] < cut)
    te = np.flatnonzero(meta["scene_id"] >= cut)

    def sub(idx):
        return {k: ([v[i] for i in idx] if isinstance(v, list) else
                    (v if k == "scene_error" else v[idx])) for k, v in meta.items()}

    return data.take(tr), data.take(te), sub(tr), sub(te)
