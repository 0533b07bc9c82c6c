"""AGILE's evaluation protocol as data: which HO-3D v3 and DexYCB sequences, from which frame,
how many frames and at which stride (AGILE supplementary §8, Tables 3 and 4).

- HO-3D v3: 18 ``train`` sequences, each processed from its interaction onset frame (IOF, an
  index into the sequence's sorted annotated frames), at most :data:`AGILE_MAX_FRAMES` frames
  (the sequences have 800 to 1600);
- DexYCB: 20 sequences seen by camera ``836212060125``, about 80 frames each, from the first
  annotated frame (the tracker finds the IOF itself, AGILE Eq. 8);
- every :data:`AGILE_STRIDE`-th frame is processed.

:func:`protocol_frames` turns an entry and the sequence's frame count into the frame indices
to convert. hoijax converts only those frames (so a 1024-frame HO-3D clip becomes 205 frames)
and tracks them with ``TrackConfig.stride = 1``; the processed frames are the same as tracking
every frame with stride 5, without loading the four frames in five that are never scored.

:func:`load_protocol_sequence` converts one entry with its external inputs found by name under
one folder (:func:`input_files`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

AGILE_STRIDE = 5
"""AGILE processes every fifth frame."""

AGILE_MAX_FRAMES = 1024
"""AGILE caps an HO-3D sequence at 1024 frames (counted before the stride)."""

AGILE_DEXYCB_SERIAL = "836212060125"
"""The DexYCB camera of every sequence in AGILE's Table 4."""


class ProtocolEntry(NamedTuple):
    """One sequence of AGILE's evaluation."""

    dataset: str
    """``"ho3d"`` or ``"dexycb"``."""
    sequence: str
    """As the dataset names it: HO-3D ``"ABF12"``; DexYCB ``"<subject>/<sequence>/<serial>"``."""
    object: str
    """The YCB object, as AGILE's table names it."""
    iof: int | None
    """AGILE's IOF index (HO-3D: the first processed frame), or None (DexYCB: not given)."""

    @property
    def name(self) -> str:
        """A file-system-safe name: the sequence with ``/`` replaced by ``__``."""
        return self.sequence.replace("/", "__")


_HO3D = """\
ABF12 bleach cleanser 100
ABF14 bleach cleanser 100
BB12 banana 200
BB13 banana 130
GPMF12 potted meat 105
GPMF14 potted meat 100
GSF13 scissors 100
GSF14 scissors 80
MC1 cracker box 0
MC4 cracker box 0
MDF12 power drill 150
MDF14 power drill 250
ShSu10 sugar box 50
ShSu12 sugar box 110
SM2 mustard 0
SM4 mustard 0
SMu1 mug 20
SMu40 mug 0"""

_DEXYCB = """\
20200709-subject-01/20200709_141754 master chef can
20200709-subject-01/20200709_142853 master chef can
20200813-subject-02/20200813_154204 bleach cleanser
20200813-subject-02/20200813_153453 power drill
20200820-subject-03/20200820_141856 potted meat
20200820-subject-03/20200820_143330 mug
20200903-subject-04/20200903_103554 master chef can
20200903-subject-04/20200903_113012 wood block
20200908-subject-05/20200908_144138 tomato soup can
20200908-subject-05/20200908_152416 large clamp
20200918-subject-06/20200918_113441 sugar box
20200918-subject-06/20200918_114747 potted meat
20200928-subject-07/20200928_153800 pitcher base
20200928-subject-07/20200928_144300 mustard bottle
20201002-subject-08/20201002_110940 pitcher base
20201002-subject-08/20201002_105558 mustard bottle
20201015-subject-09/20201015_143700 mustard bottle
20201015-subject-09/20201015_142940 cracker box
20201022-subject-10/20201022_111745 mustard bottle
20201022-subject-10/20201022_111209 sugar box"""

AGILE_HO3D: tuple[ProtocolEntry, ...] = tuple(
    ProtocolEntry("ho3d", line.split()[0], " ".join(line.split()[1:-1]), int(line.split()[-1]))
    for line in _HO3D.splitlines())
"""AGILE supplementary Table 3: HO-3D v3 sequence, object, IOF index."""

AGILE_DEXYCB: tuple[ProtocolEntry, ...] = tuple(
    ProtocolEntry("dexycb", f"{line.split()[0]}/{AGILE_DEXYCB_SERIAL}",
                  " ".join(line.split()[1:]), None)
    for line in _DEXYCB.splitlines())
"""AGILE supplementary Table 4: DexYCB sequence (camera ``836212060125``) and object."""

PROTOCOLS = {"ho3d": AGILE_HO3D, "dexycb": AGILE_DEXYCB}
"""Dataset name → AGILE's sequence list."""


def agile_protocol(dataset: str, only: Iterable[str] | None = None) -> tuple[ProtocolEntry, ...]:
    """AGILE's sequences of ``dataset`` (``"ho3d"`` or ``"dexycb"``); ``only``: keep those whose
    ``sequence`` or ``name`` is listed (an unknown one is a ValueError naming the valid ones)."""
    if dataset not in PROTOCOLS:
        raise ValueError(f"unknown dataset {dataset!r}; AGILE's protocol covers "
                         f"{sorted(PROTOCOLS)}")
    entries = PROTOCOLS[dataset]
    if only is None:
        return entries
    wanted = list(only)
    known = {e.sequence for e in entries} | {e.name for e in entries}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"{unknown} not in AGILE's {dataset} protocol; its sequences: "
                         f"{[e.sequence for e in entries]}")
    return tuple(e for e in entries if e.sequence in wanted or e.name in wanted)


def protocol_frames(entry: ProtocolEntry, num_frames: int, *, stride: int = AGILE_STRIDE,
                    max_frames: int = AGILE_MAX_FRAMES) -> list[int]:
    """Indices (into the sequence's annotated frames, in order) that AGILE processes: from the
    IOF (0 when not given), at most ``max_frames`` frames, every ``stride``-th one."""
    if stride < 1 or max_frames < 1:
        raise ValueError(f"stride ({stride}) and max_frames ({max_frames}) must be positive")
    start = entry.iof or 0
    if start >= num_frames:
        raise ValueError(f"{entry.dataset} {entry.sequence}: the IOF index {start} is beyond its "
                         f"{num_frames} annotated frames")
    return list(range(start, min(num_frames, start + max_frames), stride))


class InputFiles(NamedTuple):
    """An entry's external inputs found under an inputs folder (None where absent)."""

    detections: Path | None
    masks: Path | None
    init_pose: Path | None


def input_files(inputs_dir: str | Path | None, entry: ProtocolEntry) -> InputFiles:
    """The external models' outputs for ``entry``, by name, under ``inputs_dir``::

        <inputs_dir>/<entry.name>/detections.npz      hand detections (read_detections)
        <inputs_dir>/<entry.name>/masks.npz           or masks/{hand,object}/<frame id>.png
        <inputs_dir>/<entry.name>/init_pose.txt       or init_pose.npy: the object pose at
                                                      the first converted frame (optional)

    Each file has one row per *converted* frame (:func:`protocol_frames`; the converted
    sequence's ``meta["frame_ids"]`` lists them)."""
    if inputs_dir is None:
        return InputFiles(None, None, None)
    d = Path(inputs_dir) / entry.name
    first = lambda *names: next((d / n for n in names if (d / n).exists()), None)  # noqa: E731
    return InputFiles(first("detections.npz"), first("masks.npz", "masks"),
                      first("init_pose.txt", "init_pose.npy"))


def load_protocol_sequence(entry: ProtocolEntry, root: str | Path, mano_dir: str | Path, *,
                           ycb_dir: str | Path | None = None,
                           inputs_dir: str | Path | None = None, oracle=None,
                           stride: int = AGILE_STRIDE, max_frames: int = AGILE_MAX_FRAMES,
                           **kwargs):
    """Convert one protocol entry (:func:`hoijax.data.load_ho3d` / :func:`load_dexycb` on the
    frames of :func:`protocol_frames`), its inputs from :func:`input_files`; the manifest meta
    gains ``protocol`` (dataset, sequence, object, IOF, stride, frame cap). ``ycb_dir``: HO-3D's
    YCB models folder (default ``root``). Other keyword arguments go to the loader."""
    from hoijax.data._dexycb import dexycb_annotated_frames, load_dexycb
    from hoijax.data._ho3d import ho3d_frame_ids, load_ho3d

    files = input_files(inputs_dir, entry)
    common = dict(detections=files.detections, masks=files.masks, init_pose=files.init_pose,
                  init_frame=0, oracle=oracle, **kwargs)
    if entry.dataset == "ho3d":
        ids = ho3d_frame_ids(root, entry.sequence, "train")
        pick = protocol_frames(entry, len(ids), stride=stride, max_frames=max_frames)
        conv = load_ho3d(root, entry.sequence, ycb_dir or root,
                         Path(mano_dir) / "MANO_RIGHT.pkl", split="train",
                         frame_ids=[ids[i] for i in pick], **common)
    else:
        subject_seq, serial = entry.sequence.rsplit("/", 1)
        frames = dexycb_annotated_frames(root, subject_seq, serial)
        pick = protocol_frames(entry, len(frames), stride=stride, max_frames=max_frames)
        conv = load_dexycb(root, subject_seq, serial, mano_dir, frames=[frames[i] for i in pick],
                           **common)
    conv.meta["protocol"] = {"name": "AGILE", "dataset": entry.dataset,
                             "sequence": entry.sequence, "object": entry.object,
                             "iof": entry.iof, "stride": stride, "max_frames": max_frames,
                             "tracker_stride": 1}
    return conv
