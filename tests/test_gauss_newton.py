"""``tracking.minimize_lm``: Levenberg–Marquardt on small problems with known minima, per-problem
stopping under ``vmap``, a term without a residual form, and the degenerate starts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax.tracking import minimize, minimize_lm


def _rosenbrock(p):
    x, y = p["a"][0], p["a"][1]
    r = jnp.stack([10.0 * (y - x**2), 1.0 - x])
    return jnp.sum(r**2), {"ls": jnp.sum(r**2)}, False, r


def test_rosenbrock_reaches_the_minimum_in_few_evaluations():
    res = jax.jit(lambda p: minimize_lm(_rosenbrock, p, max_iters=100, tol=1e-7, ftol=0.0))(
        {"a": jnp.array([-1.2, 1.0])})
    np.testing.assert_allclose(np.asarray(res.params["a"]), [1.0, 1.0], atol=1e-4)
    assert bool(res.converged) and bool(res.finite) and int(res.num_iters) < 60
    # The same problem by Adam (the tracker's other solver) is far from done in that many steps.
    adam = minimize(lambda p: _rosenbrock(p)[:2], {"a": jnp.array([-1.2, 1.0])},
                    {"a": jnp.asarray(1e-2)}, max_iters=int(res.num_iters))
    assert float(adam.loss) > 100 * float(res.loss) + 1e-3
    # The trace holds the accepted loss per evaluation: non-increasing.
    tr = np.asarray(res.trace[: int(res.num_iters), 0])
    assert np.all(np.diff(tr) <= 1e-6)


def test_a_term_without_residuals_still_sets_the_minimum():
    """(x-1)² + ½|x - 0.5|: the L1 term has no residual form (gradient only), and the minimum
    moves from 1 to 0.75, where 2(x-1) + ½ = 0."""

    def fn(p):
        x = p[0]
        total = (x - 1.0) ** 2 + 0.5 * jnp.abs(x - 0.5)
        return total, {}, False, jnp.stack([x - 1.0])

    res = minimize_lm(fn, jnp.array([3.0]), max_iters=50, tol=1e-6, ftol=0.0)
    np.testing.assert_allclose(float(res.params[0]), 0.75, atol=1e-4)


def test_vmap_stops_each_problem_on_its_own():
    starts = jnp.array([[-1.2, 1.0], [0.9, 0.8], [1.0, 1.0]])

    def one(a):
        return minimize_lm(_rosenbrock, {"a": a}, max_iters=100, tol=1e-7, ftol=0.0)

    batch = jax.jit(jax.vmap(one))(starts)
    iters = np.asarray(batch.num_iters)
    assert len(set(iters.tolist())) == 3, iters  # each stopped on its own criterion
    for i in range(3):
        alone = jax.jit(one)(starts[i])
        assert int(alone.num_iters) == int(iters[i])
        np.testing.assert_allclose(np.asarray(batch.params["a"][i]), np.asarray(alone.params["a"]),
                                   atol=1e-5)


def test_inactive_and_non_finite_starts_take_no_step():
    p0 = {"a": jnp.array([-1.2, 1.0])}
    res = minimize_lm(_rosenbrock, p0, max_iters=10, active=False)
    assert int(res.num_iters) == 0
    np.testing.assert_array_equal(np.asarray(res.params["a"]), np.asarray(p0["a"]))

    def nan_fn(p):
        total, terms, flag, r = _rosenbrock(p)
        return total * jnp.nan, terms, flag, r

    res = minimize_lm(nan_fn, p0, max_iters=10)
    assert not bool(res.finite) and int(res.num_iters) == 0
    # Inactive, the loss and terms are still those of the start (its first evaluation).
    res = minimize_lm(_rosenbrock, p0, max_iters=10, active=False)
    np.testing.assert_allclose(float(res.loss), float(_rosenbrock(p0)[0]), rtol=1e-6)
    np.testing.assert_allclose(float(res.terms["ls"]), float(_rosenbrock(p0)[0]), rtol=1e-6)


def test_the_objective_is_traced_once_and_compiled_once():
    """The first evaluation is the loop's first iteration, and the loop body finds the traced
    evaluation in jit's cache: the objective's Python runs once under jit and vmap, and the
    program holds one while loop with one copy of it (the compile time of the tracker's
    stages follows the copies of the rasterizer)."""
    calls = []

    def fn(p, level):
        calls.append(1)
        return _rosenbrock(p)

    def solve(p):
        return minimize_lm(fn, p, max_iters=60, levels=jnp.array([1.0, 0.0]), level_iters=5)

    run = jax.jit(jax.vmap(solve))
    p0 = {"a": jnp.array([[-1.2, 1.0], [0.5, 0.5]])}
    res = run(p0)
    assert len(calls) == 1
    np.testing.assert_allclose(np.asarray(res.params["a"]), 1.0, atol=1e-3)
    text = str(jax.make_jaxpr(jax.vmap(solve))(p0))
    # one loop, and one call site of the (jitted) evaluation, inside it
    assert text.count("while[") == 1 and text.count("name=evaluate") == 1


def test_a_non_finite_trial_is_rejected_and_the_flag_is_kept():
    """A loss that is NaN beyond x = 2 (e.g. an object behind the camera): the first full step
    from x = 0 towards the minimum at 3 overshoots into it, is rejected, and the damped steps stop
    finite at the boundary region's edge. The overflow-like flag of any evaluation is kept."""

    def fn(x):
        total = jnp.where(x[0] < 2.0, (x[0] - 3.0) ** 2, jnp.nan)
        return total, {}, x[0] > 1.5, jnp.stack([x[0] - 3.0])

    res = minimize_lm(fn, jnp.array([0.0]), max_iters=40, ftol=0.0)
    assert bool(res.finite) and np.isfinite(float(res.loss))
    assert 1.9 < float(res.params[0]) < 2.0
    assert bool(res.flagged)


def _edge(x, s):
    """A 1-D silhouette as the rasterizer draws one: pixels u (spacing 2) are covered with
    probability ``sigmoid(-d|d|/s)`` (d = u - x, signed), exactly 0 beyond the cutoff
    ``d|d| > 9.2 s``, and the observed edge lies between 4 and 6. With the sharp ``s`` a
    start at 1 has no pixel within reach of its edge: the gradient is exactly zero there (the
    tracker's sharp silhouette far from the observed one)."""
    u = jnp.arange(-10.0, 12.0, 2.0)
    d = u - x[0]
    z = d * jnp.abs(d)
    r = jnp.where(z <= 9.2 * s, jax.nn.sigmoid(-z / s), 0.0) - (u < 5.0)
    return jnp.sum(r**2), {"mask": jnp.sum(r**2)}, False, r


def test_levels_reach_a_minimum_the_sharp_problem_cannot_see():
    sharp = 0.05
    alone = minimize_lm(lambda x: _edge(x, sharp), jnp.array([1.0]), max_iters=40)
    res = minimize_lm(_edge, jnp.array([1.0]), max_iters=40, levels=jnp.array([4.0, 1.0, sharp]),
                      level_iters=10)
    assert float(alone.params[0]) < 2.0, float(alone.params[0])
    assert 4.0 < float(res.params[0]) < 6.0, float(res.params[0])
    # The returned loss and terms are the last level's, at the returned point.
    np.testing.assert_allclose(float(res.loss), float(_edge(res.params, sharp)[0]), rtol=1e-6)
    np.testing.assert_allclose(float(res.terms["mask"]), float(res.loss), rtol=1e-6)
    assert bool(res.finite) and int(res.num_iters) <= 40
    # One level is the problem itself: the same steps as without levels.
    one = minimize_lm(_edge, jnp.array([1.0]), max_iters=40, levels=jnp.array([sharp]))
    np.testing.assert_array_equal(np.asarray(one.params), np.asarray(alone.params))
    assert int(one.num_iters) == int(alone.num_iters)


def test_levels_under_vmap_and_a_cap_that_starves_the_last_level():
    starts = jnp.array([[1.0], [3.0], [8.0]])
    batch = jax.jit(jax.vmap(lambda x: minimize_lm(
        _edge, x, max_iters=40, levels=jnp.array([4.0, 0.05]), level_iters=10)))(starts)
    for i in range(3):
        alone = minimize_lm(_edge, starts[i], max_iters=40, levels=jnp.array([4.0, 0.05]),
                            level_iters=10)
        np.testing.assert_allclose(np.asarray(batch.params[i]), np.asarray(alone.params),
                                   atol=1e-5)
        assert int(batch.num_iters[i]) == int(alone.num_iters)
    with pytest.raises(ValueError, match="max_iters=20"):
        minimize_lm(_edge, starts[0], max_iters=20, levels=jnp.array([8.0, 2.0, 0.05]),
                    level_iters=10)
