"""EgoHandICL data from arrays: frames, the template database, pairing and a resumable order.

A dataset (and a template database: the same structure) is an :class:`IclData` of ``N`` frames.
Training pairs every frame with its retrieved template (:func:`retrieve_for`, the frame itself
excluded). The data order is a seeded permutation per epoch (:func:`batch_indices`): the batch
of step ``s`` is a pure function of ``(seed, s)``, so a resumed run sees the same batches as an
uninterrupted one.

Files: :func:`save_icl_data` / :func:`load_icl_data` (one ``.npz`` with the field names below);
loading checks every shape and names the field that is wrong.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from hoijax import mano
from hoijax.icl._model import IclExample
from hoijax.icl._params import NUM_HAND_PARAMS, TWO_HANDS, hand_type_id
from hoijax.icl._retrieval import Retrieval, retrieve_templates

_FIELDS = ("image_features", "text_embedding", "coarse", "gt", "presence", "keypoints_gt",
           "has_mano_gt", "keypoints_valid")
_OPTIONAL_FIELDS = ("keypoints_valid",)
"""Fields a file may omit: ``keypoints_valid`` defaults to every joint of a present hand."""


class IclDataError(ValueError):
    """An EgoHandICL array file or dict is malformed (the message names the field)."""


class IclData(eqx.Module):
    """``N`` frames (NumPy or JAX arrays). ``P`` patches × ``C`` feature channels, text width
    ``D``, ``H`` hand slots (see :mod:`hoijax.icl._params` for the 61-vector)."""

    image_features: Float[ArrayLike, "N P C"]
    """Image patch features (ViT tokens or precomputed)."""
    text_embedding: Float[ArrayLike, "N D"]
    """Text-description embeddings (any encoder; :func:`hoijax.icl.embed_texts` by default)."""
    coarse: Float[ArrayLike, "N H 61"]
    """Coarse MANO estimates (the detector's output)."""
    gt: Float[ArrayLike, "N H 61"]
    """Ground-truth MANO (any values where ``has_mano_gt`` is False)."""
    presence: Bool[ArrayLike, "N H"]
    """Hand slots present in the frame."""
    keypoints_gt: Float[ArrayLike, "N H 21 3"]
    """Ground-truth 3D keypoints, metres, OpenPose order (smplx tips)."""
    has_mano_gt: Bool[ArrayLike, " N"]
    """Frames whose MANO ground truth is known (else only ``keypoints_gt`` supervises)."""
    keypoints_valid: Bool[ArrayLike, "N H 21"]
    """Annotated joints of ``keypoints_gt`` (EgoExo4D leaves some joints out); all joints of a
    present hand for MANO-annotated data (:func:`all_joints_valid`)."""

    @property
    def num_frames(self) -> int:
        return int(self.coarse.shape[0])

    def take(self, index) -> IclData:
        """The frames at ``index`` (host-side gather)."""
        return jax.tree.map(lambda x: x[np.asarray(index)], self)

    def to_device(self) -> IclData:
        return jax.tree.map(jnp.asarray, self)

    def to_numpy(self) -> IclData:
        return jax.tree.map(np.asarray, self)


def all_joints_valid(presence: Bool[ArrayLike, "N H"]) -> Bool[np.ndarray, "N H 21"]:
    """``keypoints_valid`` when every joint of every present hand is annotated."""
    p = np.asarray(presence, bool)
    return np.repeat(p[..., None], 21, axis=-1)


def _validate_arrays(arrays: dict, sides: Sequence[mano.Side], source: str) -> None:
    h = len(sides)
    shape0 = np.shape(arrays["image_features"])
    if len(shape0) != 3:
        raise IclDataError(f"{source}: field 'image_features' must be (N, P, C), got {shape0}")
    n = shape0[0]
    expected = {
        "text_embedding": (n, None), "coarse": (n, h, NUM_HAND_PARAMS),
        "gt": (n, h, NUM_HAND_PARAMS), "presence": (n, h), "keypoints_gt": (n, h, 21, 3),
        "has_mano_gt": (n,), "keypoints_valid": (n, h, 21),
    }
    for name, shape in expected.items():
        got = np.shape(arrays[name])
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise IclDataError(f"{source}: field {name!r} has shape {got}, expected "
                               f"{tuple('*' if s is None else s for s in shape)} for {n} frames "
                               f"and sides {tuple(sides)}")
    for name in ("image_features", "text_embedding", "coarse", "keypoints_gt"):
        if not np.all(np.isfinite(np.asarray(arrays[name]))):
            raise IclDataError(f"{source}: field {name!r} has non-finite values")


def validate_icl_data(data: IclData, sides: Sequence[mano.Side] = TWO_HANDS,
                      source: str = "data") -> IclData:
    """Check every field's shape against the others; raise :class:`IclDataError` naming it."""
    _validate_arrays({f: getattr(data, f) for f in _FIELDS}, sides, source)
    return data


def save_icl_data(path: str | Path, data: IclData) -> Path:
    """Write the frames as one ``.npz`` (fields by name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f: np.asarray(getattr(data, f)) for f in _FIELDS})
    return path


def load_icl_data(path: str | Path, sides: Sequence[mano.Side] = TWO_HANDS) -> IclData:
    """Read and validate an ``.npz`` written by :func:`save_icl_data` (or by hand)."""
    path = Path(path)
    with np.load(path) as z:
        missing = [f for f in _FIELDS if f not in z.files and f not in _OPTIONAL_FIELDS]
        if missing:
            raise IclDataError(f"{path}: missing field(s) {missing}")
        arrays = {f: z[f] for f in _FIELDS if f in z.files}
    arrays["presence"] = arrays["presence"].astype(bool)
    arrays["has_mano_gt"] = arrays["has_mano_gt"].astype(bool)
    if "keypoints_valid" not in arrays:
        arrays["keypoints_valid"] = all_joints_valid(arrays["presence"])
    arrays["keypoints_valid"] = arrays["keypoints_valid"].astype(bool)
    _validate_arrays(arrays, sides, str(path))
    return IclData(**arrays)


def concat_icl_data(*parts: IclData) -> IclData:
    """Frames of several datasets, in order."""
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)


def hand_types(data: IclData, sides: Sequence[mano.Side] = TWO_HANDS) -> Int[np.ndarray, " N"]:
    """Hand-type id of every frame (:data:`hoijax.icl.HAND_TYPES`)."""
    return np.asarray(jax.vmap(lambda p: hand_type_id(p, sides))(jnp.asarray(data.presence)))


def retrieve_for(
    queries: IclData,
    database: IclData,
    sides: Sequence[mano.Side] = TWO_HANDS,
    exclude_index: Int[np.ndarray, " Q"] | None = None,
    query_chunk: int = 512,
) -> Retrieval:
    """One template from ``database`` per query frame (same hand type, nearest text).

    ``exclude_index[q]`` is the database row of query ``q`` itself (``-1`` if it is not in the
    database); pass ``np.arange(N)`` when the queries are the database."""
    q = queries.num_frames
    exclude = np.full(q, -1, np.int32) if exclude_index is None else np.asarray(exclude_index,
                                                                                  np.int32)
    db_types, db_text = hand_types(database, sides), jnp.asarray(database.text_embedding)
    q_types, q_text = hand_types(queries, sides), np.asarray(queries.text_embedding)
    # Queries in fixed-size chunks (the last one padded): memory O(chunk × database), one
    # compilation.
    chunk = max(1, min(query_chunk, q))
    parts = []
    for s in range(0, q, chunk):
        idx = np.arange(s, min(s + chunk, q))
        pad = np.concatenate([idx, np.full(chunk - len(idx), idx[-1])])
        r = retrieve_templates(db_types, db_text, q_types[pad], jnp.asarray(q_text[pad]),
                               jnp.asarray(exclude[pad]))
        parts.append(jax.tree.map(lambda x, n=len(idx): np.asarray(x)[:n], r))
    if not parts:
        return retrieve_templates(db_types, db_text, q_types, jnp.asarray(q_text),
                                  jnp.asarray(exclude))
    return jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)), *parts)


def gather_examples(
    queries: IclData,
    database: IclData,
    query_index: Int[Array, " B"],
    template_index: Int[Array, " B"],
    *,
    hide_query_gt: bool = False,
) -> IclExample:
    """A batch of :class:`IclExample` (leading axis ``B``): query rows paired with database rows.

    Works on device arrays inside ``jit``. ``hide_query_gt`` zeroes the query ground truth
    (inference: the model never needs it, and zeros make that visible)."""
    qi, ti = jnp.asarray(query_index), jnp.asarray(template_index)
    q_gt = jnp.asarray(queries.gt)[qi]
    return IclExample(
        query_features=jnp.asarray(queries.image_features)[qi],
        query_text=jnp.asarray(queries.text_embedding)[qi],
        query_coarse=jnp.asarray(queries.coarse)[qi],
        query_presence=jnp.asarray(queries.presence)[qi],
        query_gt=jnp.zeros_like(q_gt) if hide_query_gt else q_gt,
        template_features=jnp.asarray(database.image_features)[ti],
        template_text=jnp.asarray(database.text_embedding)[ti],
        template_coarse=jnp.asarray(database.coarse)[ti],
        template_presence=jnp.asarray(database.presence)[ti],
        template_gt=jnp.asarray(database.gt)[ti],
    )


def epoch_permutation(seed: int, epoch: int, num_frames: int) -> Int[np.ndarray, " N"]:
    """The frame order of one epoch: a permutation seeded by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(num_frames).astype(np.int32)


def batch_indices(seed: int, step: int, num_frames: int, batch_size: int
                  ) -> Int[np.ndarray, " B"]:
    """Frames of training step ``step``: batches of the epoch's permutation, the last partial
    batch of each epoch dropped. A pure function of its arguments (resume-safe)."""
    per_epoch = num_frames // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {num_frames} training frames")
    epoch, i = divmod(step, per_epoch)
    return epoch_permutation(seed, epoch, num_frames)[i * batch_size:(i + 1) * batch_size]
