"""A batched Levenberg–Marquardt solver for the tracker's small problems (6–9 unknowns).

Each problem's objective is the tracker's scalar loss ``L`` plus a residual vector ``r`` whose
Gauss–Newton matrix ``H = 2 J_rᵀ J_r`` models ``L``'s curvature (:mod:`hoijax.losses._residuals`:
exact for the sums of squares, reweighted for the robust terms; a term without a residual form,
L_contact, contributes its gradient and leaves its curvature to the damping). One forward
linearization at a point gives everything an iteration needs: ``jax.linearize`` and one
tangent column per unknown (forward mode through the rasterizer) return ``L``, its exact
gradient and ``J_r`` together, with no reverse pass.

Iteration: solve ``(H + μ (diag H + ε)) δ = -∇L``, evaluate at ``x + δ``, accept when the gain
ratio ``ρ = (L(x) - L(x+δ)) / (-(∇Lᵀδ + ½ δᵀHδ))`` is positive, and update ``μ`` by Nielsen's
rule (``μ·max(1/3, 1-(2ρ-1)³)`` on acceptance, down to ``1e-6``; on rejection ``max(μ·ν, 1)``,
``ν·2``: with the Marquardt scaling ``μ = 1`` halves the step, so a rejection after a run of
accepted Gauss–Newton steps shrinks the step at once instead of after a dozen doublings). It
stops when a step's largest coordinate is below ``tol`` (metres or radians), when ``μ`` has
grown past any useful step, or after ``max_iters`` evaluations. Rotations are the stages'
tangent increments (``R_0·exp(ω)``), so the step is a retraction on SO(3). The first
evaluation is the loop's first iteration (a zero step), so the compiled program holds one
copy of the objective.

Why not optimistix: its least-squares solvers minimize ``½‖r‖²`` of one residual function,
while the tracker's objective has a term without a residual form and robust terms whose weights
are re-fixed at every point; the acceptance test here uses the true ``L``, so those
approximations change the steps but never the minimum. Under ``vmap`` the ``while_loop`` runs
until every problem has stopped and freezes the finished ones (its batching rule), so each
problem has its own damping, acceptance and stop inside one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, PyTree

from hoijax.tracking._optimize import MinimizeResult

ResidualLossFn = Callable[[PyTree], tuple]
"""``params -> (total, {term: value}, flag, residuals)``: the objective, its logged terms, the
rasterizer's overflow flag and the flat residual vector of its curvature model."""

_MAX_DAMPING = 1e12


def minimize_lm(
    fn: ResidualLossFn | None,
    params: PyTree,
    *,
    max_iters: int,
    tol: Float[Array, ""] | float = 2e-5,
    record_trace: bool = True,
    active: Bool[Array, ""] | bool = True,
    damping: float = 1e-3,
    ftol: float = 1e-4,
    levels: Float[Array, "K *row"] | None = None,
    level_iters: int = 10,
    curvature: Callable | None = None,
) -> MinimizeResult:
    """Minimize ``fn``'s total from ``params`` by Levenberg–Marquardt (module doc).

    ``max_iters`` (static) caps the evaluations after the first (accepted or not); ``tol``
    (traced) is the step size, in the parameters' units, below which it stops; ``ftol`` the
    relative decrease (predicted, or achieved by an accepted step) below which it stops: the
    tracker's losses are float32 and re-draw L_dino's points at every evaluation, so a
    minimum is flat to about that precision and further steps only trade noise. With ``active``
    False no step is taken. A non-finite loss, gradient or curvature at the start ends it with
    ``finite`` False; a non-finite trial point is rejected like a bad step. Returns the same
    :class:`MinimizeResult` as :func:`~hoijax.tracking.minimize` (``loss``/``terms`` at the
    returned parameters; ``converged``: stopped on ``tol``).

    ``levels`` (traced values, a static count K: shape ``(K,)`` or ``(K, ...)``, one row per
    level): a continuation. ``fn`` is then called as ``fn(params, levels[k])`` and minimized
    at ``levels[0]``, then ``levels[1]``, ..., each earlier level for at most ``level_iters``
    evaluations or until it stops; the last level is the problem itself (the tracker passes
    rows of a silhouette blur σ² and an L_mask weight factor: a sharp silhouette's
    Gauss–Newton model holds within about a pixel, so a large motion needs the smoother terms
    or a wide silhouette first). Moving to the next level costs one evaluation at the current
    point, which is always accepted, with the damping reset. One loop body serves every level
    (the level is part of the loop's state), so the objective is compiled once. The returned
    loss and terms are the last level's: ``max_iters`` must leave it evaluations.

    ``curvature``: for problems whose Jacobian has structure that one tangent column per
    unknown would waste (the hand fit's per-frame blocks), ``curvature(params[, level]) ->
    (loss, gradient, H, terms, flag)`` replaces the linearization of ``fn`` (then unused):
    the gradient and the Gauss–Newton matrix ``H`` in ``ravel_pytree(params)``'s layout
    (``fn`` may then be None). Held
    coordinates are rows and columns of ``H`` that are zero but for a unit diagonal, with a zero
    gradient: their step is zero."""
    if fn is None and curvature is None:
        raise ValueError("minimize_lm: give fn or curvature")
    x0, unravel = ravel_pytree(params)
    n = x0.size
    dtype = x0.dtype
    eye = jnp.eye(n, dtype=dtype)
    leveled = levels is not None

    if levels is None:
        levels = jnp.zeros((1,), dtype)
        call = lambda p, _: fn(p)  # noqa: E731
    else:
        levels = jnp.asarray(levels)
        call = fn
    last = levels.shape[0] - 1
    if last and last * (level_iters + 1) >= max_iters:
        raise ValueError(f"minimize_lm: max_iters={max_iters} leaves no evaluation for the last "
                         f"of {last + 1} levels at level_iters={level_iters}")

    # The first evaluation is the loop's first iteration (a zero step, always accepted, as at
    # a new level), so the program holds one copy of the objective, not two; its shapes come
    # from tracing the jitted evaluation, whose trace the loop body's call then finds in jit's
    # cache: the objective's Python (MANO, the rasterizer, the linearization) runs once.
    @jax.jit
    def evaluate(x, level):
        if curvature is not None:
            args = (unravel(x), levels[level]) if leveled else (unravel(x),)
            loss, dloss, H, terms, flag = curvature(*args)
            flag = jnp.asarray(flag, bool)
            ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(dloss)) & jnp.all(jnp.isfinite(H))
            return loss, dloss, H, terms, flag, ok

        def f(x):
            total, terms, flag, r = call(unravel(x), levels[level])
            return (total, r), (terms, jnp.asarray(flag, bool))

        (loss, r), lin, (terms, flag) = jax.linearize(f, x, has_aux=True)
        dloss, J = jax.vmap(lin, out_axes=(0, 1))(eye)  # (n,), (m, n)
        H = 2.0 * J.T @ J
        ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(dloss)) & jnp.all(jnp.isfinite(H))
        return loss, dloss, H, terms, flag, ok

    shapes = jax.eval_shape(evaluate, x0, jnp.zeros((), jnp.int32))
    loss0, g0, H0, terms0, flag0, _ = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    names = sorted(terms0)
    trace0 = jnp.zeros((max_iters if record_trace else 0, 1 + len(names)), loss0.dtype)
    tol = jnp.asarray(tol, dtype)
    active = jnp.asarray(active, bool)

    def row(loss, terms):
        return jnp.stack([loss, *(terms[k] for k in names)]).astype(loss0.dtype)

    def cond(c):  # i = -1: the first evaluation, made even when inactive (its loss and terms)
        return ((c["i"] < max_iters) & ~c["stop"] & active & c["finite"]) | (c["i"] < 0)

    def body(c):
        H, g, mu, advance = c["H"], c["g"], c["mu"], c["advance"]
        level = c["level"] + advance.astype(jnp.int32)
        diag = jnp.diagonal(H)
        damp = mu * (diag + 1e-6 * jnp.max(diag) + 1e-12)
        delta = jnp.linalg.solve(H + jnp.diag(damp), -g)
        # A new level re-evaluates the current point (the step is zero, and accepted).
        delta = jnp.where(jnp.all(jnp.isfinite(delta)) & ~advance, delta, 0.0)
        x_t = c["x"] + delta
        loss_t, g_t, H_t, terms_t, flag_t, ok_t = evaluate(x_t, level)
        predicted = -(g @ delta + 0.5 * delta @ H @ delta)
        gain = (c["loss"] - loss_t) / jnp.maximum(predicted, jnp.finfo(dtype).tiny)
        accept = advance | (ok_t & (loss_t < c["loss"]) & (gain > 0))
        mu_acc = jnp.maximum(mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3), 1e-6)
        mu_acc = jnp.where(advance, jnp.asarray(damping, dtype), mu_acc)
        pick = lambda a, b: jnp.where(accept, a, b)  # noqa: E731
        flat = ftol * jnp.abs(c["loss"])
        small = ~advance & ((jnp.max(jnp.abs(delta)) < tol) | (predicted < flat))
        done = small | (mu > _MAX_DAMPING)
        start = jnp.where(advance & (c["i"] >= 0), c["i"], c["level_start"])
        is_last = level == last
        out_of_level = c["i"] + 1 - start >= level_iters
        out = dict(
            i=c["i"] + 1, x=pick(x_t, c["x"]), loss=pick(loss_t, c["loss"]),
            g=pick(g_t, g), H=pick(H_t, H), mu=pick(mu_acc, jnp.maximum(mu * c["nu"], 1.0)),
            nu=pick(jnp.full_like(c["nu"], 2.0), 2.0 * c["nu"]),
            terms=jax.tree.map(pick, terms_t, c["terms"]),
            flagged=c["flagged"] | flag_t, finite=c["finite"] & (ok_t | ~advance),
            converged=small & is_last, stop=done & is_last, trace=c["trace"],
            level=level, level_start=start, advance=~is_last & (done | out_of_level))
        if record_trace:
            out["trace"] = c["trace"].at[jnp.where(c["i"] < 0, max_iters, c["i"])].set(
                row(out["loss"], out["terms"]), mode="drop")
        return out

    init = dict(i=jnp.full((), -1, jnp.int32), x=x0, loss=loss0, g=g0, H=H0,
                mu=jnp.asarray(damping, dtype), nu=jnp.asarray(2.0, dtype), terms=terms0,
                flagged=flag0, finite=jnp.ones((), bool), converged=jnp.zeros((), bool),
                stop=jnp.zeros((), bool), trace=trace0, level=jnp.full((), -1, jnp.int32),
                level_start=jnp.zeros((), jnp.int32), advance=jnp.ones((), bool))
    c = jax.lax.while_loop(cond, body, init)
    return MinimizeResult(
        params=unravel(c["x"]), num_iters=c["i"], converged=c["converged"], loss=c["loss"],
        terms=c["terms"], trace=c["trace"] if record_trace else None, finite=c["finite"],
        flagged=c["flagged"],
    )
