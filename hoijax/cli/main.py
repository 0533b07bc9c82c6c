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


def main(argv: list[str] | None = None) -> int:
    import tyro

    from hoijax.cli import _track
    from hoijax.cli._demo import DemoConfig
    from hoijax.cli._icl import IclEval, IclTrain, run_icl_eval, run_icl_train
    from hoijax.cli._tiger import TigerEval, TigerTrain, run_tiger_eval, run_tiger_train

    commands = {
        "demo": (_track.Demo, _track.run_demo),
        "track": (_track.Track, _track.run_track),
        "ablate": (_track.Ablate, _track.run_ablate),
        "eval": (_track.Eval, _track.run_eval),
        "icl-train": (IclTrain, run_icl_train),
        "icl-eval": (IclEval, run_icl_eval),
        "tiger-train": (TigerTrain, run_tiger_train),
        "tiger-eval": (TigerEval, run_tiger_eval),
        "init-demo": (DemoConfig, _init_demo),
        "mano-export": (ManoExport, _mano_export),
        "mano-info": (ManoInfo, _mano_info),
    }
    parsed = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in commands.items()},
        prog="hoijax",
        description="Fast, batched, differentiable hand-object reconstruction in JAX.",
        args=argv,
    )
    runner = next(run for cls, run in commands.values() if isinstance(parsed, cls))
    return runner(parsed)


if __name__ == "__main__":
    sys.exit(main())
