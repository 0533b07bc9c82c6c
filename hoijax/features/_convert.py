"""Converting public DINOv2 / DINOv3 PyTorch checkpoints into :class:`DinoViT` parameters.

Two layouts are read, each in both families:

* **Hugging Face** (``model.safetensors`` of ``facebook/dinov2-*``,
  ``facebook/dinov2-with-registers-*``, ``facebook/dinov3-vit*``, or a ``state_dict()`` of the
  ``transformers`` models): ``embeddings.*``, ``encoder.layer.N.*`` (DINOv2; both the hub files'
  ``attention.attention.query`` / ``mlp.weights_in`` names and transformers 5's ``q_proj`` /
  ``gate_proj`` names) or ``[model.]layer.N.*`` (DINOv3), ``layernorm`` / ``norm``.
* **Meta** (``dinov2_vit*14[_reg4]_pretrain.pth``, ``dinov3_vit*16_*.pth`` from the original
  repos): ``patch_embed.proj``, ``cls_token``, ``pos_embed`` / ``register_tokens`` /
  ``storage_tokens``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.*,
  ls2.gamma}``, ``norm``, ``rope_embed.periods``. The fused ``qkv`` (and DINOv2-giant's fused
  ``w12``) are split in the order q, k, v (gate, up), as transformers' conversion scripts do;
  DINOv3's ``qkv.bias_mask`` is applied (it zeroes the key bias).

Torch linear weights (out, in) become Flax kernels (in, out); the patch convolution
(C, 3, p, p) becomes (p, p, 3, C). Every key of the file must be used (or be a known unused one:
mask token, RoPE buffers, classifier head), so a checkpoint that does not fit the config (e.g.
deeper than ``num_layers``) is refused rather than silently truncated.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np

from hoijax.features._config import ViTConfig
from hoijax.features._pos_embed import rope_periods
from hoijax.features._torch_pickle import CheckpointError, read_torch_state_dict
from hoijax.features._vit import vit_param_shapes

PathLike = str | os.PathLike

_IGNORED = re.compile(
    r"^(mask_token|embeddings\.mask_token|rope_embed\.periods|rope_embeddings\.inv_freq"
    r"|classifier\..*|pooler\..*|.*\.bias_mask)$"
)
"""Keys that inference does not need (``bias_mask`` and ``periods`` are checked when read)."""


class _Source:
    """A flat checkpoint dict that remembers which keys were read and names the file in errors."""

    def __init__(self, tensors: dict[str, np.ndarray], origin: str):
        self.tensors = tensors
        self.origin = origin
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def take(self, keys: str | Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
        """The first present key among ``keys``, checked against ``shape``."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        for key in keys:
            if key in self.tensors:
                x = np.asarray(self.tensors[key])
                if x.shape != tuple(shape):
                    raise CheckpointError(
                        f"{self.origin}: key '{key}' has shape {x.shape}, expected {tuple(shape)} "
                        "(does the ViTConfig match this checkpoint?)")
                if not np.issubdtype(x.dtype, np.floating):
                    raise CheckpointError(f"{self.origin}: key '{key}' has dtype {x.dtype}, "
                                          "expected floating point")
                self.used.add(key)
                return x.astype(np.float32)
        alt = f" (or {', '.join(repr(k) for k in keys[1:])})" if len(keys) > 1 else ""
        raise CheckpointError(f"{self.origin}: missing key '{keys[0]}'{alt}")


def _dense(src: _Source, names: Sequence[str], n_in: int, n_out: int, bias: bool) -> dict:
    out = {"kernel": src.take([f"{n}.weight" for n in names], (n_out, n_in)).T}
    if bias:
        out["bias"] = src.take([f"{n}.bias" for n in names], (n_out,))
    return out


def _norm(src: _Source, name: str, c: int) -> dict:
    return {"scale": src.take(f"{name}.weight", (c,)), "bias": src.take(f"{name}.bias", (c,))}


def _split_rows(x: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(x, parts, axis=0)


def _fused_dense(src: _Source, name: str, n_in: int, n_each: int, biases: Sequence[bool],
                 labels: Sequence[str]) -> list[dict]:
    """Split a fused linear layer (Meta's ``qkv`` / ``w12``) into per-part Flax dense params."""
    parts = len(biases)
    ws = _split_rows(src.take(f"{name}.weight", (parts * n_each, n_in)), parts)
    out = [{"kernel": w.T} for w in ws]
    if any(biases):
        b = src.take(f"{name}.bias", (parts * n_each,))
        if src.has(f"{name}.bias_mask"):
            mask = src.take(f"{name}.bias_mask", (parts * n_each,))
            if not np.all(np.isfinite(mask)):
                raise CheckpointError(f"{src.origin}: key '{name}.bias_mask' is not finite "
                                      "(an uninitialized model was saved)")
            b = b * mask
        for d, part_bias, keep, label in zip(out, _split_rows(b, parts), biases, labels):
            if keep:
                d["bias"] = part_bias
            elif np.any(part_bias != 0):
                raise CheckpointError(
                    f"{src.origin}: key '{name}.bias' has a non-zero {label} bias but the config "
                    f"has {label}_bias=False")
    return out


def _layout(src: _Source, config: ViTConfig) -> str:
    keys = src.tensors
    if "patch_embed.proj.weight" in keys:
        family = "dinov3" if ("storage_tokens" in keys or "rope_embed.periods" in keys
                              or "pos_embed" not in keys) else "dinov2"
        layout = "meta"
    elif "embeddings.patch_embeddings.projection.weight" in keys:
        family, layout = "dinov2", "hf"
    elif "embeddings.patch_embeddings.weight" in keys:
        family, layout = "dinov3", "hf"
    else:
        raise CheckpointError(
            f"{src.origin}: not a DINOv2/DINOv3 checkpoint: none of the keys "
            "'patch_embed.proj.weight' (Meta), 'embeddings.patch_embeddings.projection.weight' "
            "(HF DINOv2) or 'embeddings.patch_embeddings.weight' (HF DINOv3) is present")
    if family != config.family:
        raise CheckpointError(f"{src.origin}: this is a {family} checkpoint ({layout} layout) but "
                              f"the config's family is {config.family!r}")
    return layout


def _normalize_keys(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip wrappers: DDP ``module.``, training ``backbone.``, HF task-model prefixes, and
    Meta's chunked blocks (``blocks.<chunk>.<i>.``)."""
    out = dict(tensors)
    if any(k.startswith("module.") for k in out):
        out = {k.removeprefix("module."): v for k, v in out.items()}
    if any(k.startswith("backbone.") for k in out):
        out = {k.removeprefix("backbone."): v for k, v in out.items() if k.startswith("backbone.")}
    for prefix in ("dinov2_with_registers.", "dinov2.", "dinov3_vit."):
        if any(k.startswith(prefix + "embeddings.") for k in out):
            out = {k.removeprefix(prefix): v for k, v in out.items()}
    if any(re.match(r"blocks\.\d+\.\d+\.", k) for k in out):
        out = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in out.items()}
    return out


def _convert_meta(src: _Source, cfg: ViTConfig) -> dict:
    c, p, r = cfg.hidden_size, cfg.patch_size, cfg.num_register_tokens
    params: dict[str, Any] = {
        "patch_embed": {"kernel": src.take("patch_embed.proj.weight", (c, 3, p, p)).transpose(2, 3, 1, 0),
                        "bias": src.take("patch_embed.proj.bias", (c,))},
        "cls_token": src.take("cls_token", (1, 1, c)).reshape(c),
        "norm": _norm(src, "norm", c),
    }
    if r:
        name = "register_tokens" if cfg.family == "dinov2" else "storage_tokens"
        params["register_tokens"] = src.take(name, (1, r, c)).reshape(r, c)
    if cfg.family == "dinov2":
        n = 1 + cfg.pos_embed_grid ** 2
        params["pos_embed"] = src.take("pos_embed", (1, n, c)).reshape(n, c)
    elif src.has("rope_embed.periods"):
        periods = src.take("rope_embed.periods", (cfg.head_dim // 4,))
        expected = rope_periods(cfg.head_dim, cfg.rope_theta)
        if not np.allclose(periods, expected, rtol=1e-5):
            raise CheckpointError(
                f"{src.origin}: key 'rope_embed.periods' {periods[:3]}... does not match "
                f"rope_theta={cfg.rope_theta} ({expected[:3]}...)")
    m = cfg.mlp_hidden_size
    for i in range(cfg.num_layers):
        b = f"blocks.{i}"
        q, k, v = _fused_dense(src, f"{b}.attn.qkv", c, c,
                               (cfg.query_bias, cfg.key_bias, cfg.value_bias), ("query", "key", "value"))
        if cfg.mlp == "gelu":
            mlp = {"fc1": _dense(src, [f"{b}.mlp.fc1"], c, m, cfg.mlp_bias),
                   "fc2": _dense(src, [f"{b}.mlp.fc2"], m, c, cfg.mlp_bias)}
        elif src.has(f"{b}.mlp.w12.weight"):  # DINOv2-giant: fused gate/up
            gate, up = _fused_dense(src, f"{b}.mlp.w12", c, m, (cfg.mlp_bias,) * 2, ("gate", "up"))
            mlp = {"gate": gate, "up": up, "down": _dense(src, [f"{b}.mlp.w3"], m, c, cfg.mlp_bias)}
        else:  # DINOv3 SwiGLU: separate w1 (gate), w2 (up), w3 (down)
            mlp = {"gate": _dense(src, [f"{b}.mlp.w1"], c, m, cfg.mlp_bias),
                   "up": _dense(src, [f"{b}.mlp.w2"], c, m, cfg.mlp_bias),
                   "down": _dense(src, [f"{b}.mlp.w3"], m, c, cfg.mlp_bias)}
        params[f"blocks_{i}"] = {
            "norm1": _norm(src, f"{b}.norm1", c),
            "attn": {"q": q, "k": k, "v": v,
                     "proj": _dense(src, [f"{b}.attn.proj"], c, c, cfg.proj_bias)},
            "ls1": src.take(f"{b}.ls1.gamma", (c,)),
            "norm2": _norm(src, f"{b}.norm2", c),
            "mlp": mlp,
            "ls2": src.take(f"{b}.ls2.gamma", (c,)),
        }
    return params


def _convert_hf(src: _Source, cfg: ViTConfig) -> dict:
    c, p, r, m = cfg.hidden_size, cfg.patch_size, cfg.num_register_tokens, cfg.mlp_hidden_size
    v2 = cfg.family == "dinov2"
    patch = "embeddings.patch_embeddings.projection" if v2 else "embeddings.patch_embeddings"
    params: dict[str, Any] = {
        "patch_embed": {"kernel": src.take(f"{patch}.weight", (c, 3, p, p)).transpose(2, 3, 1, 0),
                        "bias": src.take(f"{patch}.bias", (c,))},
        "cls_token": src.take("embeddings.cls_token", (1, 1, c)).reshape(c),
        "norm": _norm(src, "layernorm" if v2 else "norm", c),
    }
    if r:
        params["register_tokens"] = src.take("embeddings.register_tokens", (1, r, c)).reshape(r, c)
    if v2:
        n = 1 + cfg.pos_embed_grid ** 2
        params["pos_embed"] = src.take("embeddings.position_embeddings", (1, n, c)).reshape(n, c)
    for i in range(cfg.num_layers):
        if v2:
            b = f"encoder.layer.{i}"
            attn_names = {"q": ("q_proj", "attention.query"), "k": ("k_proj", "attention.key"),
                          "v": ("v_proj", "attention.value"), "proj": ("o_proj", "output.dense")}
        else:
            b = f"model.layer.{i}" if src.has(f"model.layer.{i}.norm1.weight") else f"layer.{i}"
            attn_names = {"q": ("q_proj",), "k": ("k_proj",), "v": ("v_proj",), "proj": ("o_proj",)}
        biases = {"q": cfg.query_bias, "k": cfg.key_bias, "v": cfg.value_bias, "proj": cfg.proj_bias}
        attn = {name: _dense(src, [f"{b}.attention.{a}" for a in alts], c, c, biases[name])
                for name, alts in attn_names.items()}
        if cfg.mlp == "gelu":
            fc1, fc2 = ("fc1", "fc2") if v2 else ("up_proj", "down_proj")
            mlp = {"fc1": _dense(src, [f"{b}.mlp.{fc1}"], c, m, cfg.mlp_bias),
                   "fc2": _dense(src, [f"{b}.mlp.{fc2}"], m, c, cfg.mlp_bias)}
        elif src.has(f"{b}.mlp.weights_in.weight"):  # DINOv2-giant on the hub: fused gate/up
            gate, up = _fused_dense(src, f"{b}.mlp.weights_in", c, m, (cfg.mlp_bias,) * 2,
                                    ("gate", "up"))
            mlp = {"gate": gate, "up": up,
                   "down": _dense(src, [f"{b}.mlp.weights_out"], m, c, cfg.mlp_bias)}
        else:
            mlp = {"gate": _dense(src, [f"{b}.mlp.gate_proj"], c, m, cfg.mlp_bias),
                   "up": _dense(src, [f"{b}.mlp.up_proj"], c, m, cfg.mlp_bias),
                   "down": _dense(src, [f"{b}.mlp.down_proj"], m, c, cfg.mlp_bias)}
        params[f"blocks_{i}"] = {
            "norm1": _norm(src, f"{b}.norm1", c),
            "attn": attn,
            "ls1": src.take(f"{b}.layer_scale1.lambda1", (c,)),
            "norm2": _norm(src, f"{b}.norm2", c),
            "mlp": mlp,
            "ls2": src.take(f"{b}.layer_scale2.lambda1", (c,)),
        }
    return params


def convert_state_dict(
    tensors: dict[str, np.ndarray], config: ViTConfig, *, origin: str = "<state dict>",
    dtype: Any = np.float32,
) -> dict:
    """Convert a flat PyTorch state dict (NumPy arrays) into :class:`DinoViT` parameters.

    The layout (Hugging Face or Meta) is detected from the keys; see the module docstring.

    Args:
      tensors: ``{key: array}`` as read by :func:`read_safetensors` / :func:`read_torch_state_dict`.
      config: architecture the parameters are for (e.g. ``vit_preset("dinov2_vits14")``).
      origin: the file name used in error messages.
      dtype: dtype of the returned arrays.

    Raises:
      CheckpointError: naming ``origin`` and the key: unknown layout, other family, missing key,
        wrong shape, unused keys (a checkpoint deeper or otherwise different from ``config``).
    """
    src = _Source(_normalize_keys(tensors), origin)
    layout = _layout(src, config)
    params = _convert_meta(src, config) if layout == "meta" else _convert_hf(src, config)
    unused = sorted(k for k in src.tensors if k not in src.used and not _IGNORED.match(k))
    if unused:
        more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
        raise CheckpointError(
            f"{origin}: unexpected key(s) {unused[:8]}{more} for a {config.family} ViT with "
            f"{config.num_layers} layers, {config.num_register_tokens} registers and "
            f"{config.mlp!r} MLP (does the ViTConfig match this checkpoint?)")
    expected = vit_param_shapes(config)
    got = jax.tree.map(lambda x: x.shape, params)
    want = jax.tree.map(lambda x: x.shape, expected)
    if got != want:  # a bug here, not in the file: the key map and the module disagree
        raise AssertionError(f"converted parameter tree does not match DinoViT: {got} vs {want}")
    return jax.tree.map(lambda x: np.ascontiguousarray(x, dtype=dtype), params)


_SAFETENSORS_DTYPES = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32,
                       "F64": np.float64}


def _read_safetensors_raw(path: Path, key: str) -> np.ndarray:
    """One tensor read from the raw file format (for dtypes NumPy lacks, i.e. bfloat16)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(n))[key]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        raw = f.read(end - start)
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
    return np.frombuffer(raw, dtype).reshape(info["shape"]).astype(np.float32)


def read_safetensors(path: PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into NumPy arrays (safetensors' NumPy API; bf16 -> float32).

    Raises:
      CheckpointError: naming the file when it is missing or corrupt.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                try:
                    out[key] = f.get_tensor(key)
                except TypeError:  # bfloat16: NumPy has no such dtype
                    out[key] = _read_safetensors_raw(path, key)
    except (SafetensorError, OSError, ValueError, KeyError, struct.error) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({type(e).__name__}: {e})") from e
    return out


def read_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` or torch ``.pth``/``.pt``/``.bin`` file (told apart by content)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt") or head == b"PK":  # torch.save's zip
        return read_torch_state_dict(path)
    return read_safetensors(path)


def load_vit_params(path: PathLike, config: ViTConfig, *, dtype: Any = np.float32) -> dict:
    """Load DINOv2 / DINOv3 weights from a Hugging Face ``.safetensors`` or a Meta ``.pth``.

    Torch is not needed: ``.pth`` files are read by a restricted unpickler that refuses any
    global other than tensor rebuilding. Returns the :class:`DinoViT` parameter tree.

    Raises:
      CheckpointError: naming the file (and the key) on any problem.
    """
    path = Path(path)
    return convert_state_dict(read_state_dict(path), config, origin=str(path), dtype=dtype)
