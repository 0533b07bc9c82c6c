"""EgoHandICL network: what is masked in training and at inference, what the output may depend
on (query ground truth, template, absent hands), token shapes with one and two hands, image
tokens from hoijax's DINO ViT, bf16 compute."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hoijax import features, icl

P, C, D = 6, 5, 16
CFG2 = icl.IclConfig(d_model=16, num_heads=2, num_layers=1, text_slots=2)
CFG1 = icl.IclConfig(sides=("right",), d_model=16, num_heads=2, num_layers=1, text_slots=1)


def _example(cfg, seed=0, presence=None):
    rng = np.random.default_rng(seed)
    h = cfg.num_hands
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    pres = jnp.ones(h, bool) if presence is None else jnp.asarray(presence)
    return icl.IclExample(query_features=f(P, C), query_text=f(D), query_coarse=f(h, 61) * 0.3,
                          query_presence=pres, query_gt=f(h, 61) * 0.3,
                          template_features=f(P, C), template_text=f(D),
                          template_coarse=f(h, 61) * 0.3, template_presence=jnp.ones(h, bool),
                          template_gt=f(h, 61) * 0.3)


@functools.lru_cache(maxsize=4)
def _params(cfg):
    """Random parameters with a non-zero decoder (the initial decoder is zero: output = coarse)."""
    p = icl.init_icl_params(cfg, P, C, D, jax.random.key(1))
    k = jax.random.normal(jax.random.key(2), p["decoder"]["kernel"].shape) * 0.5
    return {**p, "decoder": {**p["decoder"], "kernel": k}}


def _replace(ex, **kw):
    return icl.IclExample(**{**{f: getattr(ex, f) for f in ex.__dataclass_fields__}, **kw})


def test_training_masks_hide_an_exact_fraction_independently():
    t = 10
    tpl, qry = icl.sample_target_masks(jax.random.key(0), t, 0.7)
    assert tpl.shape == qry.shape == (t,) and tpl.dtype == bool
    assert int(tpl.sum()) == 7 and int(qry.sum()) == 7
    draws = jax.vmap(lambda k: icl.sample_target_masks(k, t, 0.7))(
        jax.random.split(jax.random.key(1), 200))
    assert not np.all(np.asarray(draws[0]) == np.asarray(draws[1]))  # independent per role
    freq = np.asarray(draws[1]).mean(0)  # every token gets masked sometimes, ~70%
    assert np.all(np.abs(freq - 0.7) < 0.15)
    none, _ = icl.sample_target_masks(jax.random.key(2), t, 0.0)
    full, _ = icl.sample_target_masks(jax.random.key(2), t, 1.0)
    assert not np.any(none) and np.all(full)
    tpl_inf, qry_inf = icl.inference_masks(t)
    assert not np.any(tpl_inf) and np.all(qry_inf)


def test_untrained_model_returns_the_coarse_input():
    ex = _example(CFG2)
    p = icl.init_icl_params(CFG2, P, C, D)
    np.testing.assert_array_equal(icl.refine(p, CFG2, ex), ex.query_coarse)


def test_inference_ignores_query_gt_and_training_masks_decide_what_leaks():
    cfg, p = CFG2, _params(CFG2)
    ex = _example(cfg)
    other_gt = ex.query_gt + 1.0
    out = icl.refine(p, cfg, ex)
    assert not np.allclose(out, ex.query_coarse)  # the decoder does something
    np.testing.assert_allclose(icl.refine(p, cfg, _replace(ex, query_gt=other_gt)), out,
                               atol=1e-6)
    n = cfg.num_target_tokens
    none = jnp.zeros(n, bool)
    visible = icl.apply_icl(p, cfg, ex, none, none)
    visible2 = icl.apply_icl(p, cfg, _replace(ex, query_gt=other_gt), none, none)
    assert np.abs(np.asarray(visible - visible2)).max() > 1e-3  # unmasked targets are read
    # Template target: read when visible, ignored when fully masked.
    tpl_gt2 = ex.template_gt + 1.0
    assert np.abs(np.asarray(out - icl.refine(p, cfg, _replace(ex, template_gt=tpl_gt2)))
                  ).max() > 1e-3
    all_m = jnp.ones(n, bool)
    a = icl.apply_icl(p, cfg, ex, all_m, all_m)
    b = icl.apply_icl(p, cfg, _replace(ex, template_gt=tpl_gt2), all_m, all_m)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # Only masked tokens are replaced: unmasking one query target token changes the output.
    one_visible = all_m.at[0].set(False)
    c = icl.apply_icl(p, cfg, ex, all_m, one_visible)
    assert np.abs(np.asarray(c - a)).max() > 1e-4


def test_no_template_mode_ignores_every_template_input():
    cfg, p = CFG2, _params(CFG2)
    ex = _example(cfg)
    ex2 = _replace(ex, template_features=ex.template_features * -2, template_text=ex.query_text,
                   template_coarse=ex.template_coarse + 1, template_gt=ex.template_gt - 1)
    a = icl.refine(p, cfg, ex, use_template=False)
    np.testing.assert_allclose(icl.refine(p, cfg, ex2, use_template=False), a, atol=1e-6)
    assert np.abs(np.asarray(icl.refine(p, cfg, ex2) - icl.refine(p, cfg, ex))).max() > 1e-3


def test_absent_hand_does_not_influence_the_present_one():
    cfg, p = CFG2, _params(CFG2)
    ex = _example(cfg, presence=[True, False])
    junk = ex.query_coarse.at[1].set(5.0)
    a = icl.refine(p, cfg, ex)
    b = icl.refine(p, cfg, _replace(ex, query_coarse=junk))
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


@pytest.mark.parametrize("cfg", [CFG1, CFG2], ids=["one_hand", "two_hands"])
def test_token_and_output_shapes(cfg):
    p = _params(cfg)
    ex = _example(cfg)
    tokens = icl.tokenize(p, cfg, ex)
    hk = cfg.num_hands * cfg.tokens_per_hand
    for t in tokens[:4]:
        assert t.shape == (hk, cfg.d_model)
    assert tokens.query_valid.shape == (hk,)
    # Input and target tokens differ (different MANO), template and query differ.
    assert not np.allclose(tokens.query_input, tokens.query_target)
    assert not np.allclose(tokens.template_input, tokens.query_input)
    batch = jax.tree.map(lambda x: jnp.stack([x, x, x]), ex)
    out = jax.jit(jax.vmap(lambda e: icl.refine(p, cfg, e)))(batch)
    assert out.shape == (3, cfg.num_hands, 61) and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="query_coarse"):
        icl.refine(p, cfg, _example(CFG2 if cfg is CFG1 else CFG1))


def test_image_tokens_from_the_dino_vit():
    vit_cfg = features.vit_preset("dinov2_vits14").replace(num_layers=1, hidden_size=24,
                                                           num_heads=2, mlp_hidden_size=32)
    vit_params = features.init_vit_params(vit_cfg)
    image = np.random.default_rng(0).uniform(size=(28, 42, 3)).astype(np.float32)
    tokens = icl.vit_image_tokens(vit_params, vit_cfg, image)
    assert tokens.shape == (2 * 3, 24)
    cfg = CFG1
    p = icl.init_icl_params(cfg, 6, 24, D)
    ex = _replace(_example(cfg), query_features=tokens, template_features=tokens)
    assert icl.refine(p, cfg, ex).shape == (1, 61)


def test_bf16_compute_stays_close_to_float32():
    cfg16 = icl.IclConfig(**{**CFG2.to_dict(), "sides": CFG2.sides, "dtype": "bfloat16"})
    p = _params(CFG2)
    ex = _example(CFG2)
    a = icl.refine(p, CFG2, ex)
    b = icl.refine(p, cfg16, ex)
    assert b.dtype == jnp.float32
    delta_a, delta_b = np.asarray(a - ex.query_coarse), np.asarray(b - ex.query_coarse)
    assert np.abs(delta_b - delta_a).max() < 0.05 * np.abs(delta_a).max()
    with pytest.raises(ValueError, match="dtype"):
        icl.IclConfig(dtype="int8")


def test_target_difference_tokens_read_target_minus_input_per_group():
    """With ``target_difference`` a target token also encodes its own group's target − input:
    changing the template's coarse index-finger entries changes that group's template-target
    token only; the paper's tokens do not depend on the coarse input at all."""
    cfg = icl.IclConfig(**{**CFG2.to_dict(), "sides": CFG2.sides, "target_difference": True})
    p = icl.init_icl_params(cfg, P, C, D, jax.random.key(3))
    assert "difference_encoder" in p["tokenizer"]
    ex = _example(cfg)
    index_ids = list(dict(icl.PARAM_GROUPS)["index"])
    ex2 = _replace(ex, template_coarse=ex.template_coarse.at[0, index_ids].add(0.3))
    t1, t2 = icl.tokenize(p, cfg, ex), icl.tokenize(p, cfg, ex2)
    changed = np.abs(np.asarray(t1.template_target - t2.template_target)).max(-1) > 1e-6
    k_index = [name for name, _ in icl.PARAM_GROUPS].index("index")
    assert changed.tolist() == [i == k_index for i in range(cfg.num_target_tokens)]
    np.testing.assert_allclose(t1.query_target, t2.query_target, atol=1e-6)
    plain = icl.init_icl_params(CFG2, P, C, D, jax.random.key(3))
    np.testing.assert_allclose(icl.tokenize(plain, CFG2, ex).template_target,
                               icl.tokenize(plain, CFG2, ex2).template_target, atol=1e-6)
    # Inference still never reads the query's ground truth (its target is fully masked).
    p = {**p, "decoder": _params(CFG2)["decoder"]}
    out = icl.refine(p, cfg, ex)
    np.testing.assert_allclose(icl.refine(p, cfg, _replace(ex, query_gt=ex.query_gt + 1.0)), out,
                               atol=1e-6)
    assert icl.IclConfig.from_dict(cfg.to_dict()) == cfg


def test_template_relevance_reads_query_similarity_into_the_template_tokens_only():
    """``template_relevance``: the cosine similarities of template and query (text, mean image
    feature) are 1 for identical inputs, unchanged by rescaling, 0 with finite gradients for a
    zero vector; with the option on, the query's text moves the template's tokens by exactly the
    relevance encoder's response to the similarity's change, and without it not at all."""
    cfg = icl.IclConfig(**{**CFG2.to_dict(), "sides": CFG2.sides, "template_relevance": True})
    ex = _example(cfg)
    same = _replace(ex, query_text=3.0 * ex.template_text,
                    query_features=0.5 * ex.template_features)
    np.testing.assert_allclose(icl.template_relevance(same), [1.0, 1.0], atol=1e-6)
    r = np.asarray(icl.template_relevance(ex))
    assert np.all(np.abs(r) < 1.0)
    np.testing.assert_allclose(icl.template_relevance(_replace(ex, query_text=7.0 * ex.query_text)),
                               r, atol=1e-6)
    zero = _replace(ex, query_text=jnp.zeros_like(ex.query_text))
    assert float(icl.template_relevance(zero)[0]) == 0.0
    g = jax.grad(lambda t: icl.template_relevance(_replace(zero, template_text=t)).sum())(
        ex.template_text)
    assert np.all(np.isfinite(np.asarray(g)))

    p = icl.init_icl_params(cfg, P, C, D, jax.random.key(3))
    assert p["tokenizer"]["relevance_encoder"]["kernel"].shape == (2, cfg.d_model)
    other = _replace(ex, query_text=ex.template_text)  # relevance of the text: r → 1
    t1, t2 = icl.tokenize(p, cfg, ex), icl.tokenize(p, cfg, other)
    # The template's tokens see the query only through the two similarities: their change is
    # the relevance encoder applied to the change of the text similarity.
    w = np.asarray(p["tokenizer"]["relevance_encoder"]["kernel"])[0]
    expected = (1.0 - r[0]) * w
    np.testing.assert_allclose(np.asarray(t2.template_input - t1.template_input),
                               np.broadcast_to(expected, t1.template_input.shape), atol=1e-5)
    np.testing.assert_allclose(np.asarray(t2.template_target - t1.template_target),
                               np.broadcast_to(expected, t1.template_target.shape), atol=1e-5)
    # Without the option the template's tokens do not depend on the query at all.
    plain = icl.init_icl_params(CFG2, P, C, D, jax.random.key(3))
    np.testing.assert_allclose(icl.tokenize(plain, CFG2, ex).template_input,
                               icl.tokenize(plain, CFG2, other).template_input, atol=1e-6)
    assert icl.IclConfig.from_dict(cfg.to_dict()) == cfg


def test_template_gate_mixes_the_passes_with_and_without_the_template_per_group():
    """``template_gate``: the refined query is ``coarse + Δ₀ + g · (Δ_t − Δ₀)``, Δ_t and Δ₀ the
    shared transformer's residuals with and without the template. With the gate shut (g → 0)
    the template changes nothing; wide open (g → 1) the output is the same parameters' ungated
    model; a gate open on one parameter group only moves that group's entries; without the
    template the gate changes nothing; the gate's gradient is finite."""
    base = {**CFG2.to_dict(), "sides": CFG2.sides, "template_relevance": True}
    cfg, plain = icl.IclConfig(**{**base, "template_gate": "relevance"}), icl.IclConfig(**base)
    p = _params(cfg)
    ex = _example(cfg)
    other = _replace(ex, template_gt=ex.template_gt - 1.0, template_coarse=ex.template_coarse + 1)
    k = cfg.tokens_per_hand

    def with_gate(bias):
        return {**p, "gate_out": {"kernel": jnp.zeros_like(p["gate_out"]["kernel"]),
                                  "bias": jnp.asarray(bias, jnp.float32)}}

    shut, wide = with_gate(np.full(k, -60.0)), with_gate(np.full(k, 60.0))
    free = icl.refine(shut, cfg, ex, use_template=False)
    np.testing.assert_allclose(icl.refine(shut, cfg, ex), free, atol=1e-6)
    np.testing.assert_allclose(icl.refine(shut, cfg, other), free, atol=1e-6)
    ungated = {n: v for n, v in p.items() if not n.startswith("gate_")}
    full = icl.refine(ungated, plain, ex)
    np.testing.assert_allclose(icl.refine(wide, cfg, ex), full, atol=1e-6)
    assert np.abs(np.asarray(full - free)).max() > 1e-3  # the template matters to the model
    # Open on group 0 only: its entries take the template pass, every other entry the free one.
    one = np.full(k, -60.0)
    one[0] = 60.0
    mixed = np.asarray(icl.refine(with_gate(one), cfg, ex))
    g0 = icl.group_masks()[0] > 0
    np.testing.assert_allclose(mixed[:, g0], np.asarray(full)[:, g0], atol=1e-6)
    np.testing.assert_allclose(mixed[:, ~g0], np.asarray(free)[:, ~g0], atol=1e-6)
    # Half open: half way between the passes.
    half = icl.refine(with_gate(np.zeros(k)), cfg, ex)
    np.testing.assert_allclose(half, (np.asarray(full) + np.asarray(free)) / 2, atol=1e-5)
    np.testing.assert_allclose(icl.refine(p, cfg, other, use_template=False), free, atol=1e-6)
    g = jax.grad(lambda q: jnp.sum(icl.refine(q, cfg, ex) ** 2))(p)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))
    assert np.abs(np.asarray(g["gate_out"]["bias"])).max() > 0
    assert icl.IclConfig.from_dict(cfg.to_dict()) == cfg
    # A run written when the option was a bool reads as the relevance gate.
    assert icl.IclConfig.from_dict({**cfg.to_dict(), "template_gate": True}) == cfg
    with pytest.raises(ValueError, match="template_gate"):
        icl.IclConfig(**{**base, "template_gate": "on"})


def test_token_gate_is_per_hand_and_group_and_reads_the_template_pass():
    """``template_gate="tokens"``: the same mixture, with a gate per hand and group from the
    query-target tokens of the pass with the template (and the relevance numbers). Its group
    bias opens one group; its gradient reaches the token head."""
    base = {**CFG2.to_dict(), "sides": CFG2.sides, "template_relevance": True}
    cfg, plain = icl.IclConfig(**{**base, "template_gate": "tokens"}), icl.IclConfig(**base)
    p = _params(cfg)
    ex = _example(cfg)
    k = cfg.tokens_per_hand
    zero = {"kernel": jnp.zeros_like(p["gate_token"]["kernel"]),
            "bias": jnp.zeros_like(p["gate_token"]["bias"])}
    one = np.full(k, -60.0)
    one[2] = 60.0
    q = {**p, "gate_token": zero, "gate_bias": jnp.asarray(one, jnp.float32)}
    mixed = np.asarray(icl.refine(q, cfg, ex))
    free = np.asarray(icl.refine(p, cfg, ex, use_template=False))
    ungated = {n: v for n, v in p.items() if not n.startswith("gate_")}
    full = np.asarray(icl.refine(ungated, plain, ex))
    assert np.abs(full - free).max() > 1e-3
    g2 = icl.group_masks()[2] > 0
    np.testing.assert_allclose(mixed[:, g2], full[:, g2], atol=1e-6)
    np.testing.assert_allclose(mixed[:, ~g2], free[:, ~g2], atol=1e-6)
    g = jax.grad(lambda r: jnp.sum(icl.refine(r, cfg, ex) ** 2))(p)
    assert np.abs(np.asarray(g["gate_token"]["kernel"])).max() > 0
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))
