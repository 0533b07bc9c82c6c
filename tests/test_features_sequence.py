"""DINO features for real sequences: frames, per-vertex object features, ``hoijax features``.

* Lifting geometry: with fake feature maps that encode the pixel coordinates, each seen
  vertex's lifted feature is its own projection; with one-hot maps per view, a vertex on the
  back of a sphere gets nothing from a view that sees the front (z-buffer visibility).
* ``frame_features`` (batched, padded last batch) equals ``dense_features`` frame by frame.
* The command end to end on a tiny ViT whose random weights are written in the Hugging Face
  ``model.safetensors`` layout: files and manifest written, ``load_sequence`` returns them, a
  rerun is a cache hit, other weights recompute, missing weights exit 2 with the download
  hint, a sequence without RGB fails by name while the others finish.
* A UV-textured OBJ is read with per-vertex colours sampled from its texture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import data, features
from hoijax.cli import main as cli
from hoijax.cli._features import sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny_dino import TINY, write_weights  # noqa: E402


def _sphere():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    return np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int32)


# ------------------------------------------------------------------------------------ lifting


def _reference_projection(v, K, T):
    cam = v.astype(np.float64) @ T[:3, :3].T.astype(np.float64) + T[:3, 3]
    return np.stack([K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2],
                     K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]], 1)


def _facing(v, T):
    """cos of the angle between each sphere vertex's normal and its direction to the camera."""
    R, t = T[:3, :3].astype(np.float64), T[:3, 3].astype(np.float64)
    eye = -R.T @ t
    to_eye = eye - v
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.einsum("vi,vi->v", n, to_eye / np.linalg.norm(to_eye, axis=1, keepdims=True))


def test_lifted_feature_is_the_vertex_projection():
    v, f = _sphere()
    S = 56
    K, T = features.view_cameras(v, 3, S)
    _, depth = features.render_views(v, f, np.full((len(v), 3), 200, np.uint8), K, T, S)
    rows, cols = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    coord_map = np.stack([cols, rows], -1).astype(np.float32)  # cell (r, c) holds (c, r)
    for k in range(3):
        feats, count = features.lift_vertex_features(
            v, f, K, T[k:k + 1], depth[k:k + 1], coord_map[None], normalize=False, fill=False)
        uv = _reference_projection(v, K, T[k])
        seen = count > 0
        facing = _facing(v, T[k])
        assert seen[facing > 0.2].all() and not seen[facing < -0.2].any()
        np.testing.assert_allclose(feats[seen], uv[seen], atol=2e-3)
        assert np.all(feats[~seen] == 0)


def test_occluded_vertices_get_no_contribution():
    v, f = _sphere()
    n_views, S = 6, 56
    K, T = features.view_cameras(v, n_views, S)
    _, depth = features.render_views(v, f, np.full((len(v), 3), 200, np.uint8), K, T, S)
    maps = np.zeros((n_views, 4, 4, n_views), np.float32)  # view k: constant one-hot e_k
    for k in range(n_views):
        maps[k, ..., k] = 1.0
    feats, count = features.lift_vertex_features(v, f, K, T, depth, maps, normalize=False,
                                                 fill=False)
    facing = np.stack([_facing(v, T[k]) for k in range(n_views)], 1)  # (V, views)
    assert count.min() >= 1  # six views around a sphere see every vertex
    np.testing.assert_allclose(feats.sum(1), 1.0, atol=1e-6)  # a mean of one-hots
    assert np.all(feats[facing < -0.2] == 0)  # back of the sphere: no contribution
    np.testing.assert_allclose(feats[facing > 0.2], (1.0 / count[:, None]).repeat(n_views, 1)
                               [facing > 0.2], atol=1e-6)
    # normalised: unit rows; unseen vertices filled from their neighbours, finite unit rows
    unit, _ = features.lift_vertex_features(v, f, K, T[:1], depth[:1], maps[:1])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------ frames


def test_frame_features_batched_equals_per_frame():
    params = features.init_vit_params(TINY)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 56, 42, 3), dtype=np.uint8)
    done = []
    got = features.frame_features(params, TINY, rgb, batch=2, normalize=False,
                                  progress=done.append)
    assert done == [2, 2, 1]
    want = np.stack([np.asarray(features.dense_features(params, TINY, im)) for im in rgb])
    assert got.shape == want.shape == (5, 4, 3, TINY.hidden_size)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    unit = features.frame_features(params, TINY, rgb, batch=8)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, want / np.linalg.norm(want, axis=-1, keepdims=True),
                               atol=1e-5)


# ------------------------------------------------------------------------------------ CLI


def _sequence(rgb: bool, n: int = 4, hw: int = 56) -> data.Sequence:
    v, f = _sphere()
    rng = np.random.default_rng(1)
    mask = np.zeros((n, hw, hw), bool)
    mask[:, 20:36, 20:36] = True
    hand = data.HandParams(betas=jnp.zeros((n, 10)), hand_pose=jnp.zeros((n, 45)),
                           global_orient=jnp.zeros((n, 3)), transl=jnp.zeros((n, 3)))
    K = np.array([[60.0, 0, hw / 2], [0, 60.0, hw / 2], [0, 0, 1]], np.float32)
    return data.Sequence(
        K=jnp.asarray(K), valid=jnp.ones(n, bool), hand_mask=jnp.asarray(mask),
        object_mask=jnp.asarray(mask), keypoints_px=jnp.zeros((n, 21, 2)),
        keypoints_conf=jnp.ones((n, 21)), hand_init=hand,
        mesh=data.ObjectMesh(vertices=jnp.asarray(v), faces=jnp.asarray(f),
                             face_valid=jnp.ones(len(f), bool)),
        rgb=jnp.asarray(rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)) if rgb else None)


ARGS = ["--preset", "test_tiny", "--views", "4", "--render-size", "56", "--batch", "4",
        "--no-progress"]


@pytest.fixture
def tiny_preset(monkeypatch, tmp_path):
    monkeypatch.setitem(features.PRESETS, "test_tiny", TINY)
    monkeypatch.setenv("HOIJAX_COMPILE_CACHE", "0")


def test_cli_end_to_end(tiny_preset, tmp_path, capsys):
    seq_dir = data.save_sequence(_sequence(rgb=True), tmp_path / "seq_a")
    bare_dir = data.save_sequence(_sequence(rgb=False), tmp_path / "seq_norgb")
    wa = write_weights(tmp_path / "a.safetensors", 0)
    wb = write_weights(tmp_path / "b.safetensors", 1)

    assert cli.main(["features", str(seq_dir), "--weights", str(wa), *ARGS]) == 0
    out = capsys.readouterr()
    assert "computed" in out.out and "no texture" in out.err
    manifest = json.loads((seq_dir / "manifest.json").read_text())
    meta = manifest["meta"]["features"]
    assert meta["weights_sha256"] == sha256_file(wa) and meta["preset"] == "test_tiny"
    assert meta["texture"] is False and meta["views"] == 4
    assert manifest["feature_size"] == [4, 4, TINY.hidden_size] == meta["feature_size"]
    seq = data.load_sequence(seq_dir)
    assert seq.features.shape == (4, 4, 4, TINY.hidden_size)
    V = seq.mesh.vertices.shape[0]
    assert seq.mesh.vertex_features.shape == (V, TINY.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(seq.mesh.vertex_features, axis=1), 1, atol=1e-5)
    # the frames' features are those of the library function
    params = features.load_vit_params(wa, TINY)
    np.testing.assert_allclose(seq.features, features.frame_features(params, TINY, seq.rgb),
                               atol=1e-5)

    # second run: cache hit, nothing rewritten
    files = [seq_dir / "features.npy", seq_dir / manifest["mesh"]["features_file"]]
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert cli.main(["features", str(seq_dir), "--weights", str(wa), *ARGS]) == 0
    assert "cached" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in files] == mtimes

    # other weights: recomputed, new hash recorded
    assert cli.main(["features", str(seq_dir), "--weights", str(wb), *ARGS]) == 0
    assert "computed" in capsys.readouterr().out
    meta = json.loads((seq_dir / "manifest.json").read_text())["meta"]["features"]
    assert meta["weights_sha256"] == sha256_file(wb)

    # a sequence without rgb fails by name, the other one still finishes
    code = cli.main(["features", str(bare_dir), str(seq_dir), "--weights", str(wb), *ARGS])
    out = capsys.readouterr()
    assert code == 1
    assert "seq_norgb" in out.err and "no rgb" in out.err
    assert "seq_a: cached" in out.out.replace(str(tmp_path) + "/", "")


def test_cli_without_weights_explains_the_download(tiny_preset, tmp_path, capsys):
    seq_dir = tmp_path / "seq"
    for argv in (["features", str(seq_dir), *ARGS],
                 ["features", str(seq_dir), "--weights", str(tmp_path / "nope.pth"), *ARGS]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "dl.fbaipublicfiles.com/dinov2" in err and "dinov2_vits14_pretrain.pth" in err
        assert "facebook/dinov2-small" in err and "facebook/dinov3-vits16-pretrain-lvd1689m" in err


# ------------------------------------------------------------------------------------ texture


def test_uv_textured_obj_gives_texture_colours(tmp_path):
    from PIL import Image

    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4] = (255, 0, 0)  # left half red
    tex[:, 4:] = (0, 0, 255)  # right half blue
    Image.fromarray(tex).save(tmp_path / "tex.png")
    (tmp_path / "quad.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd tex.png\n")
    (tmp_path / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0.1 0.5\nvt 0.9 0.5\nvt 0.9 0.5\nvt 0.1 0.5\n"
        "usemtl skin\nf 1/1 2/2 3/3 4/4\n")
    mesh = data.read_textured_mesh(tmp_path / "quad.obj")
    assert mesh.has_texture and mesh.source == "texture"
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mesh.colors, [[255, 0, 0], [0, 0, 255], [0, 0, 255],
                                                [255, 0, 0]])
    # same vertices as the geometry-only loader, so per-vertex features line up
    with pytest.warns(data.NonWatertightMeshWarning):
        plain = data.load_object_mesh(tmp_path / "quad.obj")
    np.testing.assert_array_equal(plain.vertices, mesh.vertices)
    np.testing.assert_array_equal(plain.faces, mesh.faces)
    # rendered with its colours: the left of the quad red, the right blue
    K, T = features.view_cameras(mesh.vertices, 1, 28)
    T = features.look_at(np.array([0.5, 0.5, 2.0]), np.array([0.5, 0.5, 0.0]))[None]
    images, depth = features.render_views(mesh.vertices, mesh.faces, mesh.colors, K, T, 28)
    covered = depth[0] > 0
    reds = images[0][covered & (images[0][..., 0] > 200) & (images[0][..., 2] < 60)]
    assert covered.sum() > 50 and len(reds) > 10
    # geometry only: grey, flagged
    import trimesh

    trimesh.creation.box().export(tmp_path / "box.ply")
    grey = data.read_textured_mesh(tmp_path / "box.ply")
    assert not grey.has_texture and np.all(grey.colors == data._textured.GREY)


def test_checkerboard_texture_renders_as_a_checkerboard(tmp_path):
    """A 4 × 4 checkerboard on a two-triangle quad: rendered from the front with per-pixel
    texture sampling, the centre of every square has the square's colour (alternating), which
    per-vertex colours (four of them) cannot show; the OBJ's UV orientation is kept (square
    (0, 0) of the image, its top-left, is at the quad's top-left corner)."""
    from PIL import Image

    cells, px = 4, 8
    ij = np.indices((cells * px, cells * px)) // px
    board = np.where(((ij[0] + ij[1]) % 2 == 0)[..., None], [255, 0, 0], [0, 0, 255])
    Image.fromarray(board.astype(np.uint8)).save(tmp_path / "board.png")
    (tmp_path / "quad.mtl").write_text("newmtl board\nKd 1 1 1\nmap_Kd board.png\n")
    # Quad in the z = 0 plane, x right and y down as seen by the camera below; UV v is up in
    # the image, so the quad's top edge (y = -1) has v = 1.
    (tmp_path / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\n"
        "vt 0 1\nvt 1 1\nvt 1 0\nvt 0 0\n"
        "usemtl board\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    mesh = data.read_textured_mesh(tmp_path / "quad.obj")
    assert mesh.texture is not None and mesh.texture.shape == (32, 32, 3)
    S = 64
    K = np.array([[S, 0, (S - 1) / 2], [0, S, (S - 1) / 2], [0, 0, 1]], np.float32)
    T = np.eye(4, dtype=np.float32)[None]
    T[0, 2, 3] = 2.5  # the quad spans ±1 at 2.5 m: ±25.6 px around the centre
    # Off the pixel grid by a fraction of a pixel: pixel centres exactly on the quad's diagonal
    # fall in a crack between its two triangles (a rasterizer limitation, not this test's).
    T[0, :2, 3] = [0.013, 0.007]
    img, depth = features.render_views(mesh.vertices, mesh.faces, mesh.colors, K, T, S,
                                       uv=mesh.uv, texture=mesh.texture)
    flat, _ = features.render_views(mesh.vertices, mesh.faces, mesh.colors, K, T, S)
    wrong_flat = 0
    for i in range(cells):
        for j in range(cells):
            y, x = -1 + (i + 0.5) * 2 / cells, -1 + (j + 0.5) * 2 / cells
            r = int(round(K[1, 1] * (y + 0.007) / 2.5 + K[1, 2]))
            c = int(round(K[0, 0] * (x + 0.013) / 2.5 + K[0, 2]))
            want = board[i * px + px // 2, j * px + px // 2]
            np.testing.assert_allclose(img[0, r, c], want, atol=2), (i, j)
            wrong_flat += int(np.abs(flat[0, r, c].astype(int) - want).max() > 60)
    # Per-vertex colours know the four corners only: most squares lose their colour.
    assert wrong_flat >= cells * cells // 2
    assert depth[0, S // 2, S // 2] == pytest.approx(2.5, rel=1e-4)
