"""A procedural, articulated hand in the official MANO file layout.

The official MANO files are licensed and cannot ship, so demos and tests use this model. It has
MANO's topology sizes (778 vertices, 1538 faces, an open wrist whose rim has 16 vertices), its
kinematic tree (wrist; index, middle, pinky, ring, thumb chains of three joints), fingertips at
both MANO tip conventions' vertex indices, smooth skinning weights, 10 shape directions,
135 pose correctives, an orthonormal 45-component PCA basis and a relaxed ``hands_mean``.

Construction: a box-shaped palm (quad lattice, 9 × 2 × 8 cells) whose wrist face is opened, and
five fingers extruded from 2 × 2 quad patches (8-vertex rings, domed tips). A triangulated disk
with V vertices and a b-vertex rim has 2V − 2 − b faces, so 778 vertices and a 16-vertex rim give
MANO's 1538 faces. The hand is built in a local frame (x along the fingers, y dorsal, thumb at
−z) and placed in a MANO-like frame (fingers along −x, wrist near x = 0.09 m).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoijax.mano._forward import TIP_VERTEX_IDS
from hoijax.mano._model import ManoModel, Side, model_from_arrays

NUM_VERTS = 778
NUM_FACES = 1538

# Palm lattice: cells along x (wrist → knuckles), y (palmar → dorsal), z (thumb side → pinky).
_NX, _NY, _NZ = 9, 2, 8
_PALM_LENGTH = 0.100
_HALF_WIDTH_WRIST, _HALF_WIDTH_KNUCKLES = 0.031, 0.042
_HALF_THICKNESS_WRIST, _HALF_THICKNESS_KNUCKLES = 0.016, 0.014


@dataclass(frozen=True)
class _FingerSpec:
    name: str
    joints: tuple[int, int, int]  # MANO joint ids, proximal to distal
    length: float  # metres from the palm surface to the tip
    radius: float  # metres
    rings: int
    splay: float  # z-slope of the finger axis (local frame)
    joint_fractions: tuple[float, float]  # axial position of the 2nd and 3rd joint / length


# MANO's joint order: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb.
_FINGERS = (
    _FingerSpec("index", (1, 2, 3), 0.072, 0.0090, 14, -0.07, (0.45, 0.72)),
    _FingerSpec("middle", (4, 5, 6), 0.082, 0.0092, 15, 0.00, (0.45, 0.72)),
    _FingerSpec("ring", (10, 11, 12), 0.076, 0.0086, 14, 0.06, (0.45, 0.72)),
    _FingerSpec("pinky", (7, 8, 9), 0.060, 0.0076, 13, 0.13, (0.45, 0.72)),
)
_THUMB = _FingerSpec("thumb", (13, 14, 15), 0.078, 0.0105, 15, 0.0, (0.36, 0.68))
_THUMB_DIR = np.array([0.72, -0.30, -0.62])  # forward, palmar, away from the palm (local frame)
_TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")  # order of TIP_VERTEX_IDS


@dataclass
class _Finger:
    spec: _FingerSpec
    base: list[int]  # ring 0: the patch rim, stays on the palm
    rings: list[list[int]] = field(default_factory=list)  # rings 1..r
    tip: int = -1  # the patch centre, moved to the fingertip
    axis: np.ndarray = field(default_factory=lambda: np.zeros(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ring_s: list[float] = field(default_factory=list)  # axial position of rings 1..r


class _Builder:
    """Quad-mesh construction with integer vertex ids; positions are filled in afterwards."""

    def __init__(self):
        self.n = 0
        self.lattice: dict[tuple[int, int, int], int] = {}
        self.quads: list[list[int]] = []

    def vert(self) -> int:
        self.n += 1
        return self.n - 1

    def lat(self, ijk: tuple[int, int, int]) -> int:
        if ijk not in self.lattice:
            self.lattice[ijk] = self.vert()
        return self.lattice[ijk]

    def box_side_cells(self, axis: int, at_max: bool) -> dict[tuple[int, int], int]:
        """Add one side of the lattice box; returns {cell (u, v): quad index}."""
        dims = (_NX, _NY, _NZ)
        b, c = (axis + 1) % 3, (axis + 2) % 3  # (b, c, axis) right-handed
        cells = {}
        for u in range(dims[b]):
            for v in range(dims[c]):
                corners = []
                for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                    ijk = [0, 0, 0]
                    ijk[axis] = dims[axis] if at_max else 0
                    ijk[b], ijk[c] = u + du, v + dv
                    corners.append(self.lat(tuple(ijk)))
                if not at_max:
                    corners = corners[::-1]  # outward normal is −axis
                cells[(u, v)] = len(self.quads)
                self.quads.append(corners)
        return cells

    def extrude(self, quad_ids: list[int], rings: int) -> tuple[list[int], list[list[int]], int]:
        """Extrude a quad patch into a tube of ``rings`` rings capped by the patch itself."""
        directed = {(q[i], q[(i + 1) % 4]) for qi in quad_ids for q in [self.quads[qi]]
                    for i in range(4)}
        rim_edges = {a: b for a, b in directed if (b, a) not in directed}
        start = next(iter(rim_edges))
        loop = [start]
        while rim_edges[loop[-1]] != start:
            loop.append(rim_edges[loop[-1]])
        patch_verts = {v for qi in quad_ids for v in self.quads[qi]}
        (centre,) = patch_verts - set(loop)
        all_rings = [loop] + [[self.vert() for _ in loop] for _ in range(rings)]
        for lo, hi in zip(all_rings[:-1], all_rings[1:]):
            for i in range(len(loop)):
                k = (i + 1) % len(loop)
                self.quads.append([lo[i], lo[k], hi[k], hi[i]])
        top = dict(zip(loop, all_rings[-1]))
        for qi in quad_ids:
            self.quads[qi] = [top.get(v, v) for v in self.quads[qi]]
        return loop, all_rings[1:], centre


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _build_local() -> tuple[np.ndarray, np.ndarray, dict]:
    """Vertices (local frame), triangles, and construction metadata, before the tip permutation."""
    bld = _Builder()
    sides = {(a, m): bld.box_side_cells(a, m) for a in range(3) for m in (False, True)}

    # Open the wrist: remove the wrist-face cells away from the two narrow edges (z cells 1..6).
    wrist_cells = sides[(0, False)]  # axis x at min: cells (u=y, v=z)
    removed = {wrist_cells[(u, v)] for u in range(_NY) for v in range(1, _NZ - 1)}

    # One quad on the palmar face is split by a centre vertex: 20·9 + 29 lattice vertices and
    # 8 per finger ring leave an odd remainder to reach 778.
    palmar = sides[(1, False)]  # axis y at min: cells (u=z, v=x)
    split_quad = palmar[(4, 4)]

    fingers: dict[str, _Finger] = {}
    top = sides[(0, True)]  # axis x at max: cells (u=y, v=z)
    for slot, spec in enumerate(_FINGERS):
        patch = [top[(u, v)] for u in range(_NY) for v in (2 * slot, 2 * slot + 1)]
        base, rings, tip = bld.extrude(patch, spec.rings)
        fingers[spec.name] = _Finger(spec, base, rings, tip)
    thumb_side = sides[(2, False)]  # axis z at min: cells (u=x, v=y)
    patch = [thumb_side[(u, v)] for u in (1, 2) for v in range(_NY)]
    base, rings, tip = bld.extrude(patch, _THUMB.rings)
    fingers["thumb"] = _Finger(_THUMB, base, rings, tip)

    centre_vert = bld.vert()
    n = bld.n
    live = [q for qi, q in enumerate(bld.quads) if qi not in removed]
    pos = np.full((n, 3), np.nan)

    # Palm lattice positions: tapered, rounded (superellipse) cross-section.
    for (i, j, k), vid in bld.lattice.items():
        t = i / _NX
        hw = _HALF_WIDTH_WRIST + (_HALF_WIDTH_KNUCKLES - _HALF_WIDTH_WRIST) * _smoothstep(1.3 * t)
        ht = _HALF_THICKNESS_WRIST + (_HALF_THICKNESS_KNUCKLES - _HALF_THICKNESS_WRIST) * t
        yn, zn = (j - _NY / 2) / (_NY / 2), (k - _NZ / 2) / (_NZ / 2)
        if max(abs(yn), abs(zn)) >= 1.0:  # on the side walls: round the corners
            norm = (abs(yn) ** 3 + abs(zn) ** 3) ** (1 / 3)
            yn, zn = yn / norm, zn / norm
        pos[vid] = (t * _PALM_LENGTH, yn * ht, zn * hw)

    for f in fingers.values():
        _place_finger(f, pos)

    q = bld.quads[split_quad]
    pos[centre_vert] = pos[q].mean(0) + np.array([0.0, -0.002, 0.0])
    assert not np.isnan(pos).any()

    tris = []
    for qd in live:
        if qd is bld.quads[split_quad]:
            tris += [[qd[i], qd[(i + 1) % 4], centre_vert] for i in range(4)]
        else:
            tris += [[qd[0], qd[1], qd[2]], [qd[0], qd[2], qd[3]]]
    tris = np.asarray(tris, np.int64)
    wrist_rim = sorted({v for qi in removed for v in bld.quads[qi]} & set(tris.ravel()))

    # Drop the lattice points inside the wrist opening, which no face uses any more.
    used = np.zeros(n, bool)
    used[tris.ravel()] = True
    new_id = np.cumsum(used) - 1
    for f in fingers.values():
        f.base = [int(new_id[v]) for v in f.base]
        f.rings = [[int(new_id[v]) for v in ring] for ring in f.rings]
        f.tip = int(new_id[f.tip])
    meta = {"fingers": fingers, "wrist_rim": [int(new_id[v]) for v in wrist_rim]}
    return pos[used], new_id[tris], meta


def _place_finger(f: _Finger, pos: np.ndarray) -> None:
    """Place the rings of an extruded finger around its axis (local frame)."""
    spec = f.spec
    base = pos[f.base]
    origin = base.mean(0)
    if spec.name == "thumb":
        axis = _THUMB_DIR / np.linalg.norm(_THUMB_DIR)
    else:
        axis = np.array([1.0, 0.0, spec.splay])
        axis /= np.linalg.norm(axis)
    e2 = np.array([0.0, 1.0, 0.0]) - axis[1] * axis  # dorsal, orthogonal to the axis
    e2 /= np.linalg.norm(e2)
    e1 = np.cross(e2, axis)
    off = base - origin
    off -= np.outer(off @ axis, axis)
    phi = np.arctan2(off @ e2, off @ e1)
    circle = np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2

    r, rho, length = spec.rings, spec.radius, spec.length
    s_dome = length - rho
    body = [s_dome * t / (r - 3) for t in range(1, r - 2)]
    polar = np.deg2rad([70.0, 48.0, 22.0])  # domed tip: three rings on a hemisphere
    ring_s = body + list(s_dome + rho * np.cos(polar))
    ring_rad = [rho] * len(body) + list(rho * np.sin(polar))
    for ring, s, rad in zip(f.rings, ring_s, ring_rad):
        alpha = _smoothstep(s / 0.016)  # blend the rectangular rim into a round finger
        pos[ring] = origin + s * axis + (1 - alpha) * off + alpha * rad * circle
    pos[f.tip] = origin + length * axis
    f.axis, f.origin, f.ring_s = axis, origin, ring_s


def _joint_regressor(fingers: dict[str, _Finger], wrist_rim: list[int]) -> np.ndarray:
    """Each joint is the centroid of one vertex ring (so it follows shape changes)."""
    jr = np.zeros((16, NUM_VERTS))
    jr[0, wrist_rim] = 1.0 / len(wrist_rim)
    for f in fingers.values():
        rings = [f.base] + f.rings
        s_all = np.array([0.0] + f.ring_s)
        for jid, frac in zip(f.spec.joints, (0.0,) + f.spec.joint_fractions):
            ring = rings[int(np.argmin(np.abs(s_all - frac * f.spec.length)))]
            jr[jid, ring] = 1.0 / len(ring)
    return jr


def _skinning_weights(pos, fingers) -> np.ndarray:
    """Smooth LBS weights: logistic partitions along each finger, lateral falloff on the palm."""
    h_finger, h_palm = 0.0035, 0.006
    w = np.zeros((len(pos), 16))
    finger_of = {}
    for f in fingers.values():
        for v in [u for ring in f.rings for u in ring] + [f.tip]:
            finger_of[v] = f
    for v, p in enumerate(pos):
        if v in finger_of:
            f = finger_of[v]
            s = (p - f.origin) @ f.axis
            bounds = [0.0] + [fr * f.spec.length for fr in f.spec.joint_fractions]
            cdf = [_sigmoid((s - b) / h_finger) for b in bounds]  # increasing in s
            w[v, 0] = 1 - cdf[0]
            for jid, lo, hi in zip(f.spec.joints, cdf, cdf[1:] + [0.0]):
                w[v, jid] = lo - hi
        else:
            total = 0.0
            for f in fingers.values():
                d = p - f.origin
                s = d @ f.axis
                lateral = np.linalg.norm(d - s * f.axis)
                wf = _sigmoid(s / h_palm) * np.exp(-((lateral / 0.014) ** 2))
                w[v, f.spec.joints[0]] = wf
                total += wf
            w[v, 0] = max(1.0 - total, 0.0)
    w = np.clip(w, 0.0, None)
    return w / w.sum(1, keepdims=True)


def _flexion_axis(axis_local: np.ndarray) -> np.ndarray:
    a = np.cross(axis_local, np.array([0.0, -1.0, 0.0]))
    return a / np.linalg.norm(a)


def _pose_space(fingers, R0: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """A relaxed mean articulation and an orthonormal PCA basis led by meaningful synergies."""
    flex = np.zeros((15, 3))  # per finger joint (MANO joints 1..15), unit flexion axes, MANO frame
    spread = np.zeros((15, 3))
    mean = np.zeros((15, 3))
    curl_rel = {"thumb": (0.20, 0.25, 0.20)}
    spread_amount = {"index": -1.0, "middle": 0.0, "ring": 0.7, "pinky": 1.2, "thumb": -1.0}
    for f in fingers.values():
        ax = R0 @ _flexion_axis(f.axis)
        for k, jid in enumerate(f.spec.joints):
            flex[jid - 1] = ax
            mean[jid - 1] = curl_rel.get(f.spec.name, (0.25, 0.35, 0.20))[k] * ax
        spread[f.spec.joints[0] - 1] = spread_amount[f.spec.name] * (R0 @ np.array([0, 1.0, 0]))
    thumb_only = np.zeros((15, 3))
    thumb_only[12:15] = flex[12:15]
    index_only = np.zeros((15, 3))
    index_only[0:3] = flex[0:3]
    lead = np.stack([flex.ravel(), spread.ravel(), thumb_only.ravel(), index_only.ravel()])
    basis = np.concatenate([lead, rng.normal(size=(45, 45))])
    q, _ = np.linalg.qr(basis.T)
    comps = q[:, :45].T
    comps *= np.sign(np.sum(comps * basis[:45], axis=1, keepdims=True))  # keep lead signs
    return mean.ravel(), comps


def _shape_dirs(pos, fingers, wrist: np.ndarray, rng) -> np.ndarray:
    """Ten smooth shape directions (metres per unit beta), local frame."""
    n = len(pos)
    dirs = np.zeros((n, 3, 10))
    dirs[..., 0] = 0.05 * (pos - wrist)  # overall size
    palm_len = np.clip(pos[:, 0], 0.0, _PALM_LENGTH)
    dirs[:, 0, 5] = 0.06 * palm_len  # palm length (fingers ride along)
    dirs[:, 2, 2] = 0.08 * pos[:, 2]  # palm and finger spread width
    dirs[:, 1, 3] = 0.10 * pos[:, 1]  # thickness
    for f in fingers.values():
        ids = np.array([u for ring in f.rings for u in ring] + [f.tip])
        d = pos[ids] - f.origin
        s = d @ f.axis
        radial = d - np.outer(s, f.axis)
        k = 6 if f.spec.name == "thumb" else 1
        dirs[ids, :, k] = 0.10 * np.outer(s, f.axis)  # finger (or thumb) length
        dirs[ids, :, 4] = 0.12 * radial  # finger girth
    for k in (7, 8, 9):  # low-frequency random bumps, about 2 mm
        freq = rng.normal(size=(3, 3)) * 25.0
        phase = rng.uniform(0, 2 * np.pi, size=3)
        dirs[..., k] = 0.002 * np.sin(pos @ freq.T + phase)
    return dirs


def _pose_dirs(weights: np.ndarray, rng) -> np.ndarray:
    """Pose correctives: bulges where a joint's skinning weight blends, about 1–3 mm per radian."""
    n = len(weights)
    dirs = np.zeros((n, 3, 135))
    for j in range(1, 16):
        blend = 4.0 * weights[:, j] * (1.0 - weights[:, j])  # peaks at the joint's boundary
        for k in range(9):
            direction = rng.normal(size=3)
            direction *= 0.002 / np.linalg.norm(direction)
            dirs[:, :, 9 * (j - 1) + k] = blend[:, None] * direction
    return dirs


@functools.lru_cache(maxsize=4)
def _right_hand_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos, tris, meta = _build_local()
    fingers, wrist_rim = meta["fingers"], meta["wrist_rim"]
    assert len(pos) == NUM_VERTS and len(tris) == NUM_FACES, (len(pos), len(tris))

    # Permute vertices so both fingertip conventions land on fingertips.
    perm = np.full(NUM_VERTS, -1)
    for name, smplx_id, manopth_id in zip(_TIP_ORDER, TIP_VERTEX_IDS["smplx"],
                                          TIP_VERTEX_IDS["manopth"]):
        f = fingers[name]
        last = f.rings[-1]
        palmar_most = last[int(np.argmin(pos[last, 1]))]
        perm[manopth_id], perm[smplx_id] = f.tip, palmar_most
    rest = [v for v in range(NUM_VERTS) if v not in set(perm[perm >= 0])]
    perm[perm < 0] = rest
    new_of_old = np.empty(NUM_VERTS, np.int64)
    new_of_old[perm] = np.arange(NUM_VERTS)

    weights = _skinning_weights(pos, fingers)
    jr = _joint_regressor(fingers, wrist_rim)
    shapedirs = _shape_dirs(pos, fingers, jr[0] @ pos, rng)

    # Local → MANO-like frame: a half turn about y (fingers along −x, thumb at +z), wrist near
    # the official template's wrist position.
    R0 = np.diag([-1.0, 1.0, -1.0])
    wrist_mano = np.array([0.0957, 0.0064, 0.0062])
    offset = wrist_mano - R0 @ (jr[0] @ pos)
    v_template = pos @ R0.T + offset
    hands_mean, comps = _pose_space(fingers, R0, rng)
    posedirs = _pose_dirs(weights, rng)

    return {
        "v_template": v_template[perm],
        "f": new_of_old[tris].astype(np.uint32),
        "shapedirs": np.einsum("ab,vbs->vas", R0, shapedirs)[perm],
        "posedirs": posedirs[perm],
        "J_regressor": jr[:, perm],
        "J": jr @ v_template,
        "weights": weights[perm],
        "kintree_table": np.array(
            [[2**32 - 1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], list(range(16))],
            np.int64,
        ),
        "hands_components": comps,
        "hands_mean": hands_mean,
        "hands_coeffs": rng.normal(scale=0.3, size=(64, 45)) @ comps,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _mirror(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The left hand: the right hand reflected in the yz-plane (x → −x), like the official pair.

    Rotations conjugate as R_left = M R M with M = diag(−1, 1, 1), so axis-angle vectors map to
    (x, −y, −z); pose correctives pick up the matching sign per (R − I) entry and output axis.
    """
    M = np.array([-1.0, 1.0, 1.0])
    aa_sign = np.array([1.0, -1.0, -1.0])
    entry_sign = np.tile(np.outer(M, M).ravel(), 15)  # sign of (R − I)[a, b] under conjugation
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] * M
    out["J"] = arrays["J"] * M
    out["f"] = arrays["f"][:, ::-1].copy()  # reflection flips the winding
    out["shapedirs"] = arrays["shapedirs"] * M[None, :, None]
    out["posedirs"] = arrays["posedirs"] * M[None, :, None] * entry_sign[None, None, :]
    out["hands_components"] = (arrays["hands_components"].reshape(-1, 15, 3) * aa_sign).reshape(
        -1, 45)
    out["hands_mean"] = (arrays["hands_mean"].reshape(15, 3) * aa_sign).ravel()
    out["hands_coeffs"] = (arrays["hands_coeffs"].reshape(-1, 15, 3) * aa_sign).reshape(-1, 45)
    return out


def synthetic_mano_arrays(side: Side = "right", seed: int = 0) -> dict[str, np.ndarray]:
    """The synthetic hand as a dict in the official ``MANO_{RIGHT,LEFT}.pkl`` key layout.

    Deterministic for a seed (the seed drives the random shape bumps, pose correctives and the
    tail of the PCA basis; the mesh itself is fixed).
    """
    right = _right_hand_arrays(seed)
    arrays = right if side == "right" else _mirror(right)
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}


@functools.lru_cache(maxsize=8)
def synthetic_mano(side: Side = "right", seed: int = 0) -> ManoModel:
    """The synthetic hand as a :class:`ManoModel` (the default model of demos and tests)."""
    return model_from_arrays(synthetic_mano_arrays(side, seed), side)


def write_synthetic_mano(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` that smplx and manopth load unchanged.

    The pickles hold plain NumPy arrays and strings under the official keys (no chumpy objects),
    written with protocol 2 like the official files.
    """
    import pickle

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for side in ("right", "left"):
        path = directory / f"MANO_{side.upper()}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(synthetic_mano_arrays(side, seed), fh, protocol=2)
        paths.append(path)
    return paths[0], paths[1]
