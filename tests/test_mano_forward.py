"""Properties of the MANO forward pass and of the synthetic MANO-format hand."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest
from jax.test_util import check_grads

from hoijax import mano


@pytest.fixture(scope="module")
def right():
    return mano.synthetic_mano("right")


def _random_params(seed, dim=45, scale=0.4):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(scale=0.7, size=3), jnp.float32),
            jnp.asarray(rng.normal(scale=scale, size=dim), jnp.float32),
            jnp.asarray(rng.normal(size=10), jnp.float32),
            jnp.asarray(rng.normal(scale=0.3, size=3), jnp.float32))


# --- the synthetic model -----------------------------------------------------------------------

def test_synthetic_topology(right):
    faces = np.asarray(right.faces)
    assert right.v_template.shape == (mano.NUM_VERTS, 3) == (778, 3)
    assert faces.shape == (mano.NUM_FACES, 3) == (1538, 3)
    edges = collections.Counter(tuple(sorted(e)) for f in faces for e in ((f[0], f[1]),
                                                                          (f[1], f[2]),
                                                                          (f[2], f[0])))
    assert max(edges.values()) == 2  # a manifold surface
    rim = [e for e, c in edges.items() if c == 1]
    assert len(rim) == 16 and len({v for e in rim for v in e}) == 16  # one open wrist loop
    directed = {(f[i], f[(i + 1) % 3]) for f in faces for i in range(3)}
    assert len(directed) == 3 * len(faces)  # consistent winding: no directed edge twice
    # Closing the wrist with a fan gives a positive volume: faces point outwards.
    v = np.asarray(right.v_template, np.float64)
    rim_pts = np.array(sorted({p for e in rim for p in e}))
    centre = v[rim_pts].mean(0)
    signed = sum(np.dot(v[a], np.cross(v[b], v[c])) for a, b, c in faces)
    cap = sum(np.dot(centre, np.cross(v[b], v[a])) for a, b in rim
              if (a, b) in directed) + sum(np.dot(centre, np.cross(v[a], v[b])) for a, b in rim
                                           if (b, a) in directed)
    assert (signed + cap) / 6 > 1e-4  # m^3: a hand is about 3-4e-4


def test_synthetic_proportions_and_tips(right):
    out = mano.forward(right, jnp.zeros(3), jnp.zeros(45), jnp.zeros(10), flat_hand_mean=True)
    v, j = np.asarray(out.vertices), np.asarray(out.joints)
    wrist_to_middle_tip = np.linalg.norm(v[mano.TIP_VERTEX_IDS["manopth"][2]] - j[0])
    assert 0.17 <= wrist_to_middle_tip <= 0.21
    # Each tip vertex (both conventions) is within 5 mm of the point of its finger farthest
    # from that finger's first joint: tips really sit on fingertips.
    chains = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6),
              "ring": (10, 11, 12), "pinky": (7, 8, 9)}
    w = np.asarray(right.lbs_weights)
    for k, name in enumerate(("thumb", "index", "middle", "ring", "pinky")):
        distal = chains[name][2]
        finger_verts = np.nonzero(w[:, distal] > 0.5)[0]
        far = finger_verts[np.argmax(np.linalg.norm(v[finger_verts] - j[chains[name][0]], axis=1))]
        for conv in ("smplx", "manopth"):
            tip = mano.TIP_VERTEX_IDS[conv][k]
            assert tip in finger_verts, (name, conv)
            assert np.linalg.norm(v[tip] - v[far]) < 0.005, (name, conv)


def test_synthetic_model_fields(right):
    w = np.asarray(right.lbs_weights)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert w.min() >= 0
    # Smooth skinning: most vertices blend at least two joints somewhere in the hand.
    assert np.mean((w > 0.05).sum(1) >= 2) > 0.3
    comps = np.asarray(right.hands_components, np.float64)
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-5)
    assert right.shapedirs.shape == (778, 3, 10) and right.posedirs.shape == (778, 3, 135)
    # Shape and pose directions are all non-zero and of millimetre scale.
    sd = np.abs(np.asarray(right.shapedirs)).max(axis=(0, 1))
    assert np.all(sd > 5e-4) and np.all(sd < 0.02)
    assert np.all(np.abs(np.asarray(right.posedirs)).max(axis=(0, 1)) > 1e-4)


def test_left_is_mirror_of_right(right):
    """Mirrored pose on the left model = mirrored output of the right model (x → −x)."""
    left = mano.synthetic_mano("left")
    g, h, b, t = _random_params(1)
    flip = jnp.array([1.0, -1.0, -1.0])  # axis-angle under the reflection x → −x
    out_r = mano.forward(right, g, h, b, t)
    out_l = mano.forward(left, g * flip, (h.reshape(15, 3) * flip).ravel(), b,
                         t * jnp.array([-1.0, 1.0, 1.0]))
    mirror = jnp.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(out_l.vertices, out_r.vertices * mirror, atol=2e-6)
    np.testing.assert_allclose(out_l.joints, out_r.joints * mirror, atol=2e-6)


# --- the forward pass --------------------------------------------------------------------------

def test_rest_pose_reproduces_template(right):
    out = mano.forward(right, jnp.zeros(3), jnp.zeros(45), jnp.zeros(10), flat_hand_mean=True)
    np.testing.assert_allclose(out.vertices, right.v_template, atol=1e-7)
    np.testing.assert_allclose(out.joints, right.J_regressor @ right.v_template, atol=1e-7)
    np.testing.assert_allclose(out.Ts_world_joint[:, :3, :3],
                               np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-7)


def test_global_orient_rotates_about_wrist(right):
    """Only global_orient differs ⇒ outputs differ by that rotation about the wrist joint."""
    _, h, b, _ = _random_params(2)
    aa = jnp.array([0.3, -1.1, 0.7])
    base = mano.forward(right, jnp.zeros(3), h, b)
    rot = mano.forward(right, aa, h, b)
    R = jaxlie.SO3.exp(aa).as_matrix()
    wrist = base.joints[0]
    np.testing.assert_allclose(rot.vertices, (base.vertices - wrist) @ R.T + wrist, atol=2e-6)
    np.testing.assert_allclose(rot.Ts_world_joint[:, :3, :3],
                               jnp.einsum("ab,jbc->jac", R, base.Ts_world_joint[:, :3, :3]),
                               atol=2e-6)


def test_joint_frames_are_rigid_and_consistent(right):
    g, h, b, t = _random_params(3)
    out = mano.forward(right, g, h, b, t)
    R = out.Ts_world_joint[:, :3, :3]
    np.testing.assert_allclose(jnp.einsum("jab,jcb->jac", R, R),
                               np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(out.Ts_world_joint[:, :3, 3], out.joints, atol=1e-7)
    # Bone lengths are preserved by articulation.
    rest = mano.with_shape(right, b).joints_rest
    parents = np.asarray(right.parents[1:])
    np.testing.assert_allclose(jnp.linalg.norm(out.joints[1:] - out.joints[parents], axis=1),
                               jnp.linalg.norm(rest[1:] - rest[parents], axis=1), atol=1e-6)


def test_pca_with_all_components_equals_axis_angle(right):
    _, h, b, _ = _random_params(4)
    coeffs = h @ right.hands_components.T  # components are orthonormal
    a = mano.forward(right, jnp.zeros(3), h, b)
    p = mano.forward(right, jnp.zeros(3), coeffs, b, pose_space="pca")
    np.testing.assert_allclose(a.vertices, p.vertices, atol=2e-6)


def test_keypoint_orders(right):
    g, h, b, t = _random_params(5)
    out = mano.forward(right, g, h, b, t)
    native = out.keypoints("manopth", "mano")
    op = out.keypoints("manopth", "openpose")
    np.testing.assert_array_equal(native[:16], out.joints)
    np.testing.assert_array_equal(native[16:], out.vertices[np.array([745, 317, 444, 556, 673])])
    # OpenPose: wrist, then each finger base → tip: thumb, index, middle, ring, pinky.
    expected = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
    np.testing.assert_array_equal(op, native[np.array(expected)])
    np.testing.assert_array_equal(out.keypoints("smplx")[16:],
                                  out.vertices[np.array([744, 320, 443, 554, 671])])
    with pytest.raises((ValueError, TypeError), match="tips"):  # TypeError: shape checker
        out.keypoints("nope")


def test_jit_vmap_match_unbatched(right):
    params = [_random_params(s) for s in range(4)]
    stacked = [jnp.stack(p) for p in zip(*params)]
    batched = jax.jit(jax.vmap(lambda *a: mano.forward(right, *a)))(*stacked)
    for i, p in enumerate(params):
        single = mano.forward(right, *p)
        np.testing.assert_allclose(batched.vertices[i], single.vertices, atol=1e-6)


def test_bad_arguments(right):
    with pytest.raises(ValueError, match="45"):
        mano.forward(right, jnp.zeros(3), jnp.zeros(12), jnp.zeros(10))
    with pytest.raises(ValueError, match="betas"):
        mano.forward(right, jnp.zeros(3), jnp.zeros(45), jnp.zeros(11))
    with pytest.raises(ValueError, match="PCA"):
        mano.forward(right, jnp.zeros(3), jnp.zeros(46), jnp.zeros(10), pose_space="pca")


# --- gradients ---------------------------------------------------------------------------------

def test_finite_difference_gradients_float64():
    with jax.enable_x64(True):
        model = mano.synthetic_mano("right").astype(jnp.float64)
        rng = np.random.default_rng(7)
        g, h = jnp.asarray(rng.normal(scale=0.5, size=3)), jnp.asarray(rng.normal(scale=0.3, size=45))
        b, t = jnp.asarray(rng.normal(size=10)), jnp.asarray(rng.normal(scale=0.1, size=3))
        probe = jnp.asarray(rng.normal(size=(778, 3)))

        def f(g, h, b, t):
            out = mano.forward(model, g, h, b, t)
            return jnp.sum(out.vertices * probe) + jnp.sum(out.keypoints("smplx") ** 2)

        check_grads(f, (g, h, b, t), order=1, modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-6)
        pca = lambda c, b: jnp.sum(mano.forward(model, g, c, b, pose_space="pca").vertices * probe)  # noqa: E731
        check_grads(pca, (h[:12], b), order=1, modes=("rev", "fwd"), atol=1e-5, rtol=1e-5,
                    eps=1e-6)


@pytest.mark.parametrize("flat", [True, False])
def test_no_nan_gradients_at_zero_pose(right, flat):
    def loss(g, h, b, t):
        out = mano.forward(right, g, h, b, t, flat_hand_mean=flat)
        return jnp.sum(out.vertices ** 2) + jnp.sum(out.Ts_world_joint ** 2)

    zeros = (jnp.zeros(3), jnp.zeros(45), jnp.zeros(10), jnp.zeros(3))
    grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*zeros)
    for gr in grads:
        assert np.all(np.isfinite(np.asarray(gr)))
    # At the zero pose the gradient w.r.t. the articulation is real, not vanishing.
    assert float(jnp.abs(grads[1]).max()) > 1e-4
    hess_diag = jax.jacfwd(jax.grad(lambda h: loss(zeros[0], h, zeros[2], zeros[3])))(zeros[1])
    assert np.all(np.isfinite(np.asarray(hess_diag)))


@pytest.mark.parametrize("chunk_size", [None, 4, 64])
def test_forward_batch_matches_vmap(right, chunk_size):
    """The throughput path gives the same values and gradients as vmap(forward)."""
    n = 10  # not a multiple of 4: lax.map's remainder chunk is exercised
    rng = np.random.default_rng(11)
    g, h = rng.normal(scale=0.6, size=(n, 3)), rng.normal(scale=0.4, size=(n, 12))
    b, t = rng.normal(size=(n, 10)), rng.normal(scale=0.2, size=(n, 3))
    args = tuple(jnp.asarray(x, jnp.float32) for x in (g, h, b, t))
    probe = jnp.asarray(rng.normal(size=(n, 778, 3)), jnp.float32)

    def via_vmap(*a):
        return jax.vmap(lambda *x: mano.forward(right, *x, pose_space="pca"))(*a)

    def via_batch(*a):
        return mano.forward_batch(right, *a, pose_space="pca", chunk_size=chunk_size)

    ref, out = jax.jit(via_vmap)(*args), jax.jit(via_batch)(*args)
    for name in ("vertices", "joints", "Ts_world_joint"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=2e-6, err_msg=name)
    loss = lambda f: lambda *a: jnp.sum(f(*a).vertices * probe)  # noqa: E731
    g_ref = jax.grad(loss(via_vmap), argnums=(0, 1, 2, 3))(*args)
    g_out = jax.grad(loss(via_batch), argnums=(0, 1, 2, 3))(*args)
    for a, r in zip(g_out, g_ref):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_forward_accepts_numpy_inputs_with_flat_hand_mean():
    """NumPy inputs give the same result as JAX ones (and satisfy the return annotation)."""
    right = mano.synthetic_mano("right")
    pose = np.linspace(-0.3, 0.3, 45)
    a = mano.forward(right, np.zeros(3), pose, np.zeros(10), flat_hand_mean=True)
    b = mano.forward(right, jnp.zeros(3), jnp.asarray(pose), jnp.zeros(10), flat_hand_mean=True)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-7)
