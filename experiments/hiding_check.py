"""Does a tracked object hide behind the hand? For each processed frame of a tracked sequence:
the share of the object's projected vertices inside the observed hand mask and inside the
observed object mask, for the tracked pose and the true one, and the mask and depth losses
as the tracker computes them (``normalize="object"``, the hand and the depth occluders
unknown) at both poses.

    python experiments/hiding_check.py SEQ_DIR TRACK_OUT_DIR/SEQ_NAME [--out FILE]

``SEQ_DIR`` is a saved sequence with ground truth (``hoijax generate``), the second folder
that sequence's output of ``hoijax track`` (its ``result.npz``). Prints a table and writes
JSON (default ``experiments/results/hiding_<sequence>.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from hoijax import data, losses, render
from hoijax import tracking as tr

RESULTS = Path(__file__).resolve().parent / "results"


def _shares(uv: np.ndarray, hand: np.ndarray, obj: np.ndarray) -> tuple[float, float]:
    h, w = hand.shape
    uv = np.round(uv).astype(int)
    uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)]
    if len(uv) == 0:
        return 0.0, 0.0
    return float(hand[uv[:, 1], uv[:, 0]].mean()), float(obj[uv[:, 1], uv[:, 0]].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sequence", type=Path)
    ap.add_argument("tracked", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    seq = data.load_sequence(args.sequence)
    if seq.gt is None:
        raise SystemExit(f"{args.sequence} has no ground truth")
    res = np.load(args.tracked / "result.npz")
    cfg = tr.TrackConfig()
    K, V = jnp.asarray(seq.K), jnp.asarray(seq.mesh.vertices)
    F = jnp.asarray(seq.mesh.faces)
    settings = cfg.raster(tuple(int(x) for x in seq.image_size))
    poses = {"tracked": (res["T_cam_obj"], res["obj_scale"]),
             "true": (np.asarray(seq.gt.T_cam_obj), np.asarray(seq.gt.obj_scale))}
    rows = []
    for f in np.nonzero(res["processed"])[0]:
        hand = np.asarray(seq.hand_mask[f]) > 0.5
        obj = np.asarray(seq.object_mask[f]) > 0.5
        row = {"frame": int(f)}
        for name, (T, scale) in poses.items():
            pts = losses.obj_to_cam(jnp.asarray(T[f]), jnp.asarray(scale), V)
            uv = np.asarray(pts @ K.T)
            row[f"{name}_in_hand"], row[f"{name}_in_object"] = _shares(
                uv[:, :2] / uv[:, 2:], hand, obj)
            rend = render.rasterize(pts, F, K, settings, sigma_px2=0.05)
            unknown = jnp.asarray(hand)
            if seq.depth_m is not None:
                unknown = unknown | losses.depth_occluders(rend, seq.depth_m[f], obj,
                                                           margin_m=cfg.occluder_margin_m)
                row[f"{name}_depth_loss"] = float(losses.depth_loss(
                    rend, seq.depth_m[f], obj, hand)[0])
            row[f"{name}_mask_loss"] = float(losses.mask_loss(rend, obj, unknown,
                                                              normalize="object")[0])
        rows.append(row)
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    out = args.out or RESULTS / f"hiding_{args.tracked.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sequence": str(args.sequence), "tracked": str(args.tracked),
                               "frames": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
