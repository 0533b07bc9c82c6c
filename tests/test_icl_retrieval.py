"""EgoHandICL template retrieval: hand type first, nearest text second, the query excluded;
the built-in text embedder; NaN-free cosine similarity at zero vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import icl


def test_text_embedder_is_deterministic_normalized_and_spelling_aware():
    a = icl.hashed_text_embedding("right hand holding the red mug on the kitchen counter")
    b = icl.hashed_text_embedding("Right hand  holding the red mug on the kitchen counter")
    c = icl.hashed_text_embedding("right hand holding the red mug on the office desk")
    d = icl.hashed_text_embedding("both hands typing on a laptop in dim light")
    assert a.shape == (icl.DEFAULT_TEXT_DIM,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(a, b)  # case and whitespace normalized
    assert a @ c > a @ d + 0.2  # shared words → more similar
    assert np.all(icl.hashed_text_embedding("") == 0)
    e = icl.embed_texts(["x y z", "right hand"], dim=16)
    assert e.shape == (2, 16)
    np.testing.assert_allclose(e[1], icl.hashed_text_embedding("right hand", 16))


def _db():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 8)).astype(np.float32)
    types = np.array([icl.RIGHT, icl.LEFT, icl.RIGHT, icl.BOTH, icl.RIGHT, icl.LEFT], np.int32)
    return types, text


def test_retrieval_prefers_type_then_nearest_text_and_excludes_the_query():
    types, text = _db()
    # A query whose text equals entry 1 (LEFT) but whose type is RIGHT: entry 1 is skipped.
    q = text[1] * 3.0
    sims = text @ q / np.linalg.norm(text, axis=1) / np.linalg.norm(q)
    right_rows = np.flatnonzero(types == icl.RIGHT)
    expect = right_rows[np.argmax(sims[right_rows])]
    r = icl.retrieve_template(types, text, icl.RIGHT, q)
    assert int(r.index) == expect and bool(r.type_matched)
    assert float(r.similarity) == pytest.approx(sims[expect], abs=1e-6)
    # Same type: the identical text wins, unless it is excluded (the query itself).
    r = icl.retrieve_template(types, text, icl.LEFT, q)
    assert int(r.index) == 1 and float(r.similarity) == pytest.approx(1.0, abs=1e-6)
    r = icl.retrieve_template(types, text, icl.LEFT, q, exclude_index=1)
    assert int(r.index) == 5  # the only other LEFT entry
    # The only BOTH entry excluded: fall back to the nearest entry of any type, flagged.
    r = icl.retrieve_template(types, text, icl.BOTH, text[3], exclude_index=3)
    sims3 = text @ text[3] / np.linalg.norm(text, axis=1) / np.linalg.norm(text[3])
    sims3[3] = -np.inf
    assert int(r.index) == int(np.argmax(sims3)) and not bool(r.type_matched)


def test_batched_retrieval_matches_single_queries_and_compiles_once():
    types, text = _db()
    rng = np.random.default_rng(1)
    q_text = rng.normal(size=(5, 8)).astype(np.float32)
    q_types = np.array([icl.RIGHT, icl.LEFT, icl.BOTH, icl.NONE, icl.RIGHT], np.int32)
    exclude = np.array([0, -1, 3, -1, 4], np.int32)
    batch = icl.retrieve_templates(types, text, q_types, q_text, exclude)
    for i in range(5):
        one = icl.retrieve_template(types, text, q_types[i], q_text[i], exclude[i])
        assert int(batch.index[i]) == int(one.index)
        assert bool(batch.type_matched[i]) == bool(one.type_matched)
    assert int(batch.index[0]) != 0 and int(batch.index[2]) != 3
    assert not bool(batch.type_matched[3])  # no NONE entry in the database


def test_retrieve_for_pairs_frames_of_the_same_hand_type():
    data, meta = icl.make_synthetic_icl(icl.SyntheticIclConfig(num_scenes=6, frames_per_scene=5,
                                                               seed=3))
    r = icl.retrieve_for(data, data, exclude_index=np.arange(data.num_frames))
    idx = np.asarray(r.index)
    types = icl.hand_types(data)
    assert np.all(idx != np.arange(data.num_frames))
    matched = np.asarray(r.type_matched)
    assert np.all(types[idx][matched] == types[matched])
    # Descriptions share the scene's words: most templates come from the query's scene.
    assert np.mean(meta["scene_id"][idx] == meta["scene_id"]) > 0.7


def test_cosine_similarity_is_nan_free_at_zero_vectors():
    z = jnp.zeros(4)
    v = jnp.array([1.0, 2.0, 0.0, -1.0])
    assert float(icl.cosine_similarity(z, v)) == 0.0
    g = jax.grad(lambda a: icl.cosine_similarity(a, v))(z)
    assert np.all(np.isfinite(np.asarray(g)))
    g2 = jax.grad(lambda a: icl.cosine_similarity(a, a))(z)
    assert np.all(np.isfinite(np.asarray(g2)))
    with jax.enable_x64(True):
        from jax.test_util import check_grads

        a = jnp.array([0.3, -1.2, 0.5, 2.0])
        check_grads(lambda x: icl.cosine_similarity(x, v.astype(jnp.float64)), (a,), order=1,
                    modes=("rev",), eps=1e-6)
