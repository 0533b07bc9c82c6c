"""The synthetic hand-object benchmark: self-consistency, occlusion control, determinism."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from hoijax import data, geometry, mano, render

# Small and fast; every test sequence uses the same image size and a face-count bucket, so the
# generator's rasterizer compiles once.
BASE = data.SyntheticConfig(num_frames=10, image_size=(64, 64), object_kind="box", speed=4.0,
                            seed=3)


@pytest.fixture(scope="module")
def clean():
    """Noise off, detector errors off, a normalized (wrong-scale) mesh."""
    return data.generate_sequence(
        dataclasses.replace(BASE, normalize_object_scale=True).noiseless())


@pytest.fixture(scope="module")
def noisy():
    return data.generate_sequence(dataclasses.replace(BASE, normalize_object_scale=True))


def _obj_verts_cam(seq, t):
    v = np.asarray(seq.mesh.vertices, np.float64) * np.asarray(seq.gt.obj_scale)
    T = np.asarray(seq.gt.T_cam_obj[t], np.float64)
    return v @ T[:3, :3].T + T[:3, 3]


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("kind", data.OBJECT_KINDS)
def test_objects_are_watertight_metric_and_small(kind):
    m = data.make_object_trimesh(kind, seed=1)
    assert m.is_watertight and m.is_volume and m.volume > 0
    assert len(m.faces) < 4096
    assert 0.05 < m.extents.max() < 0.25  # metric: hand-held sizes, metres
    np.testing.assert_allclose(m.bounds.mean(0), 0, atol=1e-9)  # centred on its box
    assert m.extents[0] >= m.extents[1] >= m.extents[2]
    if kind == "scissors":
        assert m.extents[2] < 0.01  # thin part
    # Features: unit norm; far-apart points differ more than neighbours.
    f = data.vertex_features(m.vertices, 16, seed=0)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    v = np.asarray(m.vertices)
    dist = np.linalg.norm(v[:, None] - v[None], axis=-1)
    sim = f @ f.T
    near = (dist > 0) & (dist < 0.01)
    far = dist > 0.5 * m.extents.max()
    assert sim[near].mean() > 0.85 and sim[near].mean() > sim[far].mean() + 0.5


def test_rerendered_ground_truth_matches_masks_and_depth(clean):
    K = clean.K
    faces_h = mano.synthetic_mano("right").faces
    scene_faces = jnp.concatenate([jnp.asarray(faces_h), clean.mesh.faces + 778])
    mesh_id = jnp.r_[jnp.zeros(len(faces_h), jnp.int32), jnp.ones(len(clean.mesh.faces),
                                                                    jnp.int32)]
    settings = render.RasterSettings(64, 64)
    verts = jnp.stack([jnp.concatenate([clean.gt.verts_cam[t],
                                        jnp.asarray(_obj_verts_cam(clean, t), jnp.float32)])
                       for t in range(clean.num_frames)])
    out = jax.jit(jax.vmap(lambda v: render.rasterize(v, scene_faces, K, settings,
                                                      face_mesh_id=mesh_id, num_meshes=2)))(verts)
    assert not np.any(out.overflow)
    for t in range(clean.num_frames):
        assert _iou(out.mesh_id[t] == 0, clean.hand_mask[t]) >= 0.99
        if np.any(out.mesh_id[t] == 1):
            assert _iou(out.mesh_id[t] == 1, clean.object_mask[t]) >= 0.99
    np.testing.assert_allclose(clean.depth_m, out.depth, atol=1e-5)
    assert clean.object_mask.sum() > 20 and clean.hand_mask.sum() > 100


def test_ground_truth_is_self_consistent(clean):
    # Keypoints (noise off) are the projected ground-truth joints.
    uv = geometry.project(clean.K, clean.gt.joints_cam)
    conf = np.asarray(clean.keypoints_conf)
    assert (conf > 0).mean() > 0.9 and np.all(conf <= 1)
    err = np.abs(np.asarray(clean.keypoints_px) - np.asarray(uv))[conf > 0]
    assert err.max() < 1e-3
    # The ground-truth MANO parameters give the ground-truth joints and vertices.
    model = mano.synthetic_mano("right")
    g = clean.gt.hand
    out = jax.vmap(lambda a, b, c, d: mano.forward(model, a, b, c, d, flat_hand_mean=True))(
        g.global_orient, g.hand_pose, g.betas, g.transl)
    np.testing.assert_allclose(out.vertices, clean.gt.verts_cam, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda o: o.keypoints("smplx", "openpose"))(out),
                               clean.gt.joints_cam, atol=1e-5)
    # Difficulty 0: the initial estimates are the truth.
    for f in ("betas", "hand_pose", "global_orient", "transl"):
        np.testing.assert_allclose(getattr(clean.hand_init, f), getattr(g, f), atol=1e-6)
    np.testing.assert_allclose(clean.T_cam_obj_init, clean.gt.T_cam_obj[clean.init_frame],
                               atol=1e-6)
    # Object poses are proper rotations (a left-handed grasp frame once made every one a
    # mirror image, det = -1, which no rotation parameterization can reach).
    np.testing.assert_allclose(np.linalg.det(np.asarray(clean.gt.T_cam_obj)[:, :3, :3]), 1.0,
                               atol=1e-4)
    # The normalized mesh has a unit diagonal; the true scale is in gt.obj_scale.
    v = np.asarray(clean.mesh.vertices)
    np.testing.assert_allclose(np.linalg.norm(v.max(0) - v.min(0)), 1.0, rtol=1e-5)
    assert 0.08 < float(clean.gt.obj_scale[0]) < 0.2


def test_motion_grasp_and_contact(clean):
    onset = int(clean.gt.onset_frame)
    assert onset == 3 and int(clean.init_frame) == onset
    T = np.asarray(clean.gt.T_cam_obj, np.float64)
    # The object rests before the onset and moves after it.
    np.testing.assert_allclose(T[:onset + 1], np.broadcast_to(T[onset], T[:onset + 1].shape),
                               atol=1e-6)
    moved = Rotation.from_matrix(T[-1, :3, :3] @ T[onset, :3, :3].T).magnitude()
    assert np.rad2deg(moved) > 5
    # From the onset on the hand is rigidly attached: constant in the object frame.
    inv = np.linalg.inv(T)
    hand_obj = np.einsum("nij,nvj->nvi", inv[:, :3, :3], np.asarray(clean.gt.verts_cam)) + \
        inv[:, None, :3, 3]
    np.testing.assert_allclose(hand_obj[onset:], np.broadcast_to(hand_obj[onset],
                                                                 hand_obj[onset:].shape),
                               atol=2e-5)
    assert np.linalg.norm(hand_obj[0] - hand_obj[onset], axis=1).mean() > 0.03  # approach
    # Touching with little penetration. The box is convex: its signed distance inside is the
    # largest plane distance (and outside, that is a lower bound).
    hull = trimesh.Trimesh(np.asarray(clean.mesh.vertices) * np.asarray(clean.gt.obj_scale),
                           np.asarray(clean.mesh.faces)).convex_hull
    normals = hull.face_normals
    offsets = np.einsum("fc,fc->f", normals, hull.vertices[hull.faces[:, 0]])
    sd = np.max(hand_obj[onset] @ normals.T - offsets, axis=1)  # < 0 inside
    assert sd.min() > -0.003
    assert np.sum(sd < 0.005) >= 20  # palm/fingers within 5 mm


def test_noise_and_detector_errors(clean, noisy):
    # Noise and detector errors leave the geometry alone.
    np.testing.assert_array_equal(clean.gt.verts_cam, noisy.gt.verts_cam)
    np.testing.assert_array_equal(clean.object_mask, noisy.object_mask)
    conf = np.asarray(noisy.keypoints_conf)
    uv_err = np.linalg.norm(noisy.keypoints_px - geometry.project(noisy.K, noisy.gt.joints_cam),
                            axis=-1)
    assert 0.5 < np.median(uv_err[conf > 0]) < 8
    assert np.all(noisy.keypoints_px[conf == 0] == 0)
    d_err = np.asarray(noisy.depth_m - clean.depth_m)[np.asarray(clean.depth_m) > 0]
    assert 0.001 < d_err.std() < 0.004
    R_gt = Rotation.from_rotvec(np.asarray(noisy.gt.hand.global_orient))
    R_init = Rotation.from_rotvec(np.asarray(noisy.hand_init.global_orient))
    ang = np.rad2deg((R_init * R_gt.inv()).magnitude())
    assert 0.3 < ang.mean() < 25
    assert np.abs(noisy.hand_init.hand_pose - noisy.gt.hand.hand_pose).mean() > 0.01
    assert np.abs(noisy.hand_init.betas - noisy.gt.hand.betas).mean() > 0.05
    obj_err = np.linalg.norm(noisy.T_cam_obj_init[:3, 3] - noisy.gt.T_cam_obj[3, :3, 3])
    assert 0 < obj_err < 0.05
    assert noisy.features.shape == (10, 8, 8, 16)
    assert np.std(noisy.features - clean.features) == pytest.approx(0.05, rel=0.1)


def test_feature_maps_show_object_and_static_background(clean):
    f = np.asarray(clean.features)
    t = int(np.argmax(np.asarray(clean.object_mask).sum((1, 2))))

    def blocks(mask, centre):  # (8, 8) feature cells; centre: only the middle 2×2 pixels
        m = np.asarray(mask).reshape(8, 8, 8, 8)
        return m[:, 3:5, :, 3:5].all((1, 3)) if centre else m.any((1, 3))

    obj = blocks(clean.object_mask[t], True)
    fg = blocks(clean.object_mask[t] | clean.hand_mask[t], False)
    bg = ~fg & ~blocks(clean.object_mask[0] | clean.hand_mask[0], False)
    assert obj.any() and bg.any()
    np.testing.assert_allclose(f[0][bg], f[t][bg], atol=1e-6)  # static camera, static scene
    vf = np.asarray(clean.mesh.vertex_features)
    # Object cells interpolate the mesh's (unit) features: close to one of them.
    best = (f[t][obj] @ vf.T).max(1) / np.linalg.norm(f[t][obj], axis=1)
    assert best.min() > 0.9
    assert (f[t][bg] @ vf.T).max() < (f[t][obj] @ vf.T).max()


def test_occlusion_levels():
    means = {}
    for level in ("heavy", "light"):
        seq = data.generate_sequence(dataclasses.replace(BASE, occlusion=level).noiseless())
        onset = int(seq.gt.onset_frame)
        occ = np.asarray(seq.gt.occlusion_ratio)
        means[level] = occ[onset:].mean()
        assert np.all((occ >= 0) & (occ <= 1))
    assert means["heavy"] >= 0.7
    assert means["light"] <= 0.3


def test_determinism_and_user_mesh():
    cfg = dataclasses.replace(BASE, num_frames=4, object_kind="can", occlusion="medium")
    a, b = data.generate_sequence(cfg), data.generate_sequence(cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    c = data.generate_sequence(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert not np.allclose(a.gt.T_cam_obj, c.gt.T_cam_obj)
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.035)
    u = data.generate_sequence(dataclasses.replace(cfg, object_mesh=ball))
    assert u.mesh.vertices.shape == (len(ball.vertices), 3)
    np.testing.assert_allclose(u.mesh.vertices, ball.vertices, atol=1e-6)
    assert u.object_mask.sum() > 0


def test_benchmark_round_trip(tmp_path, noisy):
    cfgs = [dataclasses.replace(BASE, num_frames=4, seed=s, with_rgb=False) for s in (0, 1)]
    paths = data.write_benchmark(tmp_path, cfgs)
    assert [p.name for p in paths] == ["seq_000", "seq_001"]
    meta = data.read_manifest(paths[0])["meta"]
    assert meta["config"]["seed"] == 0 and meta["onset_frame"] == 1
    back = data.load_sequence(paths[1], require_watertight=True)
    fresh = data.generate_sequence(cfgs[1])
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(x, y)
    batch, names, errors = data.load_batch(paths)
    assert names == ["seq_000", "seq_001"] and not errors
    np.testing.assert_array_equal(batch.gt.T_cam_obj[1], fresh.gt.T_cam_obj)
    # A generated sequence (every optional part) survives the format unchanged.
    data.save_sequence(noisy, tmp_path / "noisy")
    back = data.load_sequence(tmp_path / "noisy")
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(noisy)):
        np.testing.assert_array_equal(x, y)
