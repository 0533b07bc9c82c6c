"""``hoijax init-demo``: AGILE's metric hand initialization (§3.2) on its own, on a synthetic
sequence (``hoijax demo`` runs the whole tracker).

It generates a sequence of the synthetic MANO hand moving in front of a pinhole camera,
observes it the way AGILE's inputs would (noisy 2D keypoints with dropouts from a keypoint detector, a noisy depth
point cloud with clutter, a detector's MANO pose with unknown metric scale), then

1. recovers the hand scale by constrained, trimmed, point-to-plane ICP with the rotation fixed,
   per frame, and takes the median over frames;
2. recovers each frame's hand translation by closed-form PnP from the confidence-weighted
   keypoints;

all frames in one ``jit(vmap(...))``, and scores the result against the ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from hoijax import geometry, mano


@dataclasses.dataclass
class DemoConfig:
    """Settings of the synthetic metric-initialization demo."""

    out: Path = Path("results/init-demo")
    """Folder for summary.json, overlay.png and the .ply meshes."""
    frames: int = 48
    """Number of frames in the synthetic sequence."""
    seed: int = 0
    """Seed of the sequence, the noise and the detector errors."""
    image_size: int = 256
    """Square image side, pixels."""
    true_scale: float = 1.12
    """Metric scale of the observed hand relative to the model (the unknown to recover)."""
    keypoint_noise_px: float = 2.0
    """Standard deviation of the 2D keypoint detections, pixels."""
    keypoint_dropout: float = 0.1
    """Fraction of keypoints the detector misses (NaN, confidence 0)."""
    depth_noise_mm: float = 1.5
    """Standard deviation of the depth noise along the camera ray, millimetres."""
    outlier_fraction: float = 0.3
    """Fraction of depth points replaced by clutter around the hand."""
    detector_pose_noise_rad: float = 0.05
    """Per-joint axis-angle noise of the detector's articulation, radians."""
    depth_points: int = 600
    """Depth points per frame."""


# The hand faces the camera with the fingers up: MANO x → camera y, y → z, z → x.
_R_CAM_MANO = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _smooth_path(rng, frames: int, dim: int, keys: int, scale: float) -> np.ndarray:
    """Cosine interpolation between random key values: a smooth trajectory (frames, dim)."""
    key_vals = rng.normal(scale=scale, size=(keys, dim))
    s = np.linspace(0, keys - 1, frames)
    i = np.minimum(np.floor(s).astype(int), keys - 2)
    w = (1 - np.cos(np.pi * (s - i))) / 2
    return key_vals[i] * (1 - w[:, None]) + key_vals[i + 1] * w[:, None]


def make_sequence(cfg: DemoConfig, model: mano.ManoModel) -> dict[str, np.ndarray]:
    """Ground truth and observations of a synthetic hand sequence (NumPy arrays)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.frames
    f = 1.5 * cfg.image_size
    K = np.array([[f, 0, cfg.image_size / 2], [0, f, cfg.image_size / 2], [0, 0, 1.0]])

    betas = rng.normal(scale=0.8, size=10)
    pca = _smooth_path(rng, n, 6, keys=4, scale=1.2)
    wobble = _smooth_path(rng, n, 3, keys=3, scale=0.35)
    base = jaxlie.SO3.from_matrix(jnp.asarray(_R_CAM_MANO, jnp.float32))
    global_orient = np.stack([np.asarray((base @ jaxlie.SO3.exp(jnp.asarray(w, jnp.float32))).log())
                              for w in wobble])

    fwd = jax.jit(jax.vmap(lambda g, h, b: mano.forward(model, g, h, b, pose_space="pca")))
    hands = fwd(jnp.asarray(global_orient, jnp.float32), jnp.asarray(pca, jnp.float32),
                jnp.tile(jnp.asarray(betas, jnp.float32), (n, 1)))
    verts_mano = np.asarray(hands.vertices, np.float64)
    kp_mano = np.asarray(jax.vmap(lambda o: o.keypoints("smplx", "openpose"))(hands), np.float64)

    path = _smooth_path(rng, n, 3, keys=3, scale=1.0) * np.array([0.03, 0.03, 0.04])
    centre = verts_mano.mean(1) * cfg.true_scale
    transl = np.array([0.0, 0.0, 0.45]) + path - centre
    verts_cam = cfg.true_scale * verts_mano + transl[:, None]
    kp_cam = cfg.true_scale * kp_mano + transl[:, None]

    uv = np.asarray(geometry.project(jnp.asarray(K), jnp.asarray(kp_cam)))
    uv = uv + rng.normal(scale=cfg.keypoint_noise_px, size=uv.shape)
    conf = rng.uniform(0.6, 1.0, size=uv.shape[:2])
    missed = rng.random(uv.shape[:2]) < cfg.keypoint_dropout
    uv[missed] = np.nan
    conf[missed] = 0.0

    faces = np.asarray(model.faces)
    depth_pts = np.stack([_depth_points(rng, v, faces, cfg) for v in verts_cam])

    # A detector's MANO estimate: right articulation up to noise, no metric scale, no translation.
    det_pose = np.asarray(jax.vmap(lambda h: mano.articulation(model, h, pose_space="pca"))(
        jnp.asarray(pca, jnp.float32)))
    det_pose = det_pose + rng.normal(scale=cfg.detector_pose_noise_rad, size=det_pose.shape)
    det_betas = betas + rng.normal(scale=0.3, size=10)
    return {
        "K": K, "uv_px": uv, "confidence": conf, "depth_points": depth_pts,
        "det_global_orient": global_orient, "det_hand_aa": det_pose, "det_betas": det_betas,
        "gt_verts_cam": verts_cam, "gt_keypoints_cam": kp_cam, "gt_transl": transl,
        "gt_scale": np.float64(cfg.true_scale),
    }


def _depth_points(rng, verts_cam: np.ndarray, faces: np.ndarray, cfg: DemoConfig) -> np.ndarray:
    """Samples of the camera-facing surface with depth noise, plus clutter outliers."""
    tri = verts_cam[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    facing = np.einsum("fc,fc->f", normal, centre) < 0  # normal points towards the camera
    area = 0.5 * np.linalg.norm(normal, axis=1) * facing
    idx = rng.choice(len(faces), size=cfg.depth_points, p=area / area.sum())
    bary = rng.dirichlet(np.ones(3), size=cfg.depth_points)
    pts = np.einsum("nk,nkc->nc", bary, tri[idx])
    pts *= 1 + rng.normal(scale=cfg.depth_noise_mm * 1e-3, size=(len(pts), 1)) / pts[:, 2:3]
    n_out = int(round(cfg.outlier_fraction * len(pts)))
    lo, hi = verts_cam.min(0) - 0.05, verts_cam.max(0) + 0.05
    pts[:n_out] = rng.uniform(lo, hi, size=(n_out, 3))
    return pts


def fit_sequence(model: mano.ManoModel, seq: dict) -> dict:
    """Scale by ICP (median over frames) and per-frame translation by PnP, all frames at once."""

    def hand_in_mano_frame(g, aa, b):
        out = mano.forward(model, g, aa, b, flat_hand_mean=True)
        return out.vertices, out.keypoints("smplx", "openpose")

    def icp_one(verts, target):
        normals = geometry.vertex_normals(verts, model.faces)
        return geometry.constrained_icp(verts, target, jnp.eye(3), normals_model=normals,
                                        num_iters=30, trim_fraction=0.6)

    def fit(g, aa, b, targets, uv, conf, K):
        verts, kps = jax.vmap(hand_in_mano_frame, in_axes=(0, 0, None))(g, aa, b)
        icp = jax.vmap(icp_one)(verts, targets)
        scale = jnp.median(icp.scale[:, 0])
        pnp = jax.vmap(lambda k, u, w: geometry.translation_pnp(
            scale * k, u, K, w, num_refine_steps=2))(kps, uv, conf)
        return {
            "scale": scale, "icp_scale": icp.scale[:, 0], "icp_translation": icp.translation,
            "icp_inlier_fraction": icp.inlier_fraction, "translation": pnp.translation,
            "pnp_valid": pnp.valid, "verts_cam": scale * verts + pnp.translation[:, None],
            "keypoints_cam": scale * kps + pnp.translation[:, None],
        }

    args = tuple(jnp.asarray(seq[k], jnp.float32) for k in (
        "det_global_orient", "det_hand_aa", "det_betas", "depth_points", "uv_px", "confidence",
        "K"))
    t0 = time.perf_counter()
    compiled = jax.jit(fit).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    t0 = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    out = {k: np.asarray(v, np.float64) for k, v in result.items()}
    out["timing"] = {"compile_s": compile_s, "run_s": run_s,
                     "run_ms_per_frame": 1e3 * run_s / len(seq["uv_px"])}
    return out


def score(seq: dict, fit: dict) -> dict:
    """Errors against the ground truth (mm, px, %)."""
    K = seq["K"]
    gt_kp, est_kp = seq["gt_keypoints_cam"], fit["keypoints_cam"]
    root_err = np.linalg.norm(est_kp[:, 0] - gt_kp[:, 0], axis=-1) * 1e3
    mpjpe = np.linalg.norm(est_kp - gt_kp, axis=-1).mean(1) * 1e3
    uv_est = np.asarray(geometry.project(jnp.asarray(K), jnp.asarray(est_kp)))
    uv_gt = np.asarray(geometry.project(jnp.asarray(K), jnp.asarray(gt_kp)))
    return {
        "scale_true": float(seq["gt_scale"]),
        "scale_estimated": float(fit["scale"]),
        "scale_error_percent": float(100 * abs(fit["scale"] / seq["gt_scale"] - 1)),
        "root_error_mm": {"mean": float(root_err.mean()), "median": float(np.median(root_err)),
                          "max": float(root_err.max())},
        "mpjpe_mm": {"mean": float(mpjpe.mean()), "median": float(np.median(mpjpe))},
        "reprojection_error_px_mean": float(np.linalg.norm(uv_est - uv_gt, axis=-1).mean()),
        "keypoints_missed_fraction": float(np.mean(seq["confidence"] == 0)),
        "pnp_valid_fraction": float(np.mean(fit["pnp_valid"])),
        "per_frame": {"root_error_mm": root_err.tolist(), "mpjpe_mm": mpjpe.tolist(),
                      "icp_scale": fit["icp_scale"].tolist()},
    }


def run_demo(cfg: DemoConfig) -> dict:
    """Generate, fit, score and write the demo's results; returns the summary."""
    from tqdm.auto import tqdm

    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4, desc="hoijax demo", unit="step")
    model = mano.synthetic_mano("right")
    steps.set_postfix_str("generating the synthetic sequence")
    seq = make_sequence(cfg, model)
    steps.update()
    steps.set_postfix_str("compiling and fitting (ICP scale, PnP translation)")
    fit = fit_sequence(model, seq)
    steps.update()
    steps.set_postfix_str("scoring")
    metrics = score(seq, fit)
    steps.update()
    steps.set_postfix_str("writing pictures and meshes")
    summary = {
        "what": "AGILE §3.2 metric hand init (ICP scale + PnP translation) on a synthetic sequence",
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(cfg).items()},
        "metrics": metrics,
        "timing": fit["timing"],
        "machine": {"platform": platform.platform(), "jax_backend": jax.default_backend(),
                    "jax": jax.__version__},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_meshes(out_dir, model, seq, fit)
    from hoijax.viz import demo_overlay

    demo_overlay(out_dir / "overlay.png", seq, fit, metrics, cfg.image_size)
    steps.update()
    steps.close()
    return summary


def _write_meshes(out_dir: Path, model: mano.ManoModel, seq: dict, fit: dict) -> None:
    import trimesh

    faces = np.asarray(model.faces)
    n = len(seq["uv_px"])
    for i in sorted({0, n // 2}):
        for name, verts, colour in (("estimate", fit["verts_cam"][i], (70, 110, 230, 255)),
                                    ("truth", seq["gt_verts_cam"][i], (60, 180, 90, 255))):
            mesh = trimesh.Trimesh(verts, faces, process=False)
            mesh.visual.vertex_colors = np.tile(colour, (len(verts), 1))
            mesh.export(out_dir / f"hand_frame{i:03d}_{name}.ply")
