"""hoijax MANO against smplx.MANO (PyTorch, CPU) on the same model file."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
smplx = pytest.importorskip("smplx")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from hoijax import mano  # noqa: E402

TOL_M = 1e-5  # the bound: max abs error on vertices and joints, metres


def _smplx_layer(path, ncomps, flat):
    use_pca = ncomps is not None
    return smplx.MANO(
        str(path), use_pca=use_pca, num_pca_comps=ncomps if use_pca else 6,
        flat_hand_mean=flat, batch_size=1, dtype=torch.float64,
    )


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("ncomps", [None, 6, 12, 30])
@pytest.mark.parametrize("flat", [False, True])
def test_matches_smplx(synthetic_mano_dir, side, ncomps, flat):
    path = synthetic_mano_dir / f"MANO_{side.upper()}.pkl"
    layer = _smplx_layer(path, ncomps, flat)
    model = mano.load_mano(path)
    assert model.side == side
    space = "axis_angle" if ncomps is None else "pca"
    fwd = jax.jit(jax.vmap(
        lambda g, h, b, t: mano.forward(model, g, h, b, t, pose_space=space, flat_hand_mean=flat)
    ))

    rng = np.random.default_rng(hash((side, ncomps, flat)) % 2**32)
    n = 8
    dim = 45 if ncomps is None else ncomps
    scale = 0.5 if ncomps is None else 1.5
    g = rng.normal(scale=0.8, size=(n, 3))
    h = rng.normal(scale=scale, size=(n, dim))
    b = rng.normal(scale=1.5, size=(n, 10))
    t = rng.normal(scale=0.2, size=(n, 3))
    ours = fwd(*(jnp.asarray(x, jnp.float32) for x in (g, h, b, t)))
    verts_ref, joints_ref = [], []
    for i in range(n):
        with torch.no_grad():
            ref = layer(global_orient=torch.tensor(g[i:i + 1]), hand_pose=torch.tensor(h[i:i + 1]),
                        betas=torch.tensor(b[i:i + 1]), transl=torch.tensor(t[i:i + 1]))
        verts_ref.append(ref.vertices[0].numpy())
        joints_ref.append(ref.joints[0].numpy())
    verts_err = np.abs(np.asarray(ours.vertices) - np.stack(verts_ref)).max()
    joints_err = np.abs(np.asarray(ours.joints) - np.stack(joints_ref)).max()
    assert verts_err <= TOL_M, verts_err
    assert joints_err <= TOL_M, joints_err
    # The poses must be non-trivial for the comparison to mean anything.
    rest = np.asarray(model.v_template)
    assert np.abs(np.stack(verts_ref) - t[:, None] - rest).max() > 0.02


def test_smplx_tip_vertices_match_keypoints(synthetic_mano_dir):
    """smplx's own MANO tip ids select the same 21 keypoints as hoijax's ``tips='smplx'``."""
    from smplx.vertex_ids import vertex_ids

    assert tuple(vertex_ids["mano"].values()) == mano.TIP_VERTEX_IDS["smplx"]
    path = synthetic_mano_dir / "MANO_RIGHT.pkl"
    layer = _smplx_layer(path, None, False)
    rng = np.random.default_rng(3)
    h, b = rng.normal(scale=0.4, size=(1, 45)), rng.normal(size=(1, 10))
    with torch.no_grad():
        ref = layer(global_orient=torch.zeros(1, 3, dtype=torch.float64),
                    hand_pose=torch.tensor(h), betas=torch.tensor(b))
    kp_ref = np.concatenate([ref.joints[0].numpy(),
                             ref.vertices[0].numpy()[list(vertex_ids["mano"].values())]])
    out = mano.forward(mano.load_mano(path), jnp.zeros(3), jnp.asarray(h[0], jnp.float32),
                       jnp.asarray(b[0], jnp.float32))
    np.testing.assert_allclose(np.asarray(out.keypoints("smplx", "mano")), kp_ref, atol=TOL_M)
