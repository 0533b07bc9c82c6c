"""TIGeR's network, training (exact resume, frozen phase 2), data layout and occlusion bins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import tiger

SMALL = tiger.TigerConfig(image_size=16, num_points=32, sa1_centroids=16, sa2_centroids=8,
                          group_size=4, sa1_widths=(8,), sa2_widths=(8,),
                          visual_widths=(4, 4, 8, 8), attention_hidden=8, fused_widths=(8, 8),
                          decoder_widths=((8,), (8,)), pose_widths=(4, 4, 4))
CROP = 32


def _data(n=8, seed=0) -> tiger.TigerData:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:CROP, :CROP]
    amodal = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100)[None].repeat(n, 0)
    visible = amodal & (xx < 16 + np.arange(n)[:, None, None])
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 15.5], [0, 0, 1]], np.float32)
    pts = rng.normal(scale=0.03, size=(n, 32, 3)).astype(np.float32)
    return tiger.TigerData(
        rgb=rng.integers(0, 255, size=(n, CROP, CROP, 3), dtype=np.uint8),
        K=np.repeat(K[None], n, 0), prior_obj=rng.normal(scale=0.03, size=(n, 32, 3)).astype(
            np.float32),
        points_obj=pts - pts.mean(1, keepdims=True),
        center_cam=np.c_[rng.normal(scale=0.02, size=(n, 2)), np.full(n, 0.5)].astype(
            np.float32),
        hand_joints=rng.normal(0, 0.03, size=(n, 21, 3)).astype(np.float32) + [0, 0, 0.5],
        hand_verts=np.zeros((n, 778, 3), np.float32), amodal_mask=amodal, visible_mask=visible,
        mapping=rng.integers(0, 32, size=(n, 32)).astype(np.int32),
        prior_source=np.zeros(n, np.int32))


@pytest.fixture(scope="module")
def params():
    """One set of SMALL parameters for the model-level tests (one compilation of init)."""
    return tiger.init_tiger_params(SMALL, jax.random.key(0), CROP)


@pytest.fixture(scope="module")
def cfg():
    """The training settings every training test shares (the compiled steps are reused)."""
    return tiger.TigerTrainConfig(steps=4, phase2_steps=2, batch_size=4, learning_rate=1e-3,
                                  phase2_learning_rate=1e-3, checkpoint_every=100, log_every=1)


def test_attention_rows_sum_to_one_and_untrained_network_returns_prior(params):
    d = _data()
    img = tiger.downsample_image(jnp.asarray(d.rgb[0], jnp.float32), SMALL.image_size)
    out = jax.jit(tiger.apply_tiger, static_argnums=(1, 5))(
        params, SMALL, img, jnp.asarray(d.K[0]), jnp.asarray(d.prior_obj[0]), CROP)
    assert out.attention1.shape == (SMALL.sa1_centroids, SMALL.grid1**2)
    assert out.attention2.shape == (SMALL.sa2_centroids, SMALL.grid2**2)
    np.testing.assert_allclose(np.asarray(out.attention1).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.attention2).sum(-1), 1.0, atol=1e-5)
    # The offset head starts at zero: refinement starts from the prior.
    np.testing.assert_allclose(np.asarray(out.points_obj), d.prior_obj[0], atol=1e-6)
    # The centre head unprojects its soft-argmax by K.
    uvd = np.asarray(out.obj_center_cam)
    np.testing.assert_allclose(uvd[:2] / uvd[2] * 40 + 15.5, np.asarray(out.obj_center_uv_px),
                               atol=1e-4)


def test_image_coordinates_are_the_cells_of_the_attention_targets():
    """``image_coords`` appends each cell's centre in [-1, 1]: mapped back to crop pixels it is
    the same grid L_weight's targets and the heatmaps use; the attention widens by two inputs."""
    from hoijax.tiger._model import _with_coords

    for grid in (4, 8):
        uv = np.asarray(_with_coords(jnp.zeros((grid * grid, 3)), grid))[:, -2:]
        np.testing.assert_allclose((uv + 1) / 2 * CROP - 0.5,
                                   np.asarray(tiger.cell_centers_px(grid, CROP)), atol=1e-5)
    cfg = SMALL.__class__(**{**SMALL.to_dict(), "image_coords": True})
    p = jax.eval_shape(lambda k: tiger.init_tiger_params(cfg, k, CROP), jax.random.key(0))
    base = jax.eval_shape(lambda k: tiger.init_tiger_params(SMALL, k, CROP), jax.random.key(0))
    for level in ("attention1", "attention2"):
        fused = [k for k in p[level] if k != "Dense_0" and k != "Dense_1"]
        assert fused == ["Dense_2"]
        assert p[level]["Dense_2"]["kernel"].shape[0] == \
            base[level]["Dense_2"]["kernel"].shape[0] + 2


def test_all_equal_prior_points_and_empty_mask_give_finite_gradients(params, cfg):
    # The training step itself (the one the resume test compiles, same shapes): its loss and
    # the global norm of the gradient over *every* parameter group (frozen ones included)
    # must be finite in both phases.
    from hoijax.tiger._train import _optimizers, _train_step

    d = _data()
    d = d.replace(prior_obj=np.full_like(d.prior_obj, 0.01),
                  amodal_mask=np.zeros_like(d.amodal_mask))
    batch = tiger.TigerBatchData(d, SMALL)
    opt1, opt2 = _optimizers(cfg.learning_rate, cfg.phase2_learning_rate, cfg.steps,
                             cfg.phase2_steps)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt1": opt1.init(params),
             "opt2": opt2.init(params)}
    for phase, opt in ((1, opt1), (2, opt2)):
        new, loss, terms = _train_step(state, jnp.arange(4), batch.arrays, cfg.loss_weights(),
                                       model_cfg=SMALL, opt=opt, crop_px=CROP, phase=phase)
        assert np.isfinite(float(loss))
        assert np.isfinite(float(terms["grad_norm"])) and float(terms["grad_norm"]) > 0
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(new["params"]))


def test_resume_equals_uninterrupted_run_and_phase2_freezes_encoders(tmp_path, cfg):
    d = _data()
    full = tiger.train_tiger(SMALL, cfg, d, progress=False)
    # Stopped at the end of phase 1, resumed through phase 2.
    part = tiger.train_tiger(SMALL, cfg, d, checkpoint_dir=tmp_path, stop_at_step=4,
                             progress=False)
    assert part.step == 4
    rest = tiger.train_tiger(SMALL, cfg, d, checkpoint_dir=tmp_path, progress=False)
    assert rest.start_step == 4 and rest.step == 6
    np.testing.assert_allclose(rest.losses, full.losses, rtol=0, atol=1e-6)
    for a, b in zip(jax.tree.leaves(rest.params), jax.tree.leaves(full.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # Phase 2 leaves the frozen groups exactly where phase 1 left them.
    p1 = part.params
    for name in tiger.FROZEN_IN_PHASE2:
        for a, b in zip(jax.tree.leaves(p1[name]), jax.tree.leaves(full.params[name])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree.leaves(p1["object_pose"]), jax.tree.leaves(full.params["object_pose"]))]
    assert any(moved)


def test_occlusion_rate_and_equal_count_bins():
    d = _data(23)
    r = tiger.occlusion_rate(d)
    vis, amo = d.visible_mask.sum((1, 2)), d.amodal_mask.sum((1, 2))
    np.testing.assert_allclose(r, 1 - (vis + 1) / (amo + 1))
    bins = tiger.occlusion_bins(r, 10)
    assert sorted(len(b) for b in bins) == [2] * 7 + [3] * 3
    assert np.array_equal(np.sort(np.concatenate(bins)), np.arange(23))
    assert all(r[a].max() <= r[b].min() for a, b in zip(bins[:-1], bins[1:]))


def test_npz_round_trip_and_validation_names_the_field(tmp_path):
    d = _data(3)
    path = tiger.save_tiger_data(tmp_path / "x.npz", d)
    back = tiger.load_tiger_data(path)
    for f in ("rgb", "prior_obj", "points_obj", "mapping", "amodal_mask"):
        np.testing.assert_array_equal(getattr(back, f), getattr(d, f))
    bad = dict(np.load(path))
    bad["hand_joints"] = bad["hand_joints"][:, :20]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(tiger.TigerDataError, match="hand_joints"):
        tiger.load_tiger_data(tmp_path / "bad.npz")



def test_synthetic_scenes_cycle_the_chosen_prior_sources():
    """Training scenes can be limited to priors that resemble the object (the paper's
    generated priors do); the default cycles all three; an unknown kind is refused by name."""
    from hoijax.tiger._synthetic import scene_prior_sources

    with pytest.raises(ValueError, match="bogus"):
        tiger.SyntheticTigerConfig(prior_sources=("instance", "bogus"))
    default = tiger.SyntheticTigerConfig()
    assert [scene_prior_sources(default, s)[0] for s in range(4)] == [0, 1, 2, 0]
    cfg = tiger.SyntheticTigerConfig(prior_sources=("noisy_gt", "instance"))
    assert [scene_prior_sources(cfg, s)[0] for s in range(4)] == [2, 1, 2, 1]
    assert scene_prior_sources(cfg, 3, all_priors=True) == (0, 1, 2)
