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
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hoijax import data, mano
from hoijax.tracking._evaluate import evaluate_sequence, save_result, summarize
from hoijax.tracking._settings import TrackConfig, TrackHyper, stack_hypers
from hoijax.tracking._track import (
    Progress,
    TrackResult,
    ablate_batch,
    prepare,
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


def _shape_key(seq: data.Sequence):
    """Sequences that can share a padded batch: one side, one image and feature size, the
    same optional parts."""
    optional = tuple(getattr(seq, f) is None for f in ("depth_m", "features", "rgb",
                                                          "T_cam_obj_init", "gt"))
    feat = None if seq.features is None else tuple(seq.features.shape[1:])
    return seq.side, tuple(seq.image_size), feat, optional


def sequence_key(seed: int, name: str) -> jax.Array:
    """The random key of a sequence: its name's, so its result does not depend on its slot."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


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

    def run(self, names: list[str], model: mano.ManoModel, config: TrackConfig) -> dict:
        """Track ``names`` as one padded batch; per name its result (a list for a grid)."""
        batch = data.stack_sequences([self.seqs[n] for n in names])
        prep = stack_prepared([self.preps[n] for n in names])
        keys = jnp.stack([sequence_key(self.seed, n) for n in names])
        if self.grid:
            res = jax.block_until_ready(ablate_batch(batch, prep, model,
                                                     stack_hypers(self.hypers), config, keys,
                                                     self.progress))
            return {n: [jax.tree.map(lambda x, g=g, j=j: x[g, j], res)
                        for g in range(len(self.hypers))] for j, n in enumerate(names)}
        res = jax.block_until_ready(track_batch(batch, prep, model, self.hypers[0], config,
                                                keys, self.progress))
        return {n: jax.tree.map(lambda x, j=j: x[j], res) for j, n in enumerate(names)}

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
        for name in names:
            out.update(self.run_isolated([name], model, config))
        return out


def _overflowed(result) -> bool:
    rs = result if isinstance(result, list) else [result]
    return any(r.overflow is not None and bool(np.any(np.asarray(r.overflow))) for r in rs)


def track_sequences(
    seqs: dict[str, data.Sequence],
    mano_source: ManoSource,
    config: TrackConfig,
    hyper: TrackHyper | list[TrackHyper],
    *,
    seed: int = 0,
    batch_size: int = 8,
    sdf_resolution: int = 32,
    max_doublings: int = 3,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> TrackRun:
    """Track named sequences in batches of ``batch_size`` of one padded shape. ``hyper`` as a
    list tracks every sequence under every setting (an ablation grid, one program)."""
    grid = isinstance(hyper, list)
    hypers = hyper if grid else [hyper]
    batches = _Batches(seqs, {}, hypers, grid, seed, progress, {}, log)
    timing = {"prepare_s": 0.0, "track_s": 0.0, "batches": []}
    t0 = time.perf_counter()
    for name, seq in seqs.items():
        try:
            batches.preps[name] = prepare(seq, config, sdf_resolution=sdf_resolution, seed=seed)
        except Exception as e:  # noqa: BLE001 - any failure skips this sequence alone
            batches.errors[name] = f"preparation failed: {type(e).__name__}: {e}"
            log(f"skipped {name}: {batches.errors[name]}")
    timing["prepare_s"] = time.perf_counter() - t0
    groups: dict = {}
    for name in batches.preps:
        groups.setdefault(_shape_key(seqs[name]), []).append(name)
    results: dict = {}
    for key, names in groups.items():
        for start in range(0, len(names), batch_size):
            chunk = names[start:start + batch_size]
            t0 = time.perf_counter()
            results.update(batches.run_isolated(chunk, mano_source.model(key[0]), config))
            timing["batches"].append({"sequences": len(chunk),
                                      "seconds": time.perf_counter() - t0})
            timing["track_s"] += timing["batches"][-1]["seconds"]
    capacity, still = _rerun_overflowing(batches, results, mano_source, config, max_doublings)
    return TrackRun(results=results, errors=batches.errors, overflow=still, capacity=capacity,
                    timing=timing, config=config, hypers=hypers, mano=mano_source)


def _rerun_overflowing(batches: _Batches, results: dict, mano_source: ManoSource,
                       config: TrackConfig, max_doublings: int) -> tuple[dict, list]:
    """Re-run each sequence whose rendering overflowed alone with doubled capacity; returns the
    capacities that sufficed and the sequences that still overflow."""
    capacity, still = {}, []
    for name in [n for n in results if _overflowed(results[n])]:
        cfg, model = config, mano_source.model(batches.seqs[name].side)
        for _ in range(max_doublings):
            cfg = cfg.doubled()
            batches.log(f"{name}: the rasterizer's pair list overflowed; re-running with "
                        f"pairs_per_face={cfg.pairs_per_face}")
            results.update(batches.run_isolated([name], model, cfg))
            if name in results and not _overflowed(results[name]):
                capacity[name] = cfg.pairs_per_face
                break
        else:
            still.append(name)
            batches.log(f"warning: {name} still overflows at pairs_per_face="
                        f"{cfg.pairs_per_face}; its result is flagged")
    return capacity, still


def evaluate_run(run: TrackRun, seqs: dict[str, data.Sequence]) -> dict[str, dict | list]:
    """Metrics of every tracked sequence with ground truth (a list over hypers for a grid)."""
    out = {}
    for name, res in run.results.items():
        seq = seqs[name]
        if seq.gt is None:
            continue
        model = run.mano.model(seq.side)
        out[name] = ([evaluate_sequence(r, seq, model) for r in res] if isinstance(res, list)
                     else evaluate_sequence(res, seq, model))
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
             meta: dict | None = None, evals: dict | None = None) -> dict:
    """Write every result (``out/<name>/result.{json,npz}`` with the settings, the MANO
    model's identity and ``meta``), per-sequence ``metrics.json`` where there is ground truth,
    and ``summary.json``; returns the summary (``summary``: across sequences, ``per_sequence``,
    ``skipped``, ``overflow``, ``capacity``, ``timing``). ``evals``: :func:`evaluate_run`'s,
    when the caller has them already."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evals = evaluate_run(run, seqs) if evals is None else evals
    settings = settings_meta(run)
    for name, res in run.results.items():
        if isinstance(res, list):
            continue  # ablation grids are tabulated, not saved per setting
        side = seqs[name].side
        save_result(res, out / name, meta={
            "sequence": name, "mano": run.mano.identity(side),
            "pairs_per_face": run.capacity.get(name, run.config.pairs_per_face),
            "overflow": name in run.overflow, **settings, **(meta or {})})
        if name in evals:
            (out / name / "metrics.json").write_text(json.dumps(jsonable(evals[name]),
                                                                indent=2))
    single = {n: e for n, e in evals.items() if not isinstance(e, list)}
    report = {
        "summary": summarize(list(single.values())) if single else {},
        "per_sequence": {n: jsonable({**e["mean"], "failed": e["failed"],
                                      "obj_scale_err_pct": e["obj_scale_err_pct"]})
                         for n, e in single.items()},
        "skipped": dict(run.errors), "overflow": list(run.overflow),
        "capacity": dict(run.capacity), "timing": run.timing, **(meta or {}),
    }
    (out / "summary.json").write_text(json.dumps(jsonable(report), indent=2))
    return report
