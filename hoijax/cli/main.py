"""The ``hoijax`` command."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tyro.conf import Positional


def _init_demo(cfg) -> int:
    from hoijax.cli._demo import run_demo

    summary = run_demo(cfg)
    m = summary["metrics"]
    print(f"scale error {m['scale_error_percent']:.2f}% | root error {m['root_error_mm']['mean']:.1f}"
          f" mm | MPJPE {m['mpjpe_mm']['mean']:.1f} mm | reprojection "
          f"{m['reprojection_error_px_mean']:.2f} px | {summary['timing']['run_ms_per_frame']:.2f}"
          f" ms/frame (compile {summary['timing']['compile_s']:.1f} s)")
    print(f"results in {Path(cfg.out).resolve()}: summary.json, overlay.png, hand_frame*.ply")
    return 0


@dataclasses.dataclass
class ManoExport:
    """Write the synthetic hand as MANO_RIGHT.pkl and MANO_LEFT.pkl (official pickle layout)."""

    out: Path = Path("results/mano")
    """Folder to write into."""
    seed: int = 0
    """Seed of the synthetic model's random parts."""


@dataclasses.dataclass
class ManoInfo:
    """Load and validate a MANO model file (.pkl or .npz) and print what it holds."""

    path: Positional[Path]
    """MANO_RIGHT.pkl / MANO_LEFT.pkl (chumpy not needed), or a hoijax .npz."""


def _mano_export(cmd: ManoExport) -> int:
    from hoijax.mano import write_synthetic_mano

    right, left = write_synthetic_mano(cmd.out, seed=cmd.seed)
    print(f"wrote {right} and {left}")
    return 0


def _mano_info(cmd: ManoInfo) -> int:
    import jax.numpy as jnp
    import numpy as np

    from hoijax import mano

    try:
        model = mano.load_mano(cmd.path)
    except mano.ManoFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = mano.forward(model, jnp.zeros(3), jnp.zeros(45), jnp.zeros(model.num_betas),
                       flat_hand_mean=True)
    tips = np.asarray(out.keypoints("manopth"))[16:]
    length = float(np.linalg.norm(tips - np.asarray(out.joints)[0], axis=1).max())
    print(json.dumps({
        "path": str(cmd.path), "side": model.side, "vertices": model.num_verts,
        "faces": int(model.faces.shape[0]), "betas": model.num_betas,
        "pca_components": int(model.hands_components.shape[0]),
        "wrist_to_farthest_tip_m": round(length, 4),
    }, indent=2))
    return 0


# name: (settings class, runner, one line for the top-level help), as "module:attribute".
# Only the chosen command's module is imported, so `hoijax --help` does not load JAX
# (tests/test_viz_cli.py checks each line against the class's docstring).
_T, _M = "hoijax.cli._track", "hoijax.cli.main"
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (f"{_T}:Demo", f"{_T}:run_demo",
             "Generate the synthetic hand-object benchmark, track it batched, score it, draw it."),
    "track": (f"{_T}:Track", f"{_T}:run_track",
              "Track sequence directories (hoijax sequence format) and write results."),
    "ablate": (f"{_T}:Ablate", f"{_T}:run_ablate",
               "Track sequences under a grid of loss weights (one compiled program) and "
               "tabulate."),
    "eval": (f"{_T}:Eval", f"{_T}:run_eval",
             "Score saved results (track or demo outputs) against the sequences' ground truth."),
    "features": ("hoijax.cli._features:Features", "hoijax.cli._features:run_features",
                 "Compute DINO features of sequences' frames and objects, written into the "
                 "directories."),
    "generate": ("hoijax.cli._generate:Generate", "hoijax.cli._generate:run_generate",
                 "Write synthetic hand-object sequences (with ground truth) to disk, for track "
                 "and eval."),
    "import-recording": ("hoijax.cli._recording:ImportRecording",
                         "hoijax.cli._recording:run_import_recording",
                         "Convert one's own recording (frames, K, mesh, detections, masks, depth) "
                         "to a sequence."),
    "view": ("hoijax.cli._view:View", "hoijax.cli._view:run_view",
             "Look at a tracking result in the browser: meshes, camera, contact, errors."),
    "icl-train": ("hoijax.cli._icl:IclTrain", "hoijax.cli._icl:run_icl_train",
                  "Train EgoHandICL (synthetic data by default), then evaluate it on the held-out "
                  "frames."),
    "icl-eval": ("hoijax.cli._icl:IclEval", "hoijax.cli._icl:run_icl_eval",
                 "Evaluate a trained EgoHandICL run: coarse input vs. refinement with and "
                 "without template."),
    "tiger-train": ("hoijax.cli._tiger:TigerTrain", "hoijax.cli._tiger:run_tiger_train",
                    "Train TIGeR's refinement network (synthetic data by default), then evaluate it."),
    "tiger-eval": ("hoijax.cli._tiger:TigerEval", "hoijax.cli._tiger:run_tiger_eval",
                   "Evaluate a trained TIGeR run: refined object vs. prior, hand, occlusion bins."),
    "tiger-data": ("hoijax.cli._tiger:TigerDataConvert", "hoijax.cli._tiger:run_tiger_data",
                   "Convert DexYCB or ObMan to TIGeR examples (object crops, masks, hand, "
                   "prior; .npz)."),
    "init-demo": ("hoijax.cli._demo:DemoConfig", f"{_M}:_init_demo",
                  "AGILE's metric hand initialization on its own, on a synthetic sequence."),
    "mano-export": (f"{_M}:ManoExport", f"{_M}:_mano_export",
                    "Write the synthetic hand as MANO_RIGHT.pkl and MANO_LEFT.pkl (official pickle "
                    "layout)."),
    "mano-info": (f"{_M}:ManoInfo", f"{_M}:_mano_info",
                  "Load and validate a MANO model file (.pkl or .npz) and print what it holds."),
}


def _top_parser():
    import argparse

    width = max(len(n) for n in _COMMANDS) + 2
    lines = [f"  {n:<{width}}{line}" for n, (_, _, line) in _COMMANDS.items()]
    return argparse.ArgumentParser(
        prog="hoijax", usage="hoijax [-h] COMMAND [ARGS ...]",
        description="Fast, batched, differentiable hand-object reconstruction in JAX.",
        epilog="commands:\n" + "\n".join(lines)
        + "\n\n'hoijax COMMAND --help' lists a command's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter)


def _load(spec: str):
    import importlib

    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _COMMANDS:
        parser = _top_parser()
        if args and args[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        parser.print_usage(sys.stderr)
        what = f"unknown command {args[0]!r}" if args else "no command given"
        parser.exit(2, f"hoijax: error: {what} (choose from {', '.join(_COMMANDS)})\n")
    import tyro

    cls, run, _ = _COMMANDS[args[0]]
    if args[0] == "track":
        from hoijax.cli._distributed import start_early

        start_early(args[1:])  # before the command's flags start JAX's backend
    from hoijax.cli._stderr import DropXlaAlarm

    config = tyro.cli(_load(cls), args=args[1:], prog=f"hoijax {args[0]}")
    with DropXlaAlarm():  # the commands explain their compilations themselves
        return _load(run)(config)


if __name__ == "__main__":
    sys.exit(main())
