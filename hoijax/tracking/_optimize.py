"""Adam with per-parameter-group learning rates and AGILE's moving-average early stop.

One optimization problem (one frame of one sequence) is a ``lax.while_loop``. Under ``vmap`` the
loop runs while *any* problem of the batch is still going and freezes the finished ones with a
select (``lax.while_loop``'s batching rule), so each sequence stops on its own criterion inside one
compiled program: no Python control flow touches a traced value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, Int, PyTree

LossFn = Callable[[PyTree], tuple]
"""``params -> (total, {term: value})`` or ``params -> (total, {term: value}, flag)``: the
objective of one problem, its logged terms and optionally a boolean flag of the evaluation
(the tracker's: the rasterizer's pair list overflowed), which :func:`minimize` ORs over every
evaluation into :attr:`MinimizeResult.flagged`."""


class MinimizeResult(eqx.Module):
    """Outcome of :func:`minimize` for one problem."""

    params: PyTree
    """Parameters after the last step taken."""
    num_iters: Int[Array, ""]
    """Steps taken (≤ ``max_iters``)."""
    converged: Bool[Array, ""]
    """The moving average of parameter variations fell below ``tol``."""
    loss: Float[Array, ""]
    """Objective at the last evaluation (at the parameters before the last step); 0 when no
    step was taken (``active`` False or ``max_iters`` 0)."""
    terms: dict[str, Float[Array, ""]]
    """Logged terms at that evaluation (0 when no step was taken)."""
    trace: Float[Array, "max_iters T"] | None
    """Per-iteration ``[total, *terms]`` (zeros after the stop), or None when not recorded."""
    finite: Bool[Array, ""]
    """Every evaluated loss and gradient was finite (a non-finite step is never applied)."""
    flagged: Bool[Array, ""]
    """Some evaluation raised the loss's flag (False for a loss without one)."""


def _max_abs(tree: PyTree) -> Float[Array, ""]:
    leaves = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree) if jnp.size(x)]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros(())


def minimize(
    loss_fn: LossFn,
    params: PyTree,
    learning_rates: PyTree,
    *,
    max_iters: int,
    tol: Float[Array, ""] | float = 1e-4,
    window: int = 10,
    record_trace: bool = True,
    active: Bool[Array, ""] | bool = True,
    b1: float = 0.9,
    b2: float = 0.999,
) -> MinimizeResult:
    """Minimize ``loss_fn`` from ``params`` with Adam, stopping early (AGILE supp. §6).

    Each parameter leaf has its own learning rate (``learning_rates`` has the structure of
    ``params`` with scalar leaves, traced): AGILE's separate Adam optimizers for rotation and
    translation are one Adam with per-group step sizes, since Adam's moments are per coordinate.

    Convergence: the parameter variation of a step is its largest absolute coordinate change; the
    loop stops once the mean variation over the last ``window`` steps is below ``tol`` (traced),
    or after ``max_iters`` (static) steps. With ``active`` False (traced) no step is taken
    (``num_iters`` 0; a padded frame of a batched scan). A step whose loss or gradient is
    non-finite is skipped and ends the loop, with ``finite`` False in the result.
    """
    return minimize_stages(loss_fn, params, [(learning_rates, max_iters)], tol=tol,
                           window=window, record_trace=record_trace, active=active, b1=b1, b2=b2)


def minimize_stages(
    loss_fn: LossFn,
    params: PyTree,
    stages: Sequence[tuple[PyTree, int]],
    *,
    tol: Float[Array, ""] | float = 1e-4,
    window: int = 10,
    record_trace: bool = True,
    active: Bool[Array, ""] | bool = True,
    b1: float = 0.9,
    b2: float = 0.999,
) -> MinimizeResult:
    """:func:`minimize` run as consecutive stages of one objective, each with its own step
    sizes and cap: ``stages`` is ``[(learning_rates, max_iters), ...]`` (rates traced, caps
    static; a zero rate holds a group). Each stage starts a fresh Adam (moments and early-stop
    window reset) where the previous one stopped, by its cap or by convergence, exactly as
    successive :func:`minimize` calls would; a non-finite step ends them all.

    Unlike successive calls, the stages are one ``lax.while_loop`` whose body holds the only
    copy of the objective: the stage is part of the loop state and the rates are indexed by
    it, so a four-stage fit compiles its objective once instead of four times.
    ``num_iters`` counts every stage's steps, ``converged`` is the last stage's, and the trace
    has ``sum(caps)`` rows in stage order (steps of stages that stopped early are not padded).
    """
    stages = [(rates, int(cap)) for rates, cap in stages if int(cap) > 0]
    adam = optax.scale_by_adam(b1=b1, b2=b2)
    opt_state0 = adam.init(params)
    loss_fn = _with_flag(loss_fn)
    # Only the shapes of the first evaluation: evaluating it here would compile the whole
    # objective (the rasterizer and all) a second time outside the loop, for a value the
    # first step computes anyway (measured: a quarter of the tracker's HLO instructions, though
    # only 4 % of its compile time; experiments/bench_compile.py). The shapes come from
    # tracing the loop body's own jitted value-and-gradient, which the body's call then finds
    # in jit's trace cache: the objective's Python runs once, not twice.
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss0, (terms0, flag0)), _ = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                               jax.eval_shape(value_and_grad, params))
    names = sorted(terms0)
    dtype = jnp.result_type(loss0)
    total = sum(cap for _, cap in stages)
    trace0 = jnp.zeros((total if record_trace else 0, 1 + len(names)), dtype)
    ring0 = jnp.full((window,), jnp.inf, dtype)
    tol = jnp.asarray(tol, dtype)
    active = jnp.asarray(active, bool)
    num_stages = len(stages)
    if not stages:  # nothing to run (every cap 0)
        return MinimizeResult(params=params, num_iters=jnp.zeros((), jnp.int32),
                              converged=jnp.zeros((), bool), loss=loss0, terms=terms0,
                              trace=trace0 if record_trace else None,
                              finite=jnp.ones((), bool), flagged=jnp.asarray(flag0, bool))
    # Per-stage step sizes stacked along a leading axis, indexed by the stage in the loop.
    rates = jax.tree.map(lambda *r: jnp.stack([jnp.asarray(x, dtype) for x in r]),
                         *(r for r, _ in stages))
    caps = jnp.asarray([cap for _, cap in stages], jnp.int32)

    def cond(carry):
        _, _, s, _, _, _, _, _, _, _, finite, _ = carry
        return (s < num_stages) & finite & active

    def body(carry):
        i, j, s, _, p, state, ring, trace, _, _, _, flagged = carry
        (loss, (terms, flag)), grads = value_and_grad(p)
        ok = jnp.isfinite(loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        grads = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grads)
        updates, new_state = adam.update(grads, state, p)
        lrs = jax.tree.map(lambda r: r[s], rates)
        updates = jax.tree.map(lambda u, lr: -lr * u, updates, lrs)
        new_p = jax.tree.map(lambda x, u: jnp.where(ok, x + u, x), p, updates)
        new_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        ring = ring.at[j % window].set(_max_abs(updates))
        row = jnp.stack([loss, *(terms[k] for k in names)]).astype(dtype)
        if record_trace:
            trace = trace.at[i].set(jnp.where(ok, row, 0.0))
        converged = jnp.mean(ring) < tol
        # The stage ends by its cap or by convergence; the next starts a fresh Adam.
        advance = (j + 1 >= caps[s]) | converged
        new_state = jax.tree.map(lambda a, b: jnp.where(advance, a, b), opt_state0, new_state)
        ring = jnp.where(advance, ring0, ring)
        return (i + 1, jnp.where(advance, 0, j + 1), s + advance.astype(s.dtype), converged,
                new_p, new_state, ring, trace, loss, terms, ok, flagged | flag)

    zero = jnp.zeros((), jnp.int32)
    init = (zero, zero, zero, jnp.zeros((), bool), params, opt_state0, ring0, trace0, loss0,
            terms0, jnp.ones((), bool), jnp.asarray(flag0, bool))
    i, _, _, converged, p, _, _, trace, loss, terms, finite, flagged = jax.lax.while_loop(
        cond, body, init)
    return MinimizeResult(
        params=p, num_iters=i, converged=converged, loss=loss, terms=terms,
        trace=trace if record_trace else None, finite=finite, flagged=flagged,
    )


def _with_flag(loss_fn: LossFn) -> Callable:
    """``params -> (total, (terms, flag))`` whether or not ``loss_fn`` returns a flag."""

    def wrapped(params):
        out = loss_fn(params)
        flag = out[2] if len(out) == 3 else False
        return out[0], (out[1], jnp.asarray(flag, bool))

    return wrapped
