"""``hoijax view``: a tracking result in the browser (see :mod:`hoijax.viz._viewer`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from tyro.conf import Positional


@dataclasses.dataclass
class View:
    """Look at a tracking result in the browser: meshes, camera, contact, errors."""

    result: Positional[Path]
    """A run folder (as demo or track write) or one sequence's result folder."""
    sequences: Positional[Path | None] = None
    """The sequence directory (or a folder of them, matched by name): its frames and ground
    truth are shown, and a result without scene.npz (tracked with --no-pictures) can be
    opened; default: only what the result folder holds."""
    mano_dir: Path | None = None
    """MANO files the result was tracked with (only used with the sequences); default: the
    synthetic hand."""
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 makes the viewer reachable from other machines."""
    port: int = 8080
    """Port to listen on (the URL is printed)."""


def _result_dirs(root: Path) -> list[Path]:
    if (root / "result.json").exists():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "result.json").exists())


def load_scenes(cfg: View) -> dict:
    """Each result's scene: its scene.npz, or computed from the sequence when one is given."""
    from hoijax import viz

    scenes = {}
    for d in _result_dirs(Path(cfg.result)):
        if cfg.sequences is None:
            if not (d / viz.SCENE_FILE).exists():
                raise FileNotFoundError(
                    f"{d / viz.SCENE_FILE}: missing (the run was tracked without pictures); "
                    f"pass the sequence directory too: hoijax view {cfg.result} SEQUENCES")
            scenes[d.name] = viz.load_scene(d)
            continue
        from hoijax import data, tracking

        res, manifest = tracking.load_result(d)
        name = manifest["meta"].get("sequence", d.name)
        seq_dir = Path(cfg.sequences)
        seq_dir = seq_dir / name if (seq_dir / name).is_dir() else seq_dir
        seq = data.load_sequence(seq_dir)
        source = (tracking.ManoSource.synthetic() if cfg.mano_dir is None
                  else tracking.ManoSource.from_dir(cfg.mano_dir))
        scenes[d.name] = viz.scene_from(d.name, seq, res, source.model(seq.side))
    if not scenes:
        raise FileNotFoundError(f"{cfg.result}: no result.json in it or in its sub-folders")
    return scenes


def run_view(cfg: View) -> int:
    from hoijax.viz._viewer import Viewer

    t0 = time.perf_counter()
    try:
        scenes = load_scenes(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    viewer = Viewer(scenes, host=cfg.host, port=cfg.port)
    frames = sum(s.num_frames for s in scenes.values())
    print(f"hoijax view: {len(scenes)} sequence(s), {frames} frames, ready in "
          f"{time.perf_counter() - t0:.1f} s at {viewer.url}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        viewer.stop()
    return 0
