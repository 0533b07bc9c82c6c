"""TIGeR's vision-guided refinement network (TIGeR §III-B, Fig. 3) as one Flax module.

One unbatched example in, one :class:`TigerOutput` out; callers ``vmap``. Widths are ours (the
paper gives none) and live in :class:`TigerConfig`:

- **object shape visual encoder** (paper: HRNet): a 4-layer CNN on the image downsampled to
  ``image_size`` (64² by default): ``F_v^1`` at 1/2 resolution (32², 32 channels), ``F_v^2`` at
  1/4 (16², 64 channels), ``F_vg`` its average pool;
- **object shape geometric encoder**: PointNet++ with two set-abstraction levels on the prior
  (512 points → 128 → 32 patches, :mod:`hoijax.tiger._pointnet2`), coordinates in decimetres;
- **two 2D-3D collaborative-attention blocks**: ``[F_g^l, patch centre, F_vg]`` → MLP → one
  logit per image location of level ``l`` → softmax = ``W_l``; ``F_vv^l = W_l · F_v^l``;
  ``F_fused^l = MLP([F_g^l, F_vv^l])``;
- **U-Net geometric decoder**: feature propagation level 2 → level 1 (skip ``F_fused^1``) →
  every prior point (skip: its coordinates), then one xyz offset per point (the last layer
  starts at zero, so an untrained network returns the prior);
- **pose encoders** (paper: ResNet-50, not shared with the shape encoder): two 3-layer CNNs at
  1/4 resolution with 1×1 heads: 21 hand heatmaps + 21 depth maps, and one object-centre
  heatmap + depth map; soft-argmax over the heatmap, depth read under it, unprojected by K;
- **mask head** (for L_mask): 3×3 conv on ``F_v^2``, 3×3 max pool, a logit per level-2 cell.

Frames and units: the prior and the refined points are object-centred with camera axes, metres;
``K`` is the intrinsics of the input crop (pixels of the crop, any crop size); heatmap cell
``(r, c)`` of a ``G×G`` grid covers crop pixels ``[c·s, (c+1)·s)`` with ``s = crop / G``.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from hoijax import geometry
from hoijax.tiger._pointnet2 import FeaturePropagation, SetAbstraction

NUM_HAND_KEYPOINTS = 21
"""Hand keypoints (OpenPose order, as :attr:`hoijax.data.GroundTruth.joints_cam`)."""

PRIOR_UNIT_M = 0.1
"""The geometric encoder and decoder see coordinates in decimetres (objects span ~1 unit)."""


@dataclasses.dataclass(frozen=True)
class TigerConfig:
    """Static architecture settings (hashable: a ``jit`` static argument)."""

    image_size: int = 64
    """Side of the square image the network sees (the crop is average-pooled to it; the paper
    uses 256²)."""
    num_points: int = 512
    """Prior points ``|V̄|``."""
    sa1_centroids: int = 128
    """Level-1 patches (FPS)."""
    sa2_centroids: int = 32
    """Level-2 patches (FPS from level 1)."""
    sa1_radius: float = 0.3
    """Level-1 ball radius, decimetres."""
    sa2_radius: float = 0.6
    """Level-2 ball radius, decimetres."""
    group_size: int = 16
    """Points per ball."""
    sa1_widths: tuple[int, ...] = (32, 32, 64)
    """Level-1 grouped MLP."""
    sa2_widths: tuple[int, ...] = (64, 64, 128)
    """Level-2 grouped MLP."""
    visual_widths: tuple[int, int, int, int] = (16, 32, 48, 64)
    """Shape CNN channels: conv/2, conv (= F_v^1), conv/2, conv (= F_v^2)."""
    attention_hidden: int = 128
    """Hidden width of the attention MLP."""
    fused_widths: tuple[int, int] = (64, 128)
    """Widths of ``F_fused^1`` and ``F_fused^2``."""
    decoder_widths: tuple[tuple[int, ...], tuple[int, ...]] = ((128, 64), (64, 64))
    """Feature-propagation MLPs (level 2 → 1, level 1 → points)."""
    pose_widths: tuple[int, int, int] = (16, 32, 32)
    """Pose CNN channels: conv/2, conv/2, conv."""
    depth_init_m: float = 0.5
    """Depth the pose heads predict before training (the depth head adds a learned offset in
    decimetres)."""
    image_coords: bool = False
    """Append each image location's crop coordinates (cell centre, scaled to [-1, 1]) to
    ``F_v^l`` before the attention, so that ``W_l · F_v^l`` carries where a patch attends as
    well as what it sees there (a CoordConv-style addition; the paper's HRNet features carry
    position implicitly through their large receptive fields, our 4-layer CNN's barely do).
    Measured on the dev split (README, *TIGeR*): no gain, so off by default."""
    dtype: str = "float32"
    """Computation dtype of convolutions and dense layers (``"bfloat16"`` on accelerators);
    parameters, geometry and losses stay float32."""

    @property
    def grid1(self) -> int:
        """Side of the level-1 image feature grid."""
        return self.image_size // 2

    @property
    def grid2(self) -> int:
        """Side of the level-2 image feature grid (also the pose heatmaps' and mask's)."""
        return self.image_size // 4

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TigerConfig:
        d = dict(d)
        d["decoder_widths"] = tuple(tuple(w) for w in d["decoder_widths"])
        for k in ("sa1_widths", "sa2_widths", "visual_widths", "fused_widths", "pose_widths"):
            d[k] = tuple(d[k])
        return cls(**d)


class TigerOutput(eqx.Module):
    """What the network predicts for one example."""

    points_obj: Float[Array, "P 3"]
    """Refined object points ``Ṽ``, object-centred, camera axes, metres."""
    attention1: Float[Array, "M1 L1"]
    """``W_1``: each level-1 patch's weights over the level-1 image locations (rows sum to 1)."""
    attention2: Float[Array, "M2 L2"]
    """``W_2``: each level-2 patch's weights over the level-2 image locations (row-major)."""
    patch2_index: Int[Array, " M2"]
    """Prior-point index of each level-2 patch centre."""
    mask_logits: Float[Array, "G G"]
    """Amodal object mask logits on the level-2 grid."""
    hand_uv_px: Float[Array, "21 2"]
    """Hand keypoints, crop pixels (soft-argmax)."""
    hand_joints_cam: Float[Array, "21 3"]
    """Hand keypoints ``C̃_h``, camera frame, metres."""
    obj_center_uv_px: Float[Array, "2"]
    """Object centre, crop pixels."""
    obj_center_cam: Float[Array, "3"]
    """Object centre ``C̃_o``, camera frame, metres."""


def cell_centers_px(grid: int, crop_px: int) -> Float[Array, "L 2"]:
    """Crop-pixel ``uv`` of the centres of a ``grid×grid`` map's cells, row-major."""
    s = crop_px / grid
    c = (jnp.arange(grid) + 0.5) * s - 0.5
    uu, vv = jnp.meshgrid(c, c, indexing="xy")
    return jnp.stack([uu.ravel(), vv.ravel()], -1)


def downsample_image(rgb: Float[Array, "H W 3"], size: int) -> Float[Array, "S S 3"]:
    """Average-pool a square crop by an integer factor to ``size²`` (static)."""
    h = rgb.shape[0]
    f = h // size
    if f * size != h or rgb.shape[1] != h:
        raise ValueError(f"crop {rgb.shape[:2]} is not a square multiple of {size}")
    return rgb.reshape(size, f, size, f, 3).mean(axis=(1, 3))


def _soft_argmax_unproject(logits, depth_raw, K, crop_px, depth_init_m):
    """Heatmaps ``(G, G, J)`` → uv (crop px), depth (m), camera points, via softmax."""
    g = logits.shape[0]
    w = jax.nn.softmax(logits.reshape(g * g, -1).astype(jnp.float32), axis=0)  # (L, J)
    uv = w.T @ cell_centers_px(g, crop_px)
    depth = depth_init_m + PRIOR_UNIT_M * jnp.sum(
        w * depth_raw.reshape(g * g, -1).astype(jnp.float32), axis=0)
    return uv, depth, geometry.unproject(K, uv, depth)


def _with_coords(feat: Float[Array, "L C"], grid: int) -> Float[Array, "L C+2"]:
    """Row-major ``grid×grid`` features with their cells' (u, v) centres in [-1, 1] appended."""
    c = (jnp.arange(grid) + 0.5) / grid * 2.0 - 1.0
    uu, vv = jnp.meshgrid(c, c, indexing="xy")
    return jnp.concatenate([feat, jnp.stack([uu.ravel(), vv.ravel()], -1).astype(feat.dtype)],
                           -1)


class _Cnn(nn.Module):
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        outs = []
        for w, s in zip(self.widths, self.strides):
            x = jax.nn.relu(nn.Conv(w, (3, 3), strides=(s, s), dtype=self.dtype)(x))
            outs.append(x)
        return outs


class CollaborativeAttention(nn.Module):
    """TIGeR's 2D-3D collaborative-attention block (§III-B)."""

    num_locations: int
    """Image locations ``L`` of this level (static)."""
    hidden: int
    """Attention MLP width."""
    out_width: int
    """Width of ``F_fused``."""
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        patch_feat: Float[Array, "M C"],
        patch_xyz: Float[Array, "M 3"],
        global_feat: Float[Array, " D"],
        image_feat: Float[Array, "L E"],
    ) -> tuple[Float[Array, "M F"], Float[Array, "M L"]]:
        """Returns ``F_fused`` and the attention weights ``W`` (softmax over locations)."""
        m = patch_feat.shape[0]
        q = jnp.concatenate([patch_feat, patch_xyz.astype(patch_feat.dtype),
                             jnp.broadcast_to(global_feat, (m, global_feat.shape[0]))], -1)
        h = jax.nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(q))
        logits = nn.Dense(self.num_locations, dtype=self.dtype)(h)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        attended = attn @ image_feat.astype(jnp.float32)
        fused = jnp.concatenate([patch_feat.astype(jnp.float32), attended], -1)
        fused = jax.nn.relu(nn.Dense(self.out_width, dtype=self.dtype)(fused))
        return fused, attn


class TigerNet(nn.Module):
    """The refinement network. ``__call__(image, K, prior_obj, crop_px)``."""

    config: TigerConfig

    @nn.compact
    def __call__(
        self,
        image: Float[Array, "S S 3"],
        K: Float[Array, "3 3"],
        prior_obj: Float[Array, "P 3"],
        crop_px: int,
    ) -> TigerOutput:
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        x = (image.astype(jnp.float32) / 255.0 - 0.5).astype(dt)

        # Object shape visual encoder.
        vw = cfg.visual_widths
        _, f_v1, _, f_v2 = _Cnn(vw, (2, 1, 2, 1), dt, name="shape_visual")(x)
        g1, g2 = cfg.grid1, cfg.grid2
        f_vg = jnp.mean(f_v2.reshape(g2 * g2, -1), axis=0)

        # Object shape geometric encoder (PointNet++, decimetres).
        p = prior_obj.astype(jnp.float32) / PRIOR_UNIT_M
        xyz1, f_g1, idx1 = SetAbstraction(cfg.sa1_centroids, cfg.sa1_radius, cfg.group_size,
                                       cfg.sa1_widths, dt, name="sa1")(p, None)
        xyz2, f_g2, idx21 = SetAbstraction(cfg.sa2_centroids, cfg.sa2_radius, cfg.group_size,
                                           cfg.sa2_widths, dt, name="sa2")(xyz1, f_g1)

        # Two 2D-3D collaborative-attention blocks.
        img1, img2 = f_v1.reshape(g1 * g1, -1), f_v2.reshape(g2 * g2, -1)
        if cfg.image_coords:
            img1, img2 = _with_coords(img1, g1), _with_coords(img2, g2)
        fu1, w1 = CollaborativeAttention(g1 * g1, cfg.attention_hidden, cfg.fused_widths[0], dt,
                                         name="attention1")(f_g1, xyz1, f_vg, img1)
        fu2, w2 = CollaborativeAttention(g2 * g2, cfg.attention_hidden, cfg.fused_widths[1], dt,
                                         name="attention2")(f_g2, xyz2, f_vg, img2)

        # U-Net geometric decoder back to every prior point.
        h1 = FeaturePropagation(cfg.decoder_widths[0], dt, name="fp2")(xyz2, fu2, xyz1, fu1)
        h0 = FeaturePropagation(cfg.decoder_widths[1], dt, name="fp1")(xyz1, h1, p, p.astype(dt))
        delta = nn.Dense(3, kernel_init=nn.initializers.zeros, name="offset")(
            h0.astype(jnp.float32))
        points_obj = (p + delta) * PRIOR_UNIT_M

        # Mask head on F_v^2 (L_mask).
        m = nn.Conv(1, (3, 3), dtype=dt, name="mask_head")(f_v2)
        m = nn.max_pool(m, (3, 3), strides=(1, 1), padding="SAME")[..., 0]

        # Hand and object pose encoders (separate weights).
        _, _, fh = _Cnn(cfg.pose_widths, (2, 2, 1), dt, name="hand_pose")(x)
        hh = nn.Conv(2 * NUM_HAND_KEYPOINTS, (1, 1), dtype=dt, name="hand_head")(fh)
        hand_uv, _, hand_cam = _soft_argmax_unproject(
            hh[..., :NUM_HAND_KEYPOINTS], hh[..., NUM_HAND_KEYPOINTS:], K, crop_px,
            cfg.depth_init_m)
        _, _, fo = _Cnn(cfg.pose_widths, (2, 2, 1), dt, name="object_pose")(x)
        oh = nn.Conv(2, (1, 1), dtype=dt, name="object_head")(fo)
        obj_uv, _, obj_cam = _soft_argmax_unproject(oh[..., :1], oh[..., 1:], K, crop_px,
                                                    cfg.depth_init_m)
        return TigerOutput(
            points_obj=points_obj, attention1=w1, attention2=w2,
            patch2_index=idx1[idx21], mask_logits=m.astype(jnp.float32),
            hand_uv_px=hand_uv, hand_joints_cam=hand_cam,
            obj_center_uv_px=obj_uv[0], obj_center_cam=obj_cam[0])


@functools.partial(jax.jit, static_argnames=("config", "crop_px"))
def init_tiger_params(config: TigerConfig, key: jax.Array, crop_px: int = 256) -> dict:
    """Fresh parameters of :class:`TigerNet` (compiled: run op by op, the PointNet++ loops of
    ``init`` cost far more than one compilation)."""
    s = config.image_size
    return TigerNet(config).init(key, jnp.zeros((s, s, 3)), jnp.eye(3),
                                 jax.random.normal(key, (config.num_points, 3)) * 0.05,
                                 crop_px)["params"]


def apply_tiger(params: dict, config: TigerConfig, image: Float[Array, "S S 3"],
                K: Float[Array, "3 3"], prior_obj: Float[Array, "P 3"],
                crop_px: int = 256) -> TigerOutput:
    """Run the network on one example (``crop_px``: side of the crop ``K`` refers to)."""
    return TigerNet(config).apply({"params": params}, image, K, prior_obj, crop_px)
