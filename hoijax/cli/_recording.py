"""``hoijax import-recording``: one's own recording folder → a sequence directory."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg


@dataclasses.dataclass
class ImportRecording:
    """Convert one's own recording (frames, K, mesh, detections, masks, depth) to a sequence."""

    recording: Positional[Annotated[Path, arg(help_behavior_hint="(required)")]]
    """Recording folder (README, "Tracking your own recording")."""
    out: Path
    """Sequence directory to write (hoijax sequence format)."""
    side: Literal["right", "left"] = "right"
    """The tracked hand."""
    depth_scale: float = 0.001
    """Metres per unit of 16-bit depth PNGs (0.001: millimetres)."""
    init_frame: int = 0
    """Frame of init_pose.txt, when there is one."""
    mano_dir: Path | None = None
    """Official MANO files: needed only when detections.npz has flat_hand_mean False."""


def run_import_recording(cfg: ImportRecording) -> int:
    from hoijax import data, mano

    model = None
    if cfg.mano_dir is not None:
        model = mano.load_mano(cfg.mano_dir / f"MANO_{cfg.side.upper()}.pkl")
    try:
        seq, stems, meta = data.load_recording(cfg.recording, side=cfg.side, mano_model=model,
                                               depth_scale=cfg.depth_scale,
                                               init_frame=cfg.init_frame)
    except (data.SequenceFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data.save_sequence(seq, cfg.out, meta=meta)
    for note in meta["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {cfg.out} ({len(stems)} frames); next: hoijax features {cfg.out} --weights "
          f"FILE, then hoijax track {cfg.out}")
    return 0
