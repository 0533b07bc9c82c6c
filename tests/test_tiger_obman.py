"""ObMan → TIGeR examples: fixture files in the toolkit's layout (pickled meta, BGR-read
segmentation channels, ShapeNet paths, Blender camera axes), converted and checked against the
geometry the fixture put there."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from hoijax import tiger

TETRA = np.array([[0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.05]])
FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def obman(tmp_path_factory):
    root = tmp_path_factory.mktemp("obman")
    split = root / "obman" / "test"
    for sub in ("rgb", "segm", "meta"):
        (split / sub).mkdir(parents=True)
    shapenet = root / "ShapeNetCore.v2"
    (shapenet / "02876657" / "bottle1" / "models").mkdir(parents=True)
    (shapenet / "02876657" / "bottle1" / "models" / "model_normalized.obj").write_text(
        "v 0 0 0\nv 0.05 0 0\nv 0 0.05 0\nv 0 0 0.05\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    rng = np.random.default_rng(0)
    samples = {}
    for idx, sample_id in ((3, "bottle1"), (7, "missing"), (9, "bottle1")):
        A = np.eye(4)
        A[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        A[:3, 3] = [0.02, -0.01, -0.45]  # Blender camera: the scene lies along -z
        meta = {"coords_3d": rng.normal(scale=0.03, size=(21, 3)) + [0, 0, -0.5],
                "verts_3d": rng.normal(scale=0.03, size=(778, 3)) + [0, 0, -0.5],
                "affine_transform": A, "class_id": "02876657", "sample_id": sample_id,
                "side": "right", "coords_2d": np.zeros((21, 2))}
        with open(split / "meta" / f"{idx:08d}.pkl", "wb") as f:
            pickle.dump(meta, f, protocol=2)
        segm = np.zeros((256, 256, 3), np.uint8)
        segm[100:140, 90:150, 0] = 100  # red: the object rendered alone (amodal)
        segm[100:140, 90:120, 2] = 100  # blue: the full render, the hand covers the rest
        segm[100:140, 120:150, 2] = 22
        Image.fromarray(segm).save(split / "segm" / f"{idx:08d}.png")
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
            split / "rgb" / f"{idx:08d}.jpg", quality=95)
        samples[idx] = meta
    (split / "rgb" / "00000009.jpg").write_bytes(b"not a jpeg")  # a damaged download
    return {"root": root / "obman", "shapenet": shapenet, "samples": samples, "segm": segm}


def test_obman_sample_in_the_camera_frame_and_a_bad_one_skipped(obman):
    with pytest.warns(UserWarning) as caught:
        data = tiger.load_obman_tiger(obman["root"], "test", obman["shapenet"], num_points=256)
    said = " | ".join(str(w.message) for w in caught)
    assert re.search(r"00000007 skipped.*missing.*model_normalized\.obj.*'mesh'", said), said
    assert re.search(r"00000009 skipped.*00000009\.jpg.*'rgb'.*unreadable", said), said
    tiger.validate_tiger_data(data)
    assert data.num_examples == 1 and data.crop_px == 256
    meta = obman["samples"][3]
    np.testing.assert_allclose(data.K[0], tiger.OBMAN_K)
    np.testing.assert_array_equal(data.amodal_mask[0], obman["segm"][..., 0] == 100)
    np.testing.assert_array_equal(data.visible_mask[0], obman["segm"][..., 2] == 100)
    assert data.visible_mask[0].sum() == 40 * 30 and data.amodal_mask[0].sum() == 40 * 60
    np.testing.assert_allclose(data.hand_joints[0], meta["coords_3d"] * FLIP, atol=1e-6)
    np.testing.assert_allclose(data.hand_verts[0], meta["verts_3d"] * FLIP, atol=1e-6)
    # Points: in front of the camera, centred, and on the tetrahedron after undoing the flip
    # and the affine transform.
    c = data.center_cam[0].astype(np.float64)
    assert c[2] > 0.4
    np.testing.assert_allclose(data.points_obj[0].mean(0), 0.0, atol=1e-6)
    A = meta["affine_transform"]
    local = ((data.points_obj[0] + c) * FLIP - A[:3, 3]) @ A[:3, :3]
    slack = np.stack([local[:, 0], local[:, 1], local[:, 2], 0.05 - local.sum(1)], 1)
    assert slack.min() > -1e-5 and np.abs(slack.min(1)).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(data.prior_obj[0], axis=-1), 0.05, rtol=1e-5)


def test_obman_cli_and_prior_folder(obman, tmp_path):
    from hoijax.cli.main import main

    (tmp_path / "priors").mkdir()
    np.save(tmp_path / "priors" / "02876657.npy", np.random.default_rng(1).normal(size=(40, 3)))
    code = main(["tiger-data", "--dataset", "obman", "--root", str(obman["root"]),
                 "--shapenet-root", str(obman["shapenet"]), "--indices", "3",
                 "--prior", str(tmp_path / "priors"), "--num-points", "64",
                 "--out", str(tmp_path / "x.npz")])
    assert code == 0
    back = tiger.load_tiger_data(tmp_path / "x.npz")
    assert back.num_examples == 1 and back.prior_source[0] == -1
    np.testing.assert_allclose(back.prior_obj[0].mean(0), 0.0, atol=1e-6)
    assert main(["tiger-data", "--dataset", "obman", "--root", str(obman["root"]),
                 "--out", str(tmp_path / "y.npz")]) == 2  # no --shapenet-root


def test_surface_sampling_is_area_weighted():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 1], [4, 0, 1], [2, 3, 1.0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    p = tiger.sample_mesh_surface(verts, faces, 7000, seed=0)
    on_second = p[:, 2] > 0.5
    assert abs(on_second.mean() - 3 / 3.5) < 0.015
    first, second = p[~on_second], p[on_second]
    assert (first[:, :2] >= -1e-12).all() and (first[:, :2].sum(1) <= 1 + 1e-12).all()
    q = (second[:, :2] - [2, 0]) / [2, 3]  # the second triangle's own barycentric frame
    assert (q >= -1e-12).all() and (q.sum(1) <= 1 + 1e-12).all()
    # Uniform within a triangle: the centroid of the samples is the triangle's.
    np.testing.assert_allclose(first.mean(0), [1 / 3, 1 / 3, 0], atol=0.02)
    with pytest.raises(ValueError, match="no area"):
        tiger.sample_mesh_surface(verts[:3] * 0, faces[:1], 5, seed=0)
