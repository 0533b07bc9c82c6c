"""Property test: PnP recovers the hand translation for any rotation, pose and placement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hoijax import geometry, mano

_MODEL = mano.synthetic_mano("right")
_K = jnp.array([[500.0, 0.0, 128.0], [0.0, 500.0, 128.0], [0.0, 0.0, 1.0]])


@jax.jit
def _recover(aa, pca, t_true, scale):
    """Keypoints of a posed hand at a true translation, projected; PnP must give it back."""
    out = mano.forward(_MODEL, aa, pca, jnp.zeros(10), pose_space="pca")
    kp = scale * out.keypoints("manopth", "openpose")
    uv = geometry.project(_K, kp + t_true)
    return geometry.translation_pnp(kp, uv, _K)


@settings(max_examples=40, deadline=None)
@given(
    rot=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),
    pca=st.lists(st.floats(-2.0, 2.0), min_size=6, max_size=6),
    xy=st.tuples(st.floats(-0.15, 0.15), st.floats(-0.15, 0.15)),
    depth=st.floats(0.3, 1.2),
    scale=st.floats(0.8, 1.25),
)
def test_pnp_recovers_translation(rot, pca, xy, depth, scale):
    q = np.asarray(rot)
    if np.linalg.norm(q) < 1e-3:  # any unit quaternion: normalize, the zero vector excepted
        q = np.array([1.0, 0.0, 0.0, 0.0])
    aa = jaxlie.SO3(jnp.asarray(q / np.linalg.norm(q), jnp.float32)).log()
    t_true = jnp.array([xy[0], xy[1], depth], jnp.float32)
    res = _recover(aa, jnp.asarray(pca, jnp.float32), t_true, jnp.float32(scale))
    assert bool(res.valid)
    np.testing.assert_allclose(np.asarray(res.translation), np.asarray(t_true), atol=1e-3)
