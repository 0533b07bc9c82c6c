"""The on-disk sequence format: round trips, validation of bad input, batching and padding."""

from __future__ import annotations

import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from hoijax import data, render

N, H, W = 5, 12, 20  # W not a multiple of 8: the packed masks' padding bits are exercised


def _hand(rng, n):
    return data.HandParams(*(jnp.asarray(rng.normal(size=(n, k)), jnp.float32)
                             for k in (10, 45, 3, 3)))


def _poses(rng, n):
    """Random rigid transforms (proper rotations), (n, 4, 4)."""
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q *= np.sign(np.linalg.det(q))[:, None, None]
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3], T[:, :3, 3] = q, rng.normal(size=(n, 3))
    return T


def make_sequence(seed=0, n=N, h=H, w=W, *, optional=True, side="right", mesh=None):
    """A small random sequence with every field (or only the required ones)."""
    rng = np.random.default_rng(seed)
    mesh = mesh if mesh is not None else trimesh.creation.icosphere(subdivisions=1, radius=0.04)
    nv = len(mesh.vertices)
    hand_mask = rng.random((n, h, w)) > 0.6
    obj_mask = (rng.random((n, h, w)) > 0.7) & ~hand_mask
    conf = rng.uniform(0.2, 1.0, size=(n, 21)).astype(np.float32)
    conf[0, 3] = 0.0
    kp = rng.normal(scale=10, size=(n, 21, 2)).astype(np.float32)
    kp[0, 3] = 0.0
    obj = data.ObjectMesh(
        vertices=jnp.asarray(mesh.vertices, jnp.float32),
        faces=jnp.asarray(mesh.faces, jnp.int32),
        face_valid=jnp.ones(len(mesh.faces), bool),
        vertex_features=(jnp.asarray(rng.normal(size=(nv, 16)), jnp.float32) if optional
                         else None))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    gt = data.GroundTruth(
        hand=_hand(rng, n), joints_cam=f32(rng.normal(size=(n, 21, 3))),
        verts_cam=f32(rng.normal(size=(n, 778, 3))), T_cam_obj=f32(_poses(rng, n)),
        obj_scale=f32([1.0, 1.1, 0.9]), onset_frame=jnp.asarray(2, jnp.int32),
        occlusion_ratio=f32(rng.random(n)))
    return data.Sequence(
        K=f32([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]]), valid=jnp.ones(n, bool),
        hand_mask=jnp.asarray(hand_mask), object_mask=jnp.asarray(obj_mask),
        keypoints_px=f32(kp), keypoints_conf=f32(conf), hand_init=_hand(rng, n), mesh=obj,
        depth_m=f32(rng.uniform(0.3, 0.6, (n, h, w))) if optional else None,
        features=f32(rng.normal(size=(n, 2, 3, 16))) if optional else None,
        rgb=(jnp.asarray(rng.integers(0, 256, (n, h, w, 3)), jnp.uint8) if optional else None),
        T_cam_obj_init=f32(_poses(rng, 1)[0]) if optional else None,
        init_frame=jnp.asarray(1, jnp.int32) if optional else None,
        gt=gt if optional else None, side=side)


def assert_same(a: data.Sequence, b: data.Sequence):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb  # same structure: same optional parts present, same side
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("mesh_file", ["object.ply", "object.obj", "object.glb"])
def test_round_trip_every_field(tmp_path, mesh_file):
    seq = make_sequence(side="left")
    data.save_sequence(seq, tmp_path / "s", mesh_file=mesh_file, meta={"note": "x"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the icosphere is watertight: no warning either
        back = data.load_sequence(tmp_path / "s")
    assert_same(seq, back)
    assert back.side == "left" and back.gt.onset_frame.shape == ()
    mesh = data.load_object_mesh(tmp_path / "s" / mesh_file,
                                 tmp_path / "s" / f"{mesh_file.split('.')[0]}_features.npy")
    np.testing.assert_array_equal(mesh.vertex_features, seq.mesh.vertex_features)


def test_round_trip_without_optional_parts(tmp_path):
    seq = make_sequence(optional=False)
    data.save_sequence(seq, tmp_path / "s")
    back = data.load_sequence(tmp_path / "s")
    assert_same(seq, back)
    for name in ("depth_m", "features", "rgb", "T_cam_obj_init", "init_frame", "gt"):
        assert getattr(back, name) is None
    assert back.mesh.vertex_features is None


def test_manifest_describes_the_files(tmp_path):
    seq = make_sequence()
    d = data.save_sequence(seq, tmp_path / "s")
    m = json.loads((d / "manifest.json").read_text())
    assert m["format_version"] == data.FORMAT_VERSION and m["num_frames"] == N
    assert m["image_size"] == [H, W] and m["side"] == "right"
    assert m["parts"]["gt"] and m["parts"]["mesh_features"] and m["parts"]["rgb"]
    assert m["mesh"]["file"] == "object.ply" and m["mesh"]["num_faces"] == 80
    entry = m["arrays"]["hand_mask"]
    assert entry["encoding"] == "packbits" and entry["shape"] == [N, H, W]
    packed = np.load(d / entry["file"])
    assert packed.dtype == np.uint8 and packed.shape == (N, H, 3)  # ceil(20 / 8) = 3
    assert m["arrays"]["gt.verts_cam"]["shape"] == [N, 778, 3]
    assert m["meta"] == {}


def test_missing_keypoints_nan_with_zero_confidence_become_zero(tmp_path):
    seq = make_sequence()
    d = data.save_sequence(seq, tmp_path / "s")
    kp = np.load(d / "keypoints_px.npy")
    kp[0, 3] = np.nan  # confidence 0 there: a legitimate "missing"
    np.save(d / "keypoints_px.npy", kp)
    back = data.load_sequence(d)
    assert np.all(np.isfinite(back.keypoints_px)) and np.all(back.keypoints_px[0, 3] == 0)


# ------------------------------------------------------------------------------- bad input


def _saved(tmp_path):
    return data.save_sequence(make_sequence(), tmp_path / "seq")


def _expect(exc, d, file, field, **kwargs):
    with pytest.raises(exc) as info:
        data.load_sequence(d, **kwargs)
    err = info.value
    assert isinstance(err, data.SequenceFormatError) and isinstance(err, ValueError)
    assert err.path.name == file and err.field == field
    assert file in str(err) and field in str(err)
    return err


def test_missing_file(tmp_path):
    d = _saved(tmp_path)
    (d / "hand_init.betas.npy").unlink()
    _expect(data.MissingFileError, d, "hand_init.betas.npy", "hand_init.betas")
    (d / "manifest.json").unlink()
    _expect(data.MissingFileError, d, "manifest.json", "manifest")


def test_wrong_shape(tmp_path):
    d = _saved(tmp_path)
    np.save(d / "keypoints_conf.npy", np.ones((N, 20), np.float32))
    err = _expect(data.ShapeError, d, "keypoints_conf.npy", "keypoints_conf")
    assert "(5, 20)" in str(err)


def test_wrong_mask_size_is_a_shape_error(tmp_path):
    d = _saved(tmp_path)
    np.save(d / "object_mask.npy", np.packbits(np.ones((N, H + 1, W), bool), axis=-1))
    _expect(data.ShapeError, d, "object_mask.npy", "object_mask")


def test_mismatched_frame_counts(tmp_path):
    d = _saved(tmp_path)
    np.save(d / "gt.joints_cam.npy", np.zeros((N - 1, 21, 3), np.float32))
    err = _expect(data.FrameCountError, d, "gt.joints_cam.npy", "gt.joints_cam")
    assert "4 frames" in str(err) and "num_frames = 5" in str(err)


def test_nan_keypoint_with_confidence(tmp_path):
    d = _saved(tmp_path)
    kp = np.load(d / "keypoints_px.npy")
    kp[2, 7, 1] = np.nan
    np.save(d / "keypoints_px.npy", kp)
    err = _expect(data.NonFiniteError, d, "keypoints_px.npy", "keypoints_px")
    assert "frame 2, joint 7" in str(err)


def test_nan_elsewhere_is_rejected(tmp_path):
    d = _saved(tmp_path)
    t = np.load(d / "hand_init.transl.npy")
    t[1, 2] = np.inf
    np.save(d / "hand_init.transl.npy", t)
    _expect(data.NonFiniteError, d, "hand_init.transl.npy", "hand_init.transl")


@pytest.mark.parametrize("field,frame,edit,needle", [
    ("gt.T_cam_obj", 3, lambda T: T @ np.diag([-1.0, 1, 1, 1]), "frame 3"),   # mirrored
    ("gt.T_cam_obj", 1, lambda T: T @ np.diag([1.3, 1.3, 1.3, 1]), "frame 1"),  # scaled
    ("T_cam_obj_init", None, lambda T: T + np.eye(4)[3] * 0.5, "last row"),
])
def test_improper_poses_are_rejected(tmp_path, field, frame, edit, needle):
    d = _saved(tmp_path)
    T = np.load(d / f"{field}.npy")
    if frame is None:
        T = edit(T)
    else:
        T[frame] = edit(T[frame])
    np.save(d / f"{field}.npy", T.astype(np.float32))
    err = _expect(data.GeometryError, d, f"{field}.npy", field)
    assert needle in str(err)


def test_gt_pose_of_a_padding_frame_is_not_checked(tmp_path):
    valid = np.ones(N, bool)
    valid[-1] = False
    T = np.asarray(make_sequence().gt.T_cam_obj).copy()
    T[-1] = 0.0  # e.g. zero padding written by a converter
    seq = eqx.tree_at(lambda s: (s.valid, s.gt.T_cam_obj), make_sequence(),
                      (jnp.asarray(valid), jnp.asarray(T)))
    data.save_sequence(seq, tmp_path / "s")
    np.testing.assert_array_equal(np.asarray(data.load_sequence(tmp_path / "s").gt.T_cam_obj), T)


def test_bad_intrinsics_are_rejected(tmp_path):
    d = _saved(tmp_path)
    K = np.load(d / "K.npy")
    K[1, 1] = -K[1, 1]
    np.save(d / "K.npy", K)
    err = _expect(data.GeometryError, d, "K.npy", "K")
    assert "fx, fy > 0" in str(err)


def test_empty_mask_rule(tmp_path):
    seq = make_sequence()
    # Empty in some frames (occlusion, out of view) is fine.
    obj = np.asarray(seq.object_mask).copy()
    obj[:-1] = False
    d = data.save_sequence(eqx_replace(seq, object_mask=jnp.asarray(obj)), tmp_path / "a")
    assert np.asarray(data.load_sequence(d).object_mask).sum() > 0
    # Empty in every frame: nothing to track.
    d = data.save_sequence(eqx_replace(seq, object_mask=jnp.zeros_like(seq.object_mask)),
                           tmp_path / "b")
    _expect(data.EmptyMaskError, d, "object_mask.npy", "object_mask")
    d = data.save_sequence(eqx_replace(seq, hand_mask=jnp.zeros_like(seq.hand_mask)),
                           tmp_path / "c")
    _expect(data.EmptyMaskError, d, "hand_mask.npy", "hand_mask")
    assert data.load_sequence(d, check_masks=False).hand_mask.sum() == 0


def eqx_replace(seq, **kwargs):
    import equinox as eqx

    names = list(kwargs)
    return eqx.tree_at(lambda s: [getattr(s, k) for k in names], seq,
                       [kwargs[k] for k in names], is_leaf=lambda x: x is None)


def test_corrupt_mesh(tmp_path):
    d = _saved(tmp_path)
    (d / "object.ply").write_bytes(b"ply\nformat garbage\x00\x01\x02 not a mesh")
    err = _expect(data.MeshError, d, "object.ply", "mesh")
    assert "unreadable" in str(err) or "no triangles" in str(err)


def test_mesh_features_must_match_vertices(tmp_path):
    d = _saved(tmp_path)
    np.save(d / "object_features.npy", np.zeros((5, 16), np.float32))
    _expect(data.ShapeError, d, "object_features.npy", "mesh.vertex_features")


def test_non_watertight_mesh_warns_or_fails(tmp_path):
    box = trimesh.creation.box(extents=(0.05, 0.05, 0.05))
    holed = trimesh.Trimesh(box.vertices, box.faces[:-1], process=False)
    seq = make_sequence(mesh=holed)
    d = data.save_sequence(seq, tmp_path / "s")
    with pytest.warns(data.NonWatertightMeshWarning, match="object.ply"):
        data.load_sequence(d)
    _expect(data.MeshError, d, "object.ply", "mesh", require_watertight=True)


def test_unknown_version(tmp_path):
    d = _saved(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    err = _expect(data.VersionError, d, "manifest.json", "format_version")
    assert "99" in str(err)
    (d / "manifest.json").write_text("{not json")
    _expect(data.ManifestError, d, "manifest.json", "manifest")


def test_load_batch_keeps_the_good_sequences(tmp_path):
    dirs = [data.save_sequence(make_sequence(seed=i, n=N + i), tmp_path / f"s{i}")
            for i in range(3)]
    (dirs[1] / "keypoints_conf.npy").unlink()
    odd = data.save_sequence(make_sequence(seed=9, h=H + 4), tmp_path / "odd_size")
    batch, names, errors = data.load_batch([*dirs, odd])
    assert names == ["s0", "s2"]
    assert [e[0] for e in errors] == ["s1", "odd_size"]
    assert isinstance(errors[0][1], data.MissingFileError)
    assert errors[0][1].field == "keypoints_conf"
    assert "image size" in str(errors[1][1])
    assert batch.valid.shape == (2, N + 2)
    np.testing.assert_array_equal(batch.valid[0], [True] * N + [False] * 2)
    good = data.load_sequence(dirs[2])
    np.testing.assert_array_equal(batch.keypoints_px[1], good.keypoints_px)


# -------------------------------------------------------------------------------- batching


def test_stack_pads_frames_and_meshes():
    a = make_sequence(seed=1, n=3, mesh=trimesh.creation.box(extents=(0.05, 0.06, 0.07)))
    b = make_sequence(seed=2, n=5)  # icosphere: 42 vertices, 80 faces
    batch = data.stack_sequences([a, b])
    assert batch.valid.shape == (2, 5) and batch.hand_mask.shape == (2, 5, H, W)
    np.testing.assert_array_equal(batch.valid, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert not np.any(batch.hand_mask[0, 3:]) and not np.any(batch.keypoints_conf[0, 3:])
    # Padded MANO inputs repeat the last real frame; padded poses likewise.
    np.testing.assert_array_equal(batch.hand_init.betas[0, 4], a.hand_init.betas[2])
    np.testing.assert_array_equal(batch.gt.T_cam_obj[0, 3], a.gt.T_cam_obj[2])
    assert batch.mesh.vertices.shape == (2, 42, 3) and batch.mesh.faces.shape == (2, 80, 3)
    np.testing.assert_array_equal(batch.mesh.face_valid[0], np.arange(80) < 12)
    np.testing.assert_array_equal(batch.mesh.faces[0, 12:], 0)
    np.testing.assert_array_equal(batch.mesh.vertices[0, 8:], 0)
    np.testing.assert_array_equal(batch.mesh.faces[0, :12], a.mesh.faces)
    assert batch.gt.onset_frame.shape == (2,) and batch.side == "right"


def test_padded_faces_are_culled_by_the_rasterizer():
    box = trimesh.creation.box(extents=(0.05, 0.06, 0.07))
    a = make_sequence(seed=1, mesh=box)
    b = make_sequence(seed=2, mesh=trimesh.creation.icosphere(subdivisions=2, radius=0.03))
    batch = data.stack_sequences([a, b])
    K = jnp.asarray([[40.0, 0, 15.5], [0, 40.0, 15.5], [0, 0, 1]])
    settings = render.RasterSettings(height=32, width=32)
    R = jnp.asarray(trimesh.transformations.rotation_matrix(0.5, [1, 1, 0])[:3, :3],
                    jnp.float32)
    place = lambda v: v @ R.T + jnp.asarray([0.0, 0.0, 0.3])  # noqa: E731
    draw = jax.jit(lambda v, f: render.rasterize(place(v), f, K, settings))
    plain = draw(a.mesh.vertices, a.mesh.faces)
    padded = draw(batch.mesh.vertices[0], batch.mesh.faces[0])
    assert plain.mask.sum() > 50
    np.testing.assert_array_equal(plain.mask, padded.mask)
    np.testing.assert_allclose(plain.silhouette, padded.silhouette, atol=1e-6)
    np.testing.assert_allclose(plain.depth, padded.depth, atol=1e-6)


def test_stack_rejects_mixed_batches():
    a = make_sequence(seed=1)
    with pytest.raises(ValueError, match="image size"):
        data.stack_sequences([a, make_sequence(seed=2, w=W + 8)])
    with pytest.raises(ValueError, match="left hand"):
        data.stack_sequences([a, make_sequence(seed=2, side="left")])
    plain = make_sequence(seed=3, optional=False)
    with pytest.raises(ValueError, match="optional part 'depth_m'"):
        data.stack_sequences([a, plain])
    with pytest.warns(UserWarning, match="dropping"):
        mixed = data.stack_sequences([a, plain], optional="drop")
    assert mixed.depth_m is None and mixed.gt is None and mixed.mesh.vertex_features is None
    with pytest.raises(ValueError, match="batch"):
        data.save_sequence(data.stack_sequences([a, a]), "/nonexistent/never")


# ----------------------------------------------------------------- the ground truth's own mesh


def _with_gt_mesh(seq: data.Sequence, mesh) -> data.Sequence:
    import dataclasses

    obj = data.ObjectMesh(vertices=jnp.asarray(mesh.vertices, jnp.float32),
                          faces=jnp.asarray(mesh.faces, jnp.int32),
                          face_valid=jnp.ones(len(mesh.faces), bool))
    return dataclasses.replace(seq, gt=dataclasses.replace(seq.gt, obj_mesh=obj))


def test_gt_mesh_round_trips_and_older_files_load_without_it(tmp_path):
    box = trimesh.creation.box(extents=(0.05, 0.06, 0.07))
    seq = _with_gt_mesh(make_sequence(), box)
    d = data.save_sequence(seq, tmp_path / "s")
    m = json.loads((d / "manifest.json").read_text())
    assert m["parts"]["gt.obj_mesh"] and m["gt_mesh"]["file"] == "gt_object.ply"
    assert m["gt_mesh"]["num_faces"] == 12 and m["mesh"]["num_faces"] == 80
    back = data.load_sequence(d)
    assert_same(seq, back)
    assert back.gt.obj_mesh.vertices.shape == (8, 3) and back.mesh.vertices.shape == (42, 3)
    # Without one the part is False and the loaded field None.
    plain = data.save_sequence(make_sequence(), tmp_path / "p")
    assert not json.loads((plain / "manifest.json").read_text())["parts"]["gt.obj_mesh"]
    assert data.load_sequence(plain).gt.obj_mesh is None
    # A file written before the part existed: no "gt.obj_mesh" key, no "gt_mesh" entry.
    del m["parts"]["gt.obj_mesh"], m["gt_mesh"]
    (d / "manifest.json").write_text(json.dumps(m))
    (d / "gt_object.ply").unlink()
    assert data.load_sequence(d).gt.obj_mesh is None
    # A manifest that claims the part but names no file is a manifest error.
    m["parts"]["gt.obj_mesh"] = True
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(data.ManifestError, match="gt_mesh"):
        data.load_sequence(d)


def test_stack_fills_a_missing_gt_mesh_with_the_sequence_mesh():
    """None means "the same as mesh": in a batch where some sequences have a ground-truth
    mesh, the others get their own mesh there (padded like it), not an error or a drop."""
    box = trimesh.creation.box(extents=(0.05, 0.06, 0.07))  # 8 vertices, 12 faces
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.03)  # 162, 320
    a = _with_gt_mesh(make_sequence(seed=1, mesh=box), sphere)
    b = make_sequence(seed=2)  # icosphere(1): 42 vertices, 80 faces; no gt mesh
    batch = data.stack_sequences([a, b])
    assert batch.mesh.vertices.shape == (2, 42, 3)
    g = batch.gt.obj_mesh
    assert g.vertices.shape == (2, 162, 3) and g.faces.shape == (2, 320, 3)
    assert g.vertex_features is None
    np.testing.assert_array_equal(g.vertices[0], a.gt.obj_mesh.vertices)
    np.testing.assert_array_equal(g.vertices[1, :42], b.mesh.vertices)
    np.testing.assert_array_equal(g.vertices[1, 42:], 0)
    np.testing.assert_array_equal(g.face_valid[1], np.arange(320) < 80)
    np.testing.assert_array_equal(g.faces[1, :80], b.mesh.faces)
    assert data.stack_sequences([b, b]).gt.obj_mesh is None
