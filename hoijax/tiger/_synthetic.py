"""TIGeR examples from hoijax's synthetic hand-object generator (:mod:`hoijax.data`).

Each scene is one :func:`hoijax.data.generate_sequence` run (a procedural object of one of the
five kinds, seeded size variation, grasped by the synthetic MANO hand, seen at a light, medium or
heavy occlusion level) with a few frames from the grasp onset on, moving fast enough that the
frames differ. Per frame: the 256² RGB render (it is already a crop centred on the object), K,
the visible object mask (z-buffer), the amodal mask (the object rasterised alone), object
surface points posed into the camera, the hand's keypoints and vertices. Each scene gets its
prior from one of :attr:`SyntheticTigerConfig.prior_sources` (cycled with the scene index), or
every source when ``all_priors`` (evaluation: the same frames once per prior).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from hoijax import data as hdata
from hoijax import metrics, render
from hoijax.tiger._data import (
    PRIOR_SOURCES,
    TigerData,
    concat_tiger_data,
    noisy_prior,
    sphere_prior,
)


@dataclasses.dataclass(frozen=True)
class SyntheticTigerConfig:
    """What :func:`make_synthetic_tiger` generates."""

    num_scenes: int = 200
    """Scenes (one object instance and grasp each)."""
    frames_per_scene: int = 3
    """Frames kept per scene (from the grasp onset on)."""
    seed: int = 0
    """Scene ``s`` uses generator seed ``seed · 100003 + s``; use disjoint seeds for splits."""
    num_points: int = 512
    """Prior points P and ground-truth points Q."""
    crop_px: int = 256
    """Crop side (the generator's image size)."""
    sphere_radius_m: float = 0.05
    """Radius of the sphere prior (a typical held object's half-size)."""
    speed: float = 8.0
    """Generator motion speed (8: about 12° between consecutive frames)."""
    prior_sources: tuple[str, ...] = PRIOR_SOURCES
    """Prior kinds cycled over the scenes (names from :data:`~hoijax.tiger.PRIOR_SOURCES`);
    e.g. ``("instance", "noisy_gt")`` trains only on priors that resemble the object, as the
    paper's generated priors do. ``all_priors`` evaluation ignores it."""

    def __post_init__(self):
        bad = [s for s in self.prior_sources if s not in PRIOR_SOURCES]
        if bad or not self.prior_sources:
            raise ValueError(f"prior_sources: names from {PRIOR_SOURCES}, got "
                             f"{self.prior_sources!r}")


def _bucket(x: int, smallest: int = 512) -> int:
    b = smallest
    while b < x:
        b *= 2
    return b


def _other_instance(kind, seed):
    # A few procedural seeds give non-watertight meshes (the generator refuses them): try on.
    for k in range(1, 20):
        try:
            return hdata.make_object_trimesh(kind, seed + 7919 * k)
        except RuntimeError:
            continue
    raise RuntimeError(f"no watertight {kind} instance near seed {seed}")


def _sample(mesh, n, seed):
    return np.asarray(metrics.sample_surface(jax.random.key(seed), np.asarray(mesh.vertices,
                                                                              np.float32),
                                             np.asarray(mesh.faces, np.int32), num_points=n))


def _scene(cfg: SyntheticTigerConfig, s: int, sources: tuple[int, ...]) -> list[TigerData]:
    seed = cfg.seed * 100003 + s
    rng = np.random.default_rng(seed)
    kind = hdata.OBJECT_KINDS[s % len(hdata.OBJECT_KINDS)]
    occ = ("light", "medium", "heavy")[rng.integers(3)]
    seq = hdata.generate_sequence(hdata.SyntheticConfig(
        seed=seed, num_frames=cfg.frames_per_scene, onset_fraction=0.0, speed=cfg.speed,
        image_size=(cfg.crop_px, cfg.crop_px), object_kind=kind, occlusion=occ,
        with_rgb=True, with_depth=False, with_features=False, object_init=False))
    verts = np.asarray(seq.mesh.vertices, np.float32)
    faces = np.asarray(seq.mesh.faces, np.int32)
    # Pad to power-of-two buckets (extra vertices repeat vertex 0, extra faces are the
    # zero-area (0, 0, 0)) so one compiled rasterizer serves many objects.
    nv, nf_ = _bucket(len(verts)), _bucket(len(faces))
    verts = np.concatenate([verts, np.repeat(verts[:1], nv - len(verts), 0)])
    faces = np.concatenate([faces, np.zeros((nf_ - len(faces), 3), np.int32)])
    canon = _sample(seq.mesh, cfg.num_points, seed)  # object frame, metres
    T = np.asarray(seq.gt.T_cam_obj, np.float64)
    K = np.asarray(seq.K, np.float32)
    settings = render.RasterSettings(height=cfg.crop_px, width=cfg.crop_px)
    amodal = []
    for f in range(cfg.frames_per_scene):
        v_cam = verts @ T[f, :3, :3].T.astype(np.float32) + T[f, :3, 3].astype(np.float32)
        r, settings = render.rasterize_checked(v_cam, faces, K, settings)
        amodal.append(np.asarray(r.mask))
    posed = np.einsum("fij,pj->fpi", T[:, :3, :3], canon) + T[:, None, :3, 3]
    center = posed.mean(1)
    nf = cfg.frames_per_scene
    base = dict(
        rgb=np.asarray(seq.rgb), K=np.repeat(K[None], nf, 0),
        points_obj=(posed - center[:, None]).astype(np.float32),
        center_cam=center.astype(np.float32),
        hand_joints=np.asarray(seq.gt.joints_cam, np.float32),
        hand_verts=np.asarray(seq.gt.verts_cam, np.float32),
        amodal_mask=np.stack(amodal).astype(bool), visible_mask=np.asarray(seq.object_mask))
    out = []
    for src in sources:
        name = PRIOR_SOURCES[src]
        if name == "sphere":
            prior = sphere_prior(cfg.num_points, cfg.sphere_radius_m)
        elif name == "instance":
            other = _other_instance(kind, seed)
            prior = _sample(other, cfg.num_points, seed + 1)
            prior = prior - prior.mean(0)
        else:
            prior = noisy_prior(_sample(seq.mesh, cfg.num_points, seed + 2), rng)
        out.append(TigerData(**base, prior_obj=np.repeat(prior[None], nf, 0),
                             prior_source=np.full(nf, src, np.int32)))
    return out


def scene_prior_sources(cfg: SyntheticTigerConfig, scene: int,
                        all_priors: bool = False) -> tuple[int, ...]:
    """Indices into :data:`PRIOR_SOURCES` of scene ``scene``'s examples: every source with
    ``all_priors``, else :attr:`SyntheticTigerConfig.prior_sources` cycled."""
    if all_priors:
        return tuple(range(len(PRIOR_SOURCES)))
    return (PRIOR_SOURCES.index(cfg.prior_sources[scene % len(cfg.prior_sources)]),)


def make_synthetic_tiger(cfg: SyntheticTigerConfig = SyntheticTigerConfig(), *,
                         all_priors: bool = False, progress: bool = False) -> TigerData:
    """Synthetic TIGeR examples (see the module docstring; the rare scene whose procedural
    mesh the generator refuses as non-watertight is skipped). With ``all_priors`` the examples
    are grouped by prior source: all sphere-prior examples, then instance, then noisy-GT."""
    from tqdm.auto import tqdm

    per_source: dict[int, list[TigerData]] = {i: [] for i in range(len(PRIOR_SOURCES))}
    in_order: list[TigerData] = []
    for s in tqdm(range(cfg.num_scenes), disable=not progress, desc="tiger-data"):
        sources = scene_prior_sources(cfg, s, all_priors)
        try:
            scene = _scene(cfg, s, sources)
        except RuntimeError:  # the generator refuses a non-watertight procedural mesh: skip
            continue
        for src, d in zip(sources, scene):
            per_source[src].append(d)
            in_order.append(d)
    if all_priors:
        return concat_tiger_data(*(d for src in sorted(per_source) for d in per_source[src]))
    return concat_tiger_data(*in_order)
