"""PointNet++ (Qi et al., NeurIPS 2017) in JAX: TIGeR's object shape geometric encoder and the
feature propagation of its U-Net decoder.

Sampling and grouping are index computations (no gradient flows through the choice of points,
as in the CUDA original); the grouped MLPs and the interpolation weights are differentiable.
Everything acts on one unbatched cloud; callers ``vmap``.

- :func:`farthest_point_sample`: greedy FPS from point 0 (the CUDA kernel's start);
- :func:`ball_query`: the first ``k`` points (in index order) within ``radius`` of each centroid,
  the missing slots filled with the first one found (the CUDA kernel's rule);
- :class:`SetAbstraction`: FPS → ball query → shared MLP on ``[xyz − centroid, features]`` →
  max over the group;
- :func:`three_nn_interpolate` and :class:`FeaturePropagation`: inverse-squared-distance
  weighted interpolation from the 3 nearest coarse points, concatenated with the skip features
  and passed through a shared MLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

_IDW_EPS = 1e-8
"""Added to squared distances before inverting (PointNet++'s constant): a coarse point that
coincides with a fine one gets a large but finite weight, and a cloud of equal points gets
equal weights instead of 0/0."""


def _sq_dists(a: Float[Array, "n 3"], b: Float[Array, "m 3"]) -> Float[Array, "n m"]:
    # Difference form, not |a|² + |b|² − 2ab: exact zeros for equal points (grouping decides
    # membership by comparing with r², so cancellation error would move points in and out).
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def farthest_point_sample(points: Float[Array, "n 3"], num_samples: int) -> Int[Array, " s"]:
    """Indices of ``num_samples`` (static) points chosen greedily, each the farthest from those
    already chosen, starting from point 0. Ties go to the lowest index (``argmax``), so a cloud
    of equal points yields index 0 repeatedly."""
    n = points.shape[0]
    pts = jax.lax.stop_gradient(points)

    def body(i, carry):
        idx, dist = carry
        last = pts[idx[i - 1]]
        dist = jnp.minimum(dist, jnp.sum((pts - last) ** 2, axis=-1))
        return idx.at[i].set(jnp.argmax(dist).astype(jnp.int32)), dist

    idx0 = jnp.zeros((num_samples,), jnp.int32)
    dist0 = jnp.full((n,), jnp.inf, pts.dtype)
    idx, _ = jax.lax.fori_loop(1, num_samples, body, (idx0, dist0))
    return idx


def ball_query(
    points: Float[Array, "n 3"], centroids: Float[Array, "s 3"], radius: float, k: int
) -> Int[Array, "s k"]:
    """For each centroid, the indices of the first ``k`` (static) points, in index order, whose
    squared distance is below ``radius²``; slots beyond the number found repeat the first one.
    A centroid with no point in its ball (not possible when centroids are points of the cloud)
    gets index 0 everywhere."""
    n = points.shape[0]
    d2 = jax.lax.stop_gradient(_sq_dists(centroids, points))
    inside = d2 < radius**2
    # Inside points keep their index as the sort key, outside ones are pushed past n.
    key = jnp.where(inside, jnp.arange(n), n + jnp.arange(n))
    first_k = jnp.sort(key, axis=-1)[:, :k]
    found = first_k < n
    first = jnp.where(found[:, :1], first_k[:, :1], n)
    idx = jnp.where(found, first_k, first)
    return jnp.where(idx < n, idx, 0).astype(jnp.int32)


def three_nn_interpolate(
    coarse_xyz: Float[Array, "s 3"], coarse_feat: Float[Array, "s c"], fine_xyz: Float[Array, "n 3"]
) -> Float[Array, "n c"]:
    """Features at ``fine_xyz`` interpolated from the 3 nearest coarse points, weights ∝ 1/(d² +
    ε) (PointNet++ feature propagation). The neighbour choice carries no gradient; the
    weights do."""
    d2 = _sq_dists(fine_xyz, coarse_xyz)
    kk = min(3, coarse_xyz.shape[0])
    _, nn_idx = jax.lax.top_k(-jax.lax.stop_gradient(d2), kk)
    d2_nn = jnp.take_along_axis(d2, nn_idx, axis=1)
    w = 1.0 / (d2_nn + _IDW_EPS)
    w = w / jnp.sum(w, axis=1, keepdims=True)
    return jnp.einsum("nk,nkc->nc", w, coarse_feat[nn_idx])


class SetAbstraction(nn.Module):
    """One PointNet++ set-abstraction level (single-scale grouping)."""

    num_centroids: int
    """Centroids chosen by FPS (static)."""
    radius: float
    """Ball radius, in the units of the input coordinates."""
    group_size: int
    """Points per ball (``k``)."""
    widths: Sequence[int]
    """Shared MLP widths (ReLU after each layer)."""
    dtype: jnp.dtype = jnp.float32
    """Computation dtype of the MLP."""

    @nn.compact
    def __call__(
        self, xyz: Float[Array, "n 3"], features: Float[Array, "n c"] | None
    ) -> tuple[Float[Array, "s 3"], Float[Array, "s w"], Int[Array, " s"]]:
        """Returns the centroids' coordinates, their features and their indices into ``xyz``."""
        c_idx = farthest_point_sample(xyz, self.num_centroids)
        centroids = xyz[c_idx]
        g_idx = ball_query(xyz, centroids, self.radius, self.group_size)
        # Relative coordinates normalised by the radius (PointNet++ "normalize_xyz").
        rel = (xyz[g_idx] - centroids[:, None, :]) / self.radius
        x = rel if features is None else jnp.concatenate([rel, features[g_idx]], axis=-1)
        for w in self.widths:
            x = jax.nn.relu(nn.Dense(w, dtype=self.dtype)(x))
        return centroids, jnp.max(x, axis=1), c_idx


class FeaturePropagation(nn.Module):
    """One PointNet++ feature-propagation level: interpolate, concatenate skip, shared MLP."""

    widths: Sequence[int]
    """Shared MLP widths (ReLU after each layer)."""
    dtype: jnp.dtype = jnp.float32
    """Computation dtype of the MLP."""

    @nn.compact
    def __call__(
        self,
        coarse_xyz: Float[Array, "s 3"],
        coarse_feat: Float[Array, "s c"],
        fine_xyz: Float[Array, "n 3"],
        fine_feat: Float[Array, "n d"],
    ) -> Float[Array, "n w"]:
        x = three_nn_interpolate(coarse_xyz, coarse_feat.astype(fine_xyz.dtype), fine_xyz)
        x = jnp.concatenate([x.astype(fine_feat.dtype), fine_feat], axis=-1)
        for w in self.widths:
            x = jax.nn.relu(nn.Dense(w, dtype=self.dtype)(x))
        return x
