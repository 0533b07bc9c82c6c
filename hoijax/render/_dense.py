"""Dense reference: every pixel against every face, O(H·W·F). For tests and benchmarks only."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hoijax.render._faces import screen_faces, soft_log_t


def soft_silhouette_dense(verts_cam, faces, K, height: int, width: int, *, face_mesh_id=None,
                          num_meshes: int = 1, sigma_px2=1.0, prob_eps=1e-4, near_m=1e-3,
                          pixel_chunk: int = 1024):
    """Per-mesh soft silhouettes (M, H, W) with no binning; pixels in chunks of ``pixel_chunk``.

    The same semantics as :func:`hoijax.render.rasterize`'s ``silhouette`` (a parity
    reference and the baseline of ``experiments/bench_render.py``), and the same soft term with
    the same hand-written derivative, so that benchmark compares binning alone.
    """
    verts_cam = jnp.asarray(verts_cam)
    faces = jnp.asarray(faces, jnp.int32)
    F = faces.shape[0]
    dtype = verts_cam.dtype
    face_mesh_id = (jnp.zeros((F,), jnp.int32) if face_mesh_id is None
                    else jnp.asarray(face_mesh_id, jnp.int32))
    sf = screen_faces(verts_cam, faces, jnp.asarray(K, dtype), face_mesh_id,
                      jnp.asarray(near_m, dtype), num_meshes)
    sigma_px2 = jnp.asarray(sigma_px2, dtype)
    cutoff = sigma_px2 * jnp.log(1.0 / jnp.asarray(prob_eps, dtype) - 1.0)
    onehot = jax.nn.one_hot(sf.mesh_id[:F], num_meshes, dtype=dtype) * sf.valid[:F, None]
    v, u = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    pix = jnp.stack([u.reshape(-1), v.reshape(-1)], -1).astype(dtype)

    def one_pixel(p):  # (2,) against all faces; lax.map vmaps it over chunks of pixels
        log_t = soft_log_t(p[None, :], sf.uv[:F], sigma_px2, cutoff)
        return -jnp.expm1(log_t @ onehot)  # (M,)

    sil = jax.lax.map(one_pixel, pix, batch_size=pixel_chunk)
    return jnp.moveaxis(sil.reshape(height, width, num_meshes), -1, 0)
