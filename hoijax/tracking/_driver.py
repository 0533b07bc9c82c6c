"""The library driver: prepare → batch → track → score → save, for the CLI and experiments.

:func:`track_sequences` tracks named sequences in padded batches of one shape, with the
user's MANO model (:class:`ManoSource`), and deals with what a batch must survive:

- a sequence whose preparation or tracking raises (an SDF of a broken mesh, say) is reported
  by name with its cause and skipped; the others in its batch finish;
- a sequence whose rasterizer pair list overflowed in some processed frame is re-run alone
  with doubled capacity (up to ``max_doublings`` times); one still flagged at the largest
  capacity keeps ``overflow`` set in its result and is listed in :attr:`TrackRun.overflow`;
- each sequence's random choices follow its name, not its slot in the batch.

:func:`save_run` writes one result folder per sequence (with the settings and the MANO model's
identity in ``result.json``), per-sequence metrics where there is ground truth, ``metrics.md``
and ``summary.json`` (skipped sequences with their causes, overflowing ones).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from hoijax import data, mano
from hoijax._runtime import release_if_many
from hoijax.tracking._checks import input_warnings, term_activity, term_warnings
from hoijax.tracking._evaluate import (
    evaluate_sequence,
    save_result,
    sequence_row,
    summarize,
    true_symmetry,
)
from hoijax.tracking._resume import ChunkStore
from hoijax.tracking._schedule import num_steps
from hoijax.tracking._settings import TrackConfig, TrackHyper, stack_hypers
from hoijax.tracking._track import (
    Progress,
    TrackResult,
    ablate_batch,
    prepare,
    sequence_mesh,
    stack_prepared,
    track_batch,
)


class ManoMismatchError(ValueError):
    """A result is scored with another MANO model than it was tracked with."""


@dataclasses.dataclass(frozen=True)
class ManoSource:
    """Where the hand model comes from: the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` in
    a folder, or hoijax's synthetic MANO-format hand (the synthetic benchmark's default)."""

    directory: Path | None = None
    """Folder with the official MANO files; None: the synthetic hand."""
    seed: int = 0
    """Seed of the synthetic hand (ignored with a folder)."""

    @classmethod
    def synthetic(cls, seed: int = 0) -> ManoSource:
        return cls(None, seed)

    @classmethod
    def from_dir(cls, directory: str | Path) -> ManoSource:
        return cls(Path(directory))

    def file(self, side: str) -> Path | None:
        """The model file of ``side``, or None for the synthetic hand."""
        if self.directory is None:
            return None
        return Path(self.directory) / f"MANO_{side.upper()}.pkl"

    def model(self, side: str) -> mano.ManoModel:
        """The model of ``side`` (``mano.ManoFileError`` names a missing or bad file)."""
        return _load_model(self, side)

    def identity(self, side: str) -> dict:
        """What is recorded with a result: the source, the file name and a content hash of the
        model's arrays."""
        return _identity(self, side)


@functools.lru_cache(maxsize=8)
def _load_model(source: ManoSource, side: str) -> mano.ManoModel:
    path = source.file(side)
    if path is None:
        return mano.synthetic_mano(side, seed=source.seed)
    return mano.load_mano(path, side=side)


@functools.lru_cache(maxsize=8)
def _identity(source: ManoSource, side: str) -> dict:
    h = hashlib.sha256()
    for name, a in sorted(mano.model_to_arrays(source.model(side)).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    path = source.file(side)
    return {"source": "synthetic" if path is None else "official",
            "file": None if path is None else path.name,
            "synthetic_seed": source.seed if path is None else None,
            "sha256": h.hexdigest()[:16]}


def check_mano(recorded: dict | None, source: ManoSource, side: str, where: str) -> None:
    """Raise :class:`ManoMismatchError` when a result's recorded model is not ``source``'s."""
    if not recorded:
        return  # results written before the identity was recorded
    now = source.identity(side)
    if recorded.get("sha256") != now["sha256"]:
        raise ManoMismatchError(
            f"{where}: tracked with MANO {recorded.get('file') or recorded.get('source')} "
            f"(sha256 {recorded.get('sha256')}) but scored with "
            f"{now['file'] or now['source']} (sha256 {now['sha256']}); pass the model it was "
            "tracked with (--mano-dir)")


@dataclasses.dataclass
class TrackRun:
    """What :func:`track_sequences` returns."""

    results: dict[str, TrackResult | list[TrackResult]]
    """Per sequence name: its result (a list over the hypers for an ablation grid)."""
    errors: dict[str, str]
    """Skipped sequences and their causes."""
    overflow: list[str]
    """Sequences whose rendering still overflowed at the largest capacity tried."""
    capacity: dict[str, int]
    """Sequences re-run with a larger capacity: the pairs per face that sufficed."""
    timing: dict
    """Seconds spent preparing and tracking, per batch."""
    config: TrackConfig
    hypers: list[TrackHyper]
    mano: ManoSource


def _shape_key(seq: data.Sequence, config: TrackConfig | None = None):
    """Sequences that can share a padded batch: one side, one image and feature size, the
    same optional parts; with ``config.batching="map"`` also one padding bucket
    (:func:`padding_bucket`)."""
    optional = tuple(getattr(seq, f) is None for f in ("depth_m", "features", "rgb",
                                                          "T_cam_obj_init", "gt"))
    feat = None if seq.features is None else tuple(seq.features.shape[1:])
    key = (seq.side, tuple(seq.image_size), feat, optional)
    if config is not None and config.batching == "map":
        key = key + (padding_bucket(seq),)
    return key


def padding_bucket(seq: data.Sequence) -> tuple[int, int, int]:
    """(frames, vertices, faces) a sequence is padded to under ``TrackConfig.batching="map"``:
    frames to a multiple of 8, the mesh to powers of two (at least 64). It depends on the
    sequence alone, so the sequence is padded the same alone and in any batch, and with
    ``map`` its result is then the same bit for bit (how much a mesh is padded changes the
    rounding of some reductions, measured up to 1e-3 in the pose after the optimizer)."""
    def pow2(x: int) -> int:
        return max(64, 1 << (int(x) - 1).bit_length())

    n = int(np.shape(seq.valid)[0])
    return -(-n // 8) * 8, pow2(np.shape(seq.mesh.vertices)[0]), pow2(np.shape(seq.mesh.faces)[0])


def sequence_key(seed: int, name: str) -> jax.Array:
    """The random key of a sequence: its name's, so its result does not depend on its slot."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How the driver executes a run (the command line reads these as ``--run.*``)."""

    batch_size: int = 8
    """Sequences tracked at once per padded batch (one compiled program per shape); rounded
    up to a multiple of the devices."""
    devices: int | None = None
    """Local devices each batch's sequences are split over (default: all; on a one-device
    machine, no split)."""
    seed: int = 0
    """Seed of the tracker's random choices (each sequence's follow its name)."""
    sdf_resolution: int = 32
    """SDF grid points along the object's longest side."""
    max_doublings: int = 3
    """Times the rasterizer's pair capacity is doubled for a sequence that overflows."""
    resume: bool = False
    """Skip the sequences of chunks a killed run already finished (its checkpoint folder)."""


@dataclasses.dataclass
class _Batches:
    """What every batch of one driver call shares."""

    seqs: dict[str, data.Sequence]
    preps: dict
    hypers: list[TrackHyper]
    grid: bool
    seed: int
    progress: Progress | None
    errors: dict[str, str]
    log: Callable[[str], None]
    mesh: jax.sharding.Mesh | None = None

    def run(self, names: list[str], model: mano.ManoModel, config: TrackConfig) -> dict:
        """Track ``names`` as one padded batch (padded further, with copies of its last
        sequence, to a multiple of the devices); per name its result (a list for a grid)."""
        n_dev = 1 if self.mesh is None else self.mesh.size
        slots = names + [names[-1]] * (-len(names) % n_dev)
        self.more(slots[len(names):], config)  # the padding slots report frames too
        pad = {}
        if config.batching == "map":  # one bucket per batch (_chunks): pad to it
            frames, verts, faces = padding_bucket(self.seqs[slots[0]])
            pad = dict(num_frames=frames, mesh_size=(verts, faces))
        batch = data.stack_sequences([self.seqs[n] for n in slots], **pad)
        prep = stack_prepared([self.preps[n] for n in slots])
        keys = jnp.stack([sequence_key(self.seed, n) for n in slots])
        if self.grid:
            res = jax.block_until_ready(ablate_batch(batch, prep, model,
                                                     stack_hypers(self.hypers), config, keys,
                                                     self.progress, self.mesh))
            return {n: [self._own(n, jax.tree.map(lambda x, g=g, j=j: x[g, j], res))
                        for g in range(len(self.hypers))] for j, n in enumerate(names)}
        res = jax.block_until_ready(track_batch(batch, prep, model, self.hypers[0], config,
                                                keys, self.progress, self.mesh))
        return {n: self._own(n, jax.tree.map(lambda x, j=j: x[j], res))
                for j, n in enumerate(names)}

    def _own(self, name: str, result: TrackResult) -> TrackResult:
        return trim_frames(result, int(np.shape(self.seqs[name].valid)[0]))

    def run_isolated(self, names: list[str], model: mano.ManoModel, config: TrackConfig
                     ) -> dict:
        """:meth:`run`; when the batch's program raises, each sequence alone, so one bad
        sequence does not sink the others."""
        try:
            return self.run(names, model, config)
        except Exception as e:  # noqa: BLE001 - any failure skips the sequences it hits
            if len(names) == 1:
                self.errors[names[0]] = f"tracking failed: {type(e).__name__}: {e}"
                self.log(f"skipped {names[0]}: {self.errors[names[0]]}")
                return {}
        out = {}
        # Each sequence is processed again, alone: announced to the progress receiver (an
        # over-estimate when the batch failed before its first frame; the bar ends complete).
        self.more(names, config)
        for name in names:
            out.update(self.run_isolated([name], model, config))
        return out

    def more(self, names: list[str], config: TrackConfig) -> None:
        """Tell :attr:`progress` that ``names`` will be processed again (beyond one pass)."""
        if self.progress is not None:
            settings = len(self.hypers) if self.grid else 1
            self.progress.more(settings * sum(processed_frames(self.seqs[n], config)
                                              for n in names))


PER_FRAME_FIELDS = tuple(f.name for f in dataclasses.fields(TrackResult)
                         if re.search(r"""Array, ['"]\s*N\b""", str(f.type)))
"""The :class:`TrackResult` fields with one entry per frame: those whose annotation's leading
axis is N, read from the class, so a new per-frame field is trimmed without being listed."""


def trim_frames(result: TrackResult, n: int) -> TrackResult:
    """``result`` with its per-frame fields cut to the sequence's own ``n`` frames: a padded
    batch gives every sequence the batch's frame count (the longest sequence's, or with
    ``batching="map"`` the padding bucket's), which its ground truth and pictures do not
    have. The schedule's fields keep their steps (padded frames are never processed)."""
    names = [f for f in PER_FRAME_FIELDS if getattr(result, f) is not None]
    return eqx.tree_at(lambda r: [getattr(r, f) for f in names], result,
                       [getattr(result, f)[:n] for f in names])


def processed_frames(seq: data.Sequence, config: TrackConfig) -> int:
    """Frames the tracker's scan processes for ``seq`` (each calls the progress receiver
    once): the schedule's steps after the anchor frame, at most (the end frames that the
    stride skips depend on the anchor)."""
    return num_steps(int(np.sum(np.asarray(seq.valid))), config.stride,
                     config.process_ends) - 1


def _overflowed(result) -> bool:
    rs = result if isinstance(result, list) else [result]
    return any(r.overflow is not None and bool(np.any(np.asarray(r.overflow))) for r in rs)


def track_sequences(
    seqs: dict[str, data.Sequence],
    mano_source: ManoSource,
    config: TrackConfig,
    hyper: TrackHyper | list[TrackHyper],
    options: RunOptions = RunOptions(),
    *,
    checkpoint: str | Path | None = None,
    share: tuple[int, int] = (0, 1),
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> TrackRun:
    """Track named sequences in batches of one padded shape, each batch split over the local
    devices. ``hyper`` as a list tracks every sequence under every setting (an ablation grid,
    one program). ``checkpoint``: a folder where every finished chunk is saved (orbax), so
    that ``options.resume`` skips them after a kill. ``share = (i, n)``: this is process ``i``
    of ``n`` and tracks every n-th sequence from the i-th (a distributed run)."""
    grid = isinstance(hyper, list)
    hypers = hyper if grid else [hyper]
    # A mesh whenever there is more than one device or the devices are named: the program
    # each device runs is then the same whatever their number (results do not depend on it).
    split = options.devices is not None or jax.local_device_count() > 1
    mesh = sequence_mesh(options.devices) if split else None
    batches = _Batches(seqs, {}, hypers, grid, options.seed, progress, {}, log, mesh)
    store = None if checkpoint is None else ChunkStore(checkpoint, resume=options.resume)
    results, info = store.done() if store is not None else ({}, {"capacity": {}, "overflow": []})
    if results:
        log(f"resuming: {len(results)} sequences were finished before")
    mine = [n for i, n in enumerate(seqs) if i % share[1] == share[0] and n not in results]
    timing = {"prepare_s": 0.0, "track_s": 0.0, "batches": []}
    t0 = time.perf_counter()
    for name in mine:
        try:
            batches.preps[name] = prepare(seqs[name], config,
                                          sdf_resolution=options.sdf_resolution,
                                          seed=options.seed)
        except Exception as e:  # noqa: BLE001 - any failure skips this sequence alone
            batches.errors[name] = f"preparation failed: {type(e).__name__}: {e}"
            log(f"skipped {name}: {batches.errors[name]}")
    timing["prepare_s"] = time.perf_counter() - t0
    size = -(-options.batch_size // (1 if mesh is None else mesh.size)) * (
        1 if mesh is None else mesh.size)
    for chunk in _chunks(seqs, list(batches.preps), size, config):
        t0 = time.perf_counter()
        model = mano_source.model(seqs[chunk[0]].side)
        done = batches.run_isolated(chunk, model, config)
        _rerun_overflowing(batches, done, model, config, options.max_doublings, info)
        # A long run compiles a program per padded shape and per re-run capacity; dropped
        # when they near the kernel's limit on memory mappings (hoijax._runtime).
        release_if_many()
        if store is not None:
            store.save(done, info)
        results.update(done)
        timing["batches"].append({"sequences": len(chunk), "seconds": time.perf_counter() - t0})
        timing["track_s"] += timing["batches"][-1]["seconds"]
    return TrackRun(results=results, errors=batches.errors, overflow=info["overflow"],
                    capacity=info["capacity"], timing=timing, config=config, hypers=hypers,
                    mano=mano_source)


def _chunks(seqs: dict, names: list[str], size: int,
            config: TrackConfig | None = None) -> list[list[str]]:
    """Names grouped by padded shape, in chunks of ``size``."""
    groups: dict = {}
    for name in names:
        groups.setdefault(_shape_key(seqs[name], config), []).append(name)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def _rerun_overflowing(batches: _Batches, results: dict, model: mano.ManoModel,
                       config: TrackConfig, max_doublings: int, info: dict) -> None:
    """Re-run each sequence of ``results`` whose rendering overflowed alone with doubled
    capacity; records in ``info`` the capacities that sufficed and the sequences that still
    overflow."""
    for name in [n for n in results if _overflowed(results[n])]:
        cfg = config
        for _ in range(max_doublings):
            cfg = cfg.doubled()
            batches.log(f"{name}: the rasterizer's pair list overflowed; re-running with "
                        f"pairs_per_face={cfg.pairs_per_face}")
            release_if_many()
            batches.more([name], cfg)
            results.update(batches.run_isolated([name], model, cfg))
            if name in results and not _overflowed(results[name]):
                info["capacity"][name] = cfg.pairs_per_face
                break
        else:
            info["overflow"].append(name)
            batches.log(f"warning: {name} still overflows at pairs_per_face="
                        f"{cfg.pairs_per_face}; its result is flagged")


def evaluate_run(run: TrackRun, seqs: dict[str, data.Sequence]) -> dict[str, dict | list]:
    """Metrics of every tracked sequence with ground truth (a list over hypers for a grid)."""
    out = {}
    for name, res in run.results.items():
        seq = seqs[name]
        if seq.gt is None:
            continue
        model = run.mano.model(seq.side)
        sym = true_symmetry(seq)  # once per sequence, not per setting of a grid
        out[name] = ([evaluate_sequence(r, seq, model, symmetry=sym) for r in res]
                     if isinstance(res, list) else evaluate_sequence(res, seq, model,
                                                                     symmetry=sym))
    return out


def jsonable(x):
    """Plain JSON values (NaN and inf become null; arrays become lists)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def settings_meta(run: TrackRun) -> dict:
    """The settings a result was tracked with (static config and every traced number)."""
    hyper = [jax.tree.map(lambda v: np.asarray(v).tolist(), h) for h in run.hypers]
    return {"config": dataclasses.asdict(run.config),
            "hyper": [dataclasses.asdict(h) if dataclasses.is_dataclass(h) else h
                      for h in hyper]}


def save_run(out: str | Path, run: TrackRun, seqs: dict[str, data.Sequence], *,
             meta: dict | None = None, evals: dict | None = None,
             part: int | None = None, inputs: dict[str, dict] | None = None) -> dict:
    """Write every result (``out/<name>/result.{json,npz}`` with the settings, the MANO
    model's identity and ``meta``), per-sequence ``metrics.json`` where there is ground truth,
    and ``summary.json``; returns the summary (``summary``: across sequences, ``per_sequence``,
    ``skipped``, ``overflow``, ``warnings`` (per sequence: suspect input and inactive loss
    terms, :mod:`hoijax.tracking._checks`), ``terms_active`` (per sequence and step-2 term: the
    fraction of processed frames where it was active), ``capacity``, ``timing``). ``evals``: :func:`evaluate_run`'s,
    when the caller has them already. ``part``: this is process ``part`` of a distributed
    run: its report goes to ``.part_<part>.json`` for :func:`gather_run`, not to
    ``summary.json``. ``inputs``: per sequence, where its inputs came from (a converted
    sequence's manifest ``meta``); it goes into that result's ``meta["input"]``, and its
    ``oracle`` list (ground truth fed in as input, e.g. ``["keypoints"]``; empty when absent)
    into ``meta["oracle"]``, so a result always says whether it used ground truth."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evals = evaluate_run(run, seqs) if evals is None else evals
    settings = settings_meta(run)
    flags, active = {}, {}
    for name, res in run.results.items():
        if isinstance(res, list):
            continue  # ablation grids are tabulated, not saved per setting
        side = seqs[name].side
        source = (inputs or {}).get(name, {})
        w = run.hypers[0].weights
        in_hand = run.config.interact_in_hand
        warn = [*source.get("warnings", []), *input_warnings(seqs[name]),
                *term_warnings(seqs[name], res, float(w.dino), float(w.depth),
                               float(w.interact), in_hand)]
        active[name] = term_activity(res, in_hand)
        if warn:
            flags[name] = list(dict.fromkeys(warn))  # in order, once each
        save_result(res, out / name, meta={
            "sequence": name, "oracle": sorted(source.get("oracle", [])), "input": source,
            "warnings": flags.get(name, []), "terms_active": active[name],
            "mano": run.mano.identity(side),
            "pairs_per_face": run.capacity.get(name, run.config.pairs_per_face),
            "overflow": name in run.overflow, **settings, **(meta or {})})
        if name in evals:
            (out / name / "metrics.json").write_text(json.dumps(jsonable(evals[name]),
                                                                indent=2))
    single = {n: e for n, e in evals.items() if not isinstance(e, list)}
    report = {
        "summary": summarize(list(single.values())) if single else {},
        "per_sequence": {n: jsonable(sequence_row(e)) for n, e in single.items()},
        "skipped": dict(run.errors), "overflow": list(run.overflow),
        "warnings": flags, "terms_active": active,
        "capacity": dict(run.capacity), "timing": run.timing, **(meta or {}),
    }
    name = "summary.json" if part is None else f".part_{part}.json"
    (out / name).write_text(json.dumps(jsonable(report), indent=2))
    return report


def gather_run(out: str | Path) -> dict:
    """``summary.json`` of a distributed run from what its processes wrote under ``out`` (the
    per-sequence ``metrics.json`` and each process's ``.part_<i>.json``); returns it."""
    out = Path(out)
    parts = [json.loads(p.read_text()) for p in sorted(out.glob(".part_*.json"))]
    evals = {}
    for d in sorted(p.parent for p in out.glob("*/metrics.json")):
        ev = json.loads((d / "metrics.json").read_text())
        ev["per_frame"] = {k: np.asarray([np.nan if v is None else v for v in vals], float)
                           for k, vals in ev["per_frame"].items()}
        ev["mean"] = {k: np.nan if v is None else v for k, v in ev["mean"].items()}
        evals[d.name] = ev
    report = {
        "summary": summarize(list(evals.values())) if evals else {},
        "per_sequence": {n: sequence_row(e) for n, e in evals.items()},
        "skipped": {k: v for p in parts for k, v in p["skipped"].items()},
        "overflow": [n for p in parts for n in p["overflow"]],
        "warnings": {k: v for p in parts for k, v in p.get("warnings", {}).items()},
        "terms_active": {k: v for p in parts for k, v in p.get("terms_active", {}).items()},
        "capacity": {k: v for p in parts for k, v in p["capacity"].items()},
        "timing": {"processes": [p["timing"] for p in parts]},
    }
    (out / "summary.json").write_text(json.dumps(jsonable(report), indent=2))
    return report
