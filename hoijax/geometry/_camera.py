"""Pinhole camera: projection, unprojection and depth maps to point clouds.

Conventions (OpenCV): the camera looks along +z, x points right and y down in the image;
``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with focal lengths and principal point in
pixels. The centre of pixel ``(row, col)`` has ``uv_px = (col, row)``.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

DEFAULT_MIN_DEPTH_M = 1e-4
"""Near plane used by :func:`project` to keep the division by depth finite, in metres."""


def project(
    K: Float[ArrayLike, "3 3"],
    points_cam: Float[ArrayLike, "*batch 3"],
    *,
    min_depth_m: float | Float[ArrayLike, ""] = DEFAULT_MIN_DEPTH_M,
) -> Float[Array, "*batch 2"]:
    """Project camera-frame points to pixel coordinates, ``uv = K[:2] @ (x/z, y/z, 1)``.

    Args:
        K: ``(3, 3)`` intrinsics in pixels; the last row must be ``(0, 0, 1)``.
        points_cam: ``(*, 3)`` points in the camera frame, metres.
        min_depth_m: near plane in metres (traced). Depths below it are clamped to it
            before dividing, so points at or behind the camera give finite pixel
            coordinates (far outside the image for points at the near plane) and finite
            gradients; the gradient with respect to ``z`` is zero for clamped points.

    Returns:
        ``(*, 2)`` pixel coordinates ``uv_px``.
    """
    K = jnp.asarray(K)
    points_cam = jnp.asarray(points_cam)
    z_m = jnp.maximum(points_cam[..., 2:3], min_depth_m)
    xy_n = points_cam[..., :2] / z_m
    return xy_n @ K[:2, :2].T + K[:2, 2]


def unproject(
    K: Float[ArrayLike, "3 3"],
    uv_px: Float[ArrayLike, "*batch 2"],
    depth_m: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch 3"]:
    """Lift pixels with known depth to camera-frame points, ``p = depth * K^-1 (u, v, 1)``.

    Args:
        K: ``(3, 3)`` intrinsics in pixels; the last row must be ``(0, 0, 1)``.
        uv_px: ``(*, 2)`` pixel coordinates.
        depth_m: ``(*,)`` depth along the optical axis (the z coordinate), metres.

    Returns:
        ``(*, 3)`` points in the camera frame, metres; ``project(K, p) == uv_px``.
    """
    K = jnp.asarray(K)
    uv_px = jnp.asarray(uv_px)
    depth_m = jnp.asarray(depth_m)
    # K is upper triangular with K[2, 2] = 1: invert the 2x2 block in closed form instead
    # of a general inverse, which is exact and cheap to differentiate.
    fx, s, cx = K[0, 0], K[0, 1], K[0, 2]
    fy, cy = K[1, 1], K[1, 2]
    y_n = (uv_px[..., 1] - cy) / fy
    x_n = (uv_px[..., 0] - cx - s * y_n) / fx
    rays = jnp.stack([x_n, y_n, jnp.ones_like(x_n)], axis=-1)
    return rays * depth_m[..., None]


def pixel_grid(height: int, width: int) -> Float[Array, "height width 2"]:
    """Pixel-centre coordinates ``uv_px[row, col] = (col, row)`` of an image, ``(H, W, 2)``."""
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return jnp.stack([cols, rows], axis=-1).astype(jnp.result_type(float))


def depth_to_points(
    K: Float[ArrayLike, "3 3"],
    depth_m: Float[ArrayLike, "H W"],
    mask: Bool[ArrayLike, "H W"] | None = None,
) -> tuple[Float[Array, "H*W 3"], Bool[Array, " H*W"]]:
    """Back-project a depth map to a fixed-size camera-frame point cloud.

    The output has one row per pixel in row-major order (``index = row * W + col``), so its
    size depends only on the image size and the function jits once per image size.

    Args:
        K: ``(3, 3)`` intrinsics in pixels.
        depth_m: ``(H, W)`` depth along the optical axis, metres. Zero, negative and
            non-finite depths mean "no measurement".
        mask: optional ``(H, W)`` bool, pixels to keep (for example a hand or object
            segmentation). ``None`` keeps every pixel with a valid depth.

    Returns:
        ``points_cam``: ``(H*W, 3)`` points in metres, zero where not valid.
        ``valid``: ``(H*W,)`` bool, ``mask & (depth_m > 0) & isfinite(depth_m)``.
    """
    depth_m = jnp.asarray(depth_m)
    height, width = depth_m.shape
    valid = (depth_m > 0) & jnp.isfinite(depth_m)
    if mask is not None:
        valid = valid & jnp.asarray(mask, dtype=bool)
    # Zero the depth before unprojecting so invalid pixels (NaN, inf) touch no arithmetic.
    safe_depth_m = jnp.where(valid, depth_m, 0.0)
    uv_px = pixel_grid(height, width).astype(safe_depth_m.dtype)
    points_cam = unproject(K, uv_px, safe_depth_m)
    return points_cam.reshape(height * width, 3), valid.reshape(height * width)


class Camera(eqx.Module):
    """Pinhole camera: intrinsics (traced) and image size (static)."""

    K: Float[Array, "3 3"]
    """``(3, 3)`` intrinsics in pixels, ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``."""
    height: int = eqx.field(static=True)
    """Image height in pixels (rows)."""
    width: int = eqx.field(static=True)
    """Image width in pixels (columns)."""

    @staticmethod
    def from_intrinsics(
        fx: float, fy: float, cx: float, cy: float, *, height: int, width: int
    ) -> Camera:
        """Camera from focal lengths and principal point in pixels (zero skew)."""
        K = jnp.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return Camera(K=K, height=height, width=width)

    def project(
        self,
        points_cam: Float[ArrayLike, "*batch 3"],
        *,
        min_depth_m: float | Float[ArrayLike, ""] = DEFAULT_MIN_DEPTH_M,
    ) -> Float[Array, "*batch 2"]:
        """:func:`project` with this camera's ``K``."""
        return project(self.K, points_cam, min_depth_m=min_depth_m)

    def unproject(
        self, uv_px: Float[ArrayLike, "*batch 2"], depth_m: Float[ArrayLike, "*batch"]
    ) -> Float[Array, "*batch 3"]:
        """:func:`unproject` with this camera's ``K``."""
        return unproject(self.K, uv_px, depth_m)

    def depth_to_points(
        self,
        depth_m: Float[ArrayLike, "H W"],
        mask: Bool[ArrayLike, "H W"] | None = None,
    ) -> tuple[Float[Array, "H*W 3"], Bool[Array, " H*W"]]:
        """:func:`depth_to_points` with this camera; checks the depth map's size."""
        shape = jnp.shape(depth_m)
        if shape != (self.height, self.width):
            raise ValueError(
                f"depth_m has shape {shape}, expected (height, width) = "
                f"({self.height}, {self.width})."
            )
        return depth_to_points(self.K, depth_m, mask)

    def in_image(self, uv_px: Float[ArrayLike, "*batch 2"]) -> Bool[Array, " *batch"]:
        """Whether pixel coordinates fall inside the image (pixel centres at integers)."""
        uv_px = jnp.asarray(uv_px)
        u, v = uv_px[..., 0], uv_px[..., 1]
        return (u >= -0.5) & (u < self.width - 0.5) & (v >= -0.5) & (v < self.height - 0.5)
