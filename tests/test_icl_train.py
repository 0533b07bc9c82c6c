"""EgoHandICL training: resumable data order, orbax checkpoint round trip, a resumed run equal to
an uninterrupted one, the loss going down, the CLI's run folder; data files and the synthetic
generator's structure (templates from the same scene carry the query's systematic error)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import icl
from hoijax.cli._icl import IclEval, IclTrain, run_icl_eval, run_icl_train

TINY = icl.IclConfig(d_model=16, num_heads=2, num_layers=1, text_slots=1)


@pytest.fixture(scope="module")
def tiny_data():
    syn = icl.SyntheticIclConfig(num_scenes=4, frames_per_scene=6, num_patches=4, feature_dim=8,
                                 text_dim=16, seed=1)
    data, meta = icl.make_synthetic_icl(syn)
    r = icl.retrieve_for(data, data, exclude_index=np.arange(data.num_frames))
    return data, meta, np.asarray(r.index)


def test_trainable_and_init_params_refuse_what_the_model_lacks(tiny_data):
    """``TrainConfig.trainable`` and ``train_icl(init_params=...)`` name parameters of the
    model, with its shapes (that held parameters stay bit-equal: the CLI test below)."""
    data, _, tpl = tiny_data
    gated = icl.IclConfig(**{**TINY.to_dict(), "sides": TINY.sides, "template_gate": "relevance"})
    cfg = icl.TrainConfig(total_steps=1, batch_size=8, trainable=("gate",))
    with pytest.raises(ValueError, match="trainable names"):
        icl.train_icl(gated, cfg, data, tpl, progress=False)
    with pytest.raises(ValueError, match="not a parameter"):
        icl.train_icl(gated, cfg, data, tpl, progress=False, init_params={"gate": {}})
    _, p, c = np.shape(data.image_features)
    given = icl.init_icl_params(TINY, p, c, np.shape(data.text_embedding)[1])
    with pytest.raises(ValueError, match="shapes"):
        icl.train_icl(gated, cfg, data, tpl, progress=False,
                      init_params={"decoder": given["mask_token"]})
    with pytest.raises(ValueError, match="without a gate"):
        icl.calibrate_gate(given, gated, cfg, data, tpl)


def test_data_order_is_a_pure_function_of_seed_and_step():
    n, b = 23, 5  # 4 batches per epoch, 3 frames dropped
    epoch0 = np.concatenate([icl.batch_indices(7, s, n, b) for s in range(4)])
    assert len(set(epoch0.tolist())) == 20  # no repeats within an epoch
    np.testing.assert_array_equal(epoch0, icl.epoch_permutation(7, 0, n)[:20])
    epoch1 = np.concatenate([icl.batch_indices(7, s, n, b) for s in range(4, 8)])
    assert not np.array_equal(epoch0, epoch1)  # reshuffled per epoch
    np.testing.assert_array_equal(icl.batch_indices(7, 6, n, b), icl.batch_indices(7, 6, n, b))
    assert not np.array_equal(icl.batch_indices(8, 0, n, b), icl.batch_indices(7, 0, n, b))
    with pytest.raises(ValueError, match="batch size"):
        icl.batch_indices(0, 0, 3, 5)


def test_checkpoint_round_trip_resume_equals_uninterrupted_run_and_loss_drops(tiny_data,
                                                                              tmp_path):
    data, _, tpl = tiny_data
    cfg = icl.TrainConfig(total_steps=40, batch_size=8, warmup_steps=4, checkpoint_every=10,
                          log_every=5, learning_rate=3e-3)
    straight = icl.train_icl(TINY, cfg, data, tpl, checkpoint_dir=tmp_path / "a", progress=False)
    assert straight.step == 40 and len(straight.losses) == 40
    assert straight.losses[-10:].mean() < 0.7 * straight.losses[:10].mean()  # it learns
    # Round trip: the stored parameters and history are the returned ones.
    state, history = icl.restore_checkpoint(tmp_path / "a")
    assert int(state["step"]) == 40
    for x, y in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(history["losses"], straight.losses, rtol=1e-7)
    assert history["model_config"] == TINY.to_dict()
    # "Killed" after 20 steps, then resumed: the same losses from step 20 on, the same end.
    first = icl.train_icl(TINY, cfg, data, tpl, checkpoint_dir=tmp_path / "b", stop_at_step=20,
                          progress=False)
    assert first.step == 20
    resumed = icl.train_icl(TINY, cfg, data, tpl, checkpoint_dir=tmp_path / "b", progress=False)
    assert resumed.start_step == 20 and resumed.step == 40
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-6, atol=1e-7)
    for x, y in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # A different seed is a different run (the comparison above is not vacuous).
    other = icl.train_icl(TINY, dataclasses.replace(cfg, seed=1), data, tpl, stop_at_step=4,
                          progress=False)
    assert not np.allclose(other.losses, straight.losses[:4])


# Slow: three training and evaluation programs (125 s on 2 cores). Training and resume are
# checked in the default run above; the gate trained alone (`--gate-steps`) only here.
@pytest.mark.slow
def test_cli_train_then_eval_writes_the_run_folder(tmp_path):
    """The run folder of ``hoijax icl-train`` with a gate trained alone after the model
    (``--gate-steps``), evaluated again by ``hoijax icl-eval`` (the gated model, from its own
    checkpoints)."""
    out = tmp_path / "run"
    rc = run_icl_train(IclTrain(out=out, steps=4, batch_size=8, scenes=8, frames_per_scene=4,
                                test_scenes=4, d_model=16, num_heads=2, num_layers=1,
                                checkpoint_every=2, progress=False, scenes_per_setup=4,
                                setup_error_fraction=0.5, distractor_templates=0.5,
                                template_gate="relevance", gate_steps=2))
    assert rc == 0
    meta = json.loads((out / "run.json").read_text())
    source = meta["source"]["synthetic"]
    assert (source["scenes_per_setup"], source["setup_error_fraction"]) == (4, 0.5)
    assert meta["model_config"]["template_gate"] == "off"
    assert meta["gate"]["model_config"]["template_gate"] == "relevance"
    for name in ("run.json", "loss_curve.png", "metrics.json", "data/train.npz",
                 "data/test.npz", "checkpoints", "checkpoints_gate"):
        assert (out / name).exists(), name
    # The gate trained alone: every parameter of the model bit-equal, the gate's moved.
    gated, _ = icl.restore_checkpoint(out / "checkpoints_gate")
    plain, _ = icl.restore_checkpoint(out / "checkpoints")
    assert int(gated["step"]) == 2 and int(plain["step"]) == 4
    assert set(gated["params"]) == set(plain["params"]) | set(icl.GATE_PARAMS["relevance"])
    for x, y in zip(jax.tree.leaves({k: gated["params"][k] for k in plain["params"]}),
                    jax.tree.leaves(plain["params"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.abs(np.asarray(gated["params"]["gate_out"]["bias"])).max() > 1e-3
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["metrics"]) == {"coarse", "icl", "icl_no_template"}
    assert m["metrics"]["coarse"]["num_two_hand_frames"] > 0
    for k in ("P-MPJPE_mm", "P-MPVPE_mm", "F@5", "F@15", "MRRPE_mm"):
        assert np.isfinite(m["metrics"]["coarse"][k]), k
    # A 4-step model barely moves: the refinement is still close to its coarse input.
    assert m["metrics"]["icl"]["P-MPVPE_mm"] == pytest.approx(
        m["metrics"]["coarse"]["P-MPVPE_mm"], rel=0.2)
    rc = run_icl_eval(IclEval(run=out, out=tmp_path / "eval.json"))
    assert rc == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["metrics"]["icl"]["P-MPVPE_mm"] == pytest.approx(
        m["metrics"]["icl"]["P-MPVPE_mm"], rel=1e-5)
    assert run_icl_eval(IclEval(run=tmp_path / "missing")) == 2
    # A gate's steps without a gate are refused before anything is written.
    assert run_icl_train(IclTrain(out=tmp_path / "refused", gate_steps=10)) == 2
    assert not (tmp_path / "refused").exists()


def test_data_files_round_trip_and_name_the_bad_field(tiny_data, tmp_path):
    data, _, _ = tiny_data
    path = icl.save_icl_data(tmp_path / "d.npz", data)
    back = icl.load_icl_data(path)
    np.testing.assert_array_equal(back.coarse, data.coarse)
    assert back.presence.dtype == bool
    arrays = {f: np.asarray(getattr(data, f)) for f in data.__dataclass_fields__}
    arrays["coarse"] = arrays["coarse"][:, :, :60]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(icl.IclDataError, match="coarse"):
        icl.load_icl_data(tmp_path / "bad.npz")
    del arrays["coarse"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(icl.IclDataError, match="missing"):
        icl.load_icl_data(tmp_path / "missing.npz")


def test_synthetic_templates_carry_the_scene_error(tiny_data):
    """The generator's premise: within a scene, coarse − gt is correlated (the scene's
    systematic error), so a same-scene template's error predicts the query's."""
    data, meta, tpl = tiny_data
    err = np.asarray(data.coarse - data.gt)[:, :, 3:48]  # articulation errors
    both = np.asarray(data.presence) & np.asarray(data.presence)[tpl]
    ok = both & ~meta["confused"][:, None] & ~meta["confused"][tpl][:, None]
    same = meta["scene_id"][tpl] == meta["scene_id"]
    resid_tpl = err - err[tpl]
    pick = ok & same[:, None]
    assert pick.sum() > 10
    # Subtracting the template's error removes most of the articulation error.
    assert np.linalg.norm(resid_tpl[pick]) < 0.6 * np.linalg.norm(err[pick])


def test_inference_episodes_train_on_exactly_the_inference_masks(tiny_data):
    """An example drawn as an inference episode sees the template target whole and the query
    target fully masked: its loss equals the loss at MAE ratios (template 0, query 1), whatever
    the MAE ratio; at probability 0 the option changes nothing."""
    data, _, tpl = tiny_data
    _, p, c = np.shape(data.image_features)
    params = icl.init_icl_params(TINY, p, c, np.shape(data.text_embedding)[1])
    models, pn = icl.hand_models(TINY.sides), icl.init_pointnet()
    weights = jax.tree.map(jnp.asarray, icl.TrainConfig().loss_weights())
    q = jnp.arange(8)

    @jax.jit
    def loss_fn(ratios, episodes):
        return icl.batch_loss(params, TINY, data, data, q, jnp.asarray(tpl)[q], jax.random.key(3),
                              ratios, jnp.float32(0.0), weights, models, pn,
                              inference_episodes=episodes)[0]

    def loss(ratio, episodes):  # ratio: (template, query), or one for both
        return float(loss_fn(jnp.broadcast_to(jnp.float32(ratio), (2,)), jnp.float32(episodes)))

    as_inference = loss([0.0, 1.0], 0.0)
    assert loss(0.7, 1.0) == pytest.approx(as_inference, rel=1e-6)
    assert loss(0.3, 1.0) == pytest.approx(as_inference, rel=1e-6)
    assert loss(0.7, 0.0) != pytest.approx(as_inference, rel=1e-3)  # the masks do matter
    assert loss(0.7, 0.0) == loss(0.7, 0.0)


def test_distractor_templates_are_random_frames_of_the_query_hand_type():
    from hoijax.icl._train import _type_table, _with_distractors

    db_types = np.array([0, 1, 1, 2, 0, 1, 2, 1])
    q_types = np.array([1, 0, 2, 3])  # type 3 ("none") has no database rows
    table, counts, qt = map(jnp.asarray, _type_table(q_types, db_types))
    q = jnp.arange(4)
    retrieved = jnp.array([5, 4, 6, 0])
    kept = _with_distractors(jax.random.key(0), q, retrieved, table, counts, qt, 0.0)
    np.testing.assert_array_equal(kept, retrieved)
    draws = np.stack([np.asarray(_with_distractors(jax.random.key(s), q, retrieved, table,
                                                   counts, qt, 1.0)) for s in range(64)])
    for i in range(3):  # always a row of the query's type, and every such row comes up
        assert set(draws[:, i].tolist()) == set(np.flatnonzero(db_types == q_types[i]).tolist())
    np.testing.assert_array_equal(draws[:, 3], 0)  # no row of its type: the retrieved one stays
    # When the database is the training data, a query is never its own template.
    t_own, c_own, q_own = map(jnp.asarray, _type_table(db_types, db_types))
    q8, tpl8 = jnp.arange(8), jnp.array([4, 2, 1, 6, 0, 7, 3, 5])
    own = np.stack([np.asarray(_with_distractors(jax.random.key(s), q8, tpl8, t_own, c_own,
                                                 q_own, 1.0, True)) for s in range(64)])
    assert not (own == np.arange(8)).any()
    assert set(own[:, 1].tolist()) == {2, 5, 7}  # the other rows of its type all come up
    mixed = np.stack([np.asarray(_with_distractors(jax.random.key(s), q8, tpl8, t_own, c_own,
                                                   q_own, 1.0, False)) for s in range(64)])
    assert (mixed == np.arange(8)).any()  # without the flag a query may draw itself
    half = np.stack([np.asarray(_with_distractors(jax.random.key(s), q, retrieved, table,
                                                  counts, qt, 0.5)) for s in range(200)])
    # Replaced half the time, and then a different row with probability 3/4, 1/2, 1/2.
    replaced = np.mean(half[:, :3] != np.asarray(retrieved)[:3])
    assert 0.22 < replaced < 0.36  # expected 0.29


def test_distractor_templates_stay_in_the_query_group():
    from hoijax.icl._train import _type_table, _with_distractors

    db_types = np.array([1, 1, 1, 1, 0, 0])
    db_groups = np.array([0, 0, 1, 1, 0, 1])
    q_types, q_groups = np.array([1, 1, 0, 0]), np.array([0, 1, 1, 2])  # group 2: no rows
    table, counts, qk = map(jnp.asarray, _type_table(q_types, db_types, q_groups, db_groups))
    q, retrieved = jnp.arange(4), jnp.array([2, 0, 4, 3])
    draws = np.stack([np.asarray(_with_distractors(jax.random.key(s), q, retrieved, table,
                                                   counts, qk, 1.0)) for s in range(64)])
    assert set(draws[:, 0].tolist()) == {0, 1}  # type 1 of group 0, every such row
    assert set(draws[:, 1].tolist()) == {2, 3}
    assert set(draws[:, 2].tolist()) == {5}
    np.testing.assert_array_equal(draws[:, 3], 3)  # nothing of its type in its group: kept


def test_setup_errors_are_shared_within_a_setup_and_leave_other_draws_unchanged():
    base = icl.SyntheticIclConfig(num_scenes=6, frames_per_scene=2, num_patches=4,
                                  feature_dim=8, text_dim=16, word_error_fraction=0.0, seed=5)
    d0, m0 = icl.make_synthetic_icl(base)
    # Setups without a shared error draw exactly the data of a draw without setups.
    d_same, m_same = icl.make_synthetic_icl(dataclasses.replace(base, scenes_per_setup=3))
    np.testing.assert_array_equal(d_same.coarse, d0.coarse)
    np.testing.assert_array_equal(m_same["setup_id"], np.repeat([0, 0, 0, 1, 1, 1], 2))
    np.testing.assert_array_equal(m0["setup_id"], 0)
    f = 0.8
    d1, m1 = icl.make_synthetic_icl(dataclasses.replace(base, scenes_per_setup=3,
                                                        setup_error_fraction=f))
    np.testing.assert_array_equal(d1.gt, d0.gt)  # only the detector's error changes
    assert not np.allclose(d1.coarse, d0.coarse)
    # error = f · setup's + sqrt(1 - f²) · scene's own (the same draw as without setups)
    shared = (m1["scene_error"] - np.sqrt(1 - f * f) * m0["scene_error"]) / f
    np.testing.assert_allclose(shared[1:3], shared[[0, 0]], atol=1e-12)
    np.testing.assert_allclose(shared[4:6], shared[[3, 3]], atol=1e-12)
    assert np.abs(shared[3] - shared[0]).max() > 0.1
    with pytest.raises(ValueError, match="setup_error_fraction"):
        icl.make_synthetic_icl(dataclasses.replace(base, word_error_fraction=0.8,
                                                   setup_error_fraction=0.8))
