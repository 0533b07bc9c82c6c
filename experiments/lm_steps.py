"""Step 2 (the object's pose) alone, Adam against Levenberg–Marquardt with and without its
continuations (``TrackConfig.lm_coarse_sigma_px2``, ``lm_mask_levels``), on benchmark v2
frames; ``*_nomask`` / ``*_nodino`` drop a term (``TrackHyper.ablate``) to find which one a
solver's failures come from.

Each case is one processed frame of a v2 sequence at 128²: the object starts at its true pose
``--gap`` frames earlier (what the tracker starts from at that stride when the previous frame
was tracked perfectly), the hand is at its true pose, and the observations are the sequence's
own (damaged masks, sensor depth, noisy features). It isolates the solver from the rest of the
pipeline: a failure here is the step's basin, not an upstream error.

    python experiments/lm_steps.py [--split dev] [--sequences 10] [--gap 5]
        [--variants adam lm lm_c4 lm_c16 lm_m0 adam_nomask lm_nomask ...]
        [--out experiments/results/lm_steps_dev_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import run_info

from hoijax import data, geometry, losses, mano, sdf
from hoijax import tracking as tr
from hoijax.tracking import stages as st

VARIANTS = {
    "adam": dict(solver="adam", object_iters=400),
    "lm": dict(solver="lm"),
    "lm100": dict(solver="lm", lm_iters=100),
    "lm_m0": dict(solver="lm", lm_mask_levels=(0.0,), lm_level_iters=15),
    "lm_m0_40": dict(solver="lm", lm_mask_levels=(0.0,), lm_level_iters=20, lm_iters=40),
    "lm_m01": dict(solver="lm", lm_mask_levels=(0.1,), lm_level_iters=15),
    "adam_nodino": dict(solver="adam", object_iters=400, _without="dino"),
    "lm_nodino": dict(solver="lm", _without="dino"),
    "adam_nomask": dict(solver="adam", object_iters=400, _without="mask"),
    "lm_nomask": dict(solver="lm", _without="mask"),
    "lm_c1": dict(solver="lm", lm_coarse_sigma_px2=(1.0,)),
    "lm_c4": dict(solver="lm", lm_coarse_sigma_px2=(4.0, 0.5)),
    "lm_c16": dict(solver="lm", lm_coarse_sigma_px2=(16.0, 1.0)),
}


def frame_input(seq, f, model, grid):
    """Frame ``f``'s stage input with the true hand, and the hand's translation."""
    params = jax.tree.map(lambda x: x[f], seq.gt.hand)
    verts, kps = st.hand_in_mano_frame(model, params)
    t = seq.gt.joints_cam[f, 0] - kps[0]
    hand = st.HandPose(verts, kps, geometry.vertex_normals(verts, model.faces), t)
    obs = st.FrameObs(seq.K, seq.object_mask[f], seq.hand_mask[f], seq.keypoints_px[f],
                      seq.keypoints_conf[f], seq.depth_m[f], seq.features[f], None, None)
    pool = losses.sample_surface(jax.random.PRNGKey(0), seq.mesh.vertices, seq.mesh.faces, 512,
                                 seq.mesh.face_valid)
    return st.FrameInput(obs, hand, st.ObjectModel(seq.mesh, grid, pool), jax.random.PRNGKey(f),
                         jnp.ones((), bool)), t


def errors(T, T_true) -> tuple[float, float]:
    """Rotation (°) and translation (mm) errors."""
    R = np.asarray(T)[:3, :3].T @ np.asarray(T_true)[:3, :3]
    rot = np.degrees(np.linalg.norm(np.asarray(geometry.matrix_to_axis_angle(jnp.asarray(R)))))
    dt = np.asarray(T)[:3, 3] - np.asarray(T_true)[:3, 3]
    return float(rot), 1000 * float(np.linalg.norm(dt))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("dev", "heldout"), default="dev")
    ap.add_argument("--sequences", type=int, default=10)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--gap", type=int, default=5)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                    default=["adam", "lm", "lm_c4", "lm_c16"])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "lm_steps_dev_cpu.json")
    args = ap.parse_args()

    configs = data.benchmark_v2_configs(args.sequences, args.split, frames=args.frames,
                                        image_sizes=(128,), with_rgb=False)
    def setting(name):  # ``_without`` names a loss term the variant drops
        v = dict(VARIANTS[name])
        off = v.pop("_without", None)
        return tr.TrackConfig(**v), tr.TrackHyper.ablate(off) if off else tr.TrackHyper()

    runs = {name: jax.jit(lambda i, p, c, s=setting(name): st.object_step(s[0], s[1], c, i, p))
            for name in args.variants}
    cases = []
    for c in configs:
        seq = data.generate_sequence(c)
        model = mano.synthetic_mano(seq.side)
        grid = sdf.sdf_grid_from_mesh(
            np.asarray(seq.mesh.vertices),
            np.asarray(seq.mesh.faces)[np.asarray(seq.mesh.face_valid)], resolution=24)
        for f in range(int(seq.gt.onset_frame) + args.gap, args.frames, args.gap):
            inp, t = frame_input(seq, f, model, grid)
            T_prev = seq.gt.T_cam_obj[f - args.gap]
            prev = st.TrackState(T_prev, seq.gt.obj_scale, t, seq.gt.verts_cam[f - args.gap])
            cur = st.TrackState(T_prev, seq.gt.obj_scale, t, seq.gt.verts_cam[f])
            rot0, tr0 = errors(T_prev, seq.gt.T_cam_obj[f])
            case = {"seed": c.seed, "frame": f, "kind": c.object_kind, "start_rot_deg": rot0,
                    "start_trans_mm": tr0}
            for name, run in runs.items():
                t0 = time.perf_counter()
                state, res = jax.block_until_ready(run(inp, prev, cur))
                rot, trans = errors(state.T_cam_obj, seq.gt.T_cam_obj[f])
                case[name] = {"rot_deg": rot, "trans_mm": trans, "iters": int(res.num_iters),
                              "loss": float(res.loss),
                              "overflow": bool(res.flagged),
                              "seconds_incl_compile": time.perf_counter() - t0}
            cases.append(case)
            print(f"seed {c.seed} f{f} start {rot0:.1f}° {tr0:.1f} mm | " + " | ".join(
                f"{n}: {case[n]['rot_deg']:.2f}° {case[n]['trans_mm']:.2f} mm "
                f"it {case[n]['iters']} loss {case[n]['loss']:.3f}" for n in runs), flush=True)
            write(args, runs, cases)
    write(args, runs, cases, final=True)


def write(args, runs: dict, cases: list[dict], final: bool = False) -> None:
    """The results file (rewritten after every case, so a stopped run keeps what it did)."""
    summary = {}
    for name in runs:
        rot = np.array([c[name]["rot_deg"] for c in cases])
        trans = np.array([c[name]["trans_mm"] for c in cases])
        summary[name] = {"rot_deg_median": float(np.median(rot)),
                         "trans_mm_median": float(np.median(trans)),
                         "within_2deg_5mm": float(np.mean((rot < 2) & (trans < 5))),
                         "worse_than_start": float(np.mean(
                             [c[name]["trans_mm"] > c["start_trans_mm"] for c in cases])),
                         "overflow_cases": int(sum(c[name]["overflow"] for c in cases))}
        if final:
            print(name, summary[name])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "step 2 alone from the true pose --gap frames earlier, true hand, v2 frames",
        "complete": final,
        "args": {k: str(v) for k, v in vars(args).items()}, "variants": {
            n: {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[n].items()}
            for n in runs},
        "info": run_info(with_kernels=False), "summary": summary, "cases": cases}, indent=1))
    if final:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
