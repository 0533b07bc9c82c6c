"""The order in which frames are processed: from the onset frame forward, then backward.

AGILE §3.3 propagates from the IOF to the end and from the IOF to the start, each frame starting
from the previous *processed* frame, every ``stride``-th frame. With a traced onset frame the
number of steps each way varies, so the schedule has a static length ``L = ⌈N/stride⌉ + 1`` (the
most any onset can need) and marks unused steps; one ``lax.scan`` runs it.

:func:`adaptive_schedule` shortens a step where the motion says the stride would outrun the
tracker: each step goes as far as the stride allows and a test of the two frames accepts,
at least one frame; with motion slow enough everywhere it is the fixed schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int


class Schedule(eqx.Module):
    """Per scan step: which frame, whether the step is real, and where its start comes from."""

    frame: Int[Array, " L"]
    """Frame index processed at this step (clamped into range on unused steps)."""
    active: Bool[Array, " L"]
    """The step processes a real (valid, on-stride) frame."""
    from_onset: Bool[Array, " L"]
    """The step starts from the onset frame's result (first backward step, and the onset itself)
    rather than from the previous step."""
    is_onset: Bool[Array, " L"]
    """The step is the onset frame itself (the joint hand/object/scale stage)."""


def num_steps(num_frames: int, stride: int, ends: bool = False) -> int:
    """Static schedule length for ``num_frames`` frames at ``stride`` (``ends``: room for the
    first and last frames when the stride skips them)."""
    return -(-num_frames // stride) + 1 + (2 if ends and stride > 1 else 0)


def bidirectional_schedule(
    onset: Int[Array, ""], num_valid: Int[Array, ""], num_frames: int, stride: int,
    ends: bool = False,
) -> Schedule:
    """Frames ``onset, onset+s, …`` (< num_valid), then ``onset−s, onset−2s, …`` (≥ 0).

    Forward frames occupy the first steps, backward frames follow immediately; the tail is unused.
    Processed frames are those congruent to ``onset`` modulo ``stride``; with ``ends`` also the
    last valid frame (after the forward ones) and frame 0 (after the backward ones) when the
    stride skips them, so no frame is extrapolated: every unprocessed frame lies between two
    processed ones.
    """
    L = num_steps(num_frames, stride, ends)
    k = jnp.arange(L)
    last = num_valid - 1
    n_fwd_reg = (last - onset) // stride + 1  # onset itself included
    n_bwd_reg = onset // stride
    extra_f = ends & ((last - onset) % stride != 0)
    extra_b = ends & (onset % stride != 0)
    n_fwd = n_fwd_reg + extra_f.astype(n_fwd_reg.dtype)
    n_bwd = n_bwd_reg + extra_b.astype(n_bwd_reg.dtype)
    is_fwd = k < n_fwd
    j = k - n_fwd + 1  # 1, 2, … on backward steps
    frame = jnp.where(is_fwd, jnp.where(k < n_fwd_reg, onset + k * stride, last),
                      jnp.where(j <= n_bwd_reg, onset - j * stride, 0))
    active = is_fwd | ((j >= 1) & (j <= n_bwd))
    return Schedule(
        frame=jnp.clip(frame, 0, num_frames - 1).astype(jnp.int32),
        active=active,
        from_onset=(k == 0) | (k == n_fwd),
        is_onset=k == 0,
    )


def adaptive_schedule(
    onset: Int[Array, ""], num_valid: Int[Array, ""], num_frames: int, stride: int,
    step_ok: Callable[[Int[Array, ""], Int[Array, ""]], Bool[Array, ""]],
) -> Schedule:
    """:func:`bidirectional_schedule` (with ``ends``) whose steps shrink where the motion is
    fast: from the processed frame ``c``, the next one is the farthest of ``c ± 1 … c ±
    stride`` (within ``0 … num_valid − 1``) for which ``step_ok(c, f)`` holds, or ``c ± 1``
    when none does. Forward from the onset to the last valid frame, then backward from the
    onset to frame 0.

    Where ``step_ok`` always holds the frames are exactly those of
    ``bidirectional_schedule(..., ends=True)``. The static length is ``num_frames`` (every
    frame processed at worst); unused steps at the tail are inactive."""
    if stride < 1:
        raise ValueError(f"stride must be ≥ 1, got {stride}")
    onset = jnp.asarray(onset, jnp.int32)
    last = jnp.asarray(num_valid, jnp.int32) - 1
    js = jnp.arange(1, stride + 1, dtype=jnp.int32)

    def next_frame(c, direction):
        f = c + direction * js
        inside = (f >= 0) & (f <= last)
        ok = inside & jax.vmap(lambda b: step_ok(c, b))(jnp.clip(f, 0, num_frames - 1))
        j = jnp.max(jnp.where(ok, js, 1))
        return jnp.clip(c + direction * j, 0, jnp.maximum(last, 0))

    def body(carry, _):
        c, phase = carry  # phase 0: forward, 1: backward, 2: done
        go_fwd = (phase == 0) & (c < last)
        back_from = jnp.where(phase == 0, onset, c)
        go_bwd = ~go_fwd & (phase <= 1) & (back_from > 0)
        frame = jnp.where(go_fwd, next_frame(c, 1),
                          jnp.where(go_bwd, next_frame(back_from, -1), 0))
        active = go_fwd | go_bwd
        restart = go_bwd & (phase == 0)
        phase = jnp.where(go_fwd, 0, jnp.where(go_bwd, 1, 2))
        return (jnp.where(active, frame, c), phase), (frame, active, restart)

    init = (onset, jnp.zeros((), jnp.int32))
    _, (frame, active, restart) = jax.lax.scan(body, init, None, length=max(num_frames - 1, 0))
    true = jnp.ones((1,), bool)
    return Schedule(
        frame=jnp.concatenate([onset[None], frame]).astype(jnp.int32),
        active=jnp.concatenate([true, active]),
        from_onset=jnp.concatenate([true, restart]),
        is_onset=jnp.arange(max(num_frames, 1)) == 0,
    )
