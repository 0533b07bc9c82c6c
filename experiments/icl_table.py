"""EgoHandICL on held-out synthetic scenes: does the retrieved template do the work?

Trains small EgoHandICL models on the CPU on synthetic two-hand data
(``hoijax.icl.make_synthetic_icl``: scenes with systematic, per-scene detector errors that only a
template from the same scene reveals), then evaluates each on the frames of held-out scenes,
every query retrieving one template (same hand type, nearest description) from a database of all
frames, itself excluded. Per trained model, three inputs:

- ``retrieved``: the model with its retrieved template;
- ``removed``: the same model with the template tokens removed from attention;
- ``random``: the same model with a template of the same hand type drawn at random from another
  scene.

Runs (``--runs``; each trains one model). The paper's recipe: MAE mask ratio 0.7 on the
template's and the query's target tokens in training, the query target fully masked at
inference, ``L_mano`` the sum of squared parameter errors, λm = 0.05, λv = 5, λ3D = 0.01.

- ``default`` (``hoijax icl-train``'s before the relevance encoding; the base of the other rows):
  the paper's recipe with two named additions,
  ``IclConfig(target_difference=True)`` (every target token also encodes its group's
  target − input) and ``TrainConfig(inference_episodes=0.5)`` (half of the training examples
  are drawn as inference presents them: template target whole, query target fully masked; the
  other half MAE-masked at 0.7);
- ``paper``: the paper's recipe exactly;
- ``no_inference_episodes`` / ``paper_tokens``: ``default`` without one of its additions;
- ``mask0.5`` / ``mask0.9``: ``default`` with MAE ratio 0.5 / 0.9;
- ``distractors0.2`` / ``distractors0.4``: ``default`` with 20 / 40 % of the training templates
  replaced by a random frame of the query's hand type (``TrainConfig.distractor_templates``);
- ``dropout0.2``: ``default`` with the template removed from 20 % of the training examples;
- ``relevance``: ``default`` with ``IclConfig(template_relevance=True)`` (every template token
  also encodes the text and image-feature cosine similarities of template and query, so the
  model can judge how far to trust the template); ``relevance_distractors0.05`` / ``0.1`` /
  ``0.2`` / ``0.4``: the same trained with 5 / 10 / 20 / 40 % random templates, which teach it
  what an unrelated template looks like. ``relevance`` is ``hoijax icl-train``'s default and the
  headline table's row (``RECOMMENDED``);
- ``template_visible``: the target − input encoding with the template's target tokens never
  masked in training (``TrainConfig.template_mask_ratio = 0``; the query's at 0.7);
- ``relevance_gate_distractors0.1`` / ``0.2``: ``relevance_distractors0.1`` / ``0.2`` with
  ``IclConfig(template_gate="relevance")`` (the transformer runs with and without the
  template, and a gate on the relevance numbers decides, per parameter group, how much of the
  difference to take); ``token_gate_distractors0.1``: the gate also reads each query-target
  token of the pass with the template (``template_gate="tokens"``);
- ``relevance_distractors0.1_mask0.5_calibrated_gate`` (``relevance_distractors0.1_calibrated_gate``
  at the paper's mask ratio): ``relevance_distractors0.1_mask0.5`` (``relevance_distractors0.1``)
  trained as usual, then a relevance gate trained alone on its held transformer
  (:func:`hoijax.icl.calibrate_gate`: 400 steps at 0.02, every example an inference episode;
  ``hoijax icl-train --template-gate relevance --gate-steps 400``).

Diagnostics of every run: the attention that the query's target tokens pay to the template's
tokens (share of the softmax mass, mean over layers, heads and present hands; retrieved and
random template), and the per-hand gain (P-MPVPE without template − with it) binned by the cosine
similarity of the template's coarse − ground-truth articulation and shape error to the query's.

Seeds: ``--data-seed 1`` is the development draw (all choices were made on it); the reported
table uses ``--data-seed 3``, a draw not looked at before the final run (``--data-seed 2`` held an
earlier version of the table).

Writes ``<out>/icl_table.json`` and ``<out>/icl_table.md``::

    python experiments/icl_table.py [--runs default paper mask0.5 mask0.9] [--steps 1500]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import package_versions

from hoijax import icl
from hoijax.icl._model import EgoHandIcl

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("P-MPJPE_mm", "P-MPVPE_mm", "F@5", "F@15", "two_hand_P-MPVPE_mm", "MRRPE_mm",
           "MPJPE_mm", "joint_F@10")
# The recommended recipe ("default", also `hoijax icl-train`'s): the paper's (MAE ratio 0.7 on
# both target sets, L_mano and weights as printed) with two named additions, the target − input
# encoding (IclConfig.target_difference) and half of the examples drawn as inference episodes
# (TrainConfig.inference_episodes = 0.5). Each other row changes one thing.
_REC = ({"target_difference": True}, {"inference_episodes": 0.5})


# The row of the headline table and `hoijax icl-train`'s defaults: _REC with the template
# relevance encoding (README, EgoHandICL, item 6, says how it was chosen).
RECOMMENDED = "relevance"


def _with(model=None, train=None):
    return ({**_REC[0], **(model or {})}, {**_REC[1], **(train or {})})


RUNS = {
    "default": _REC,
    "paper": ({}, {}),
    "no_inference_episodes": _with(train={"inference_episodes": 0.0}),
    "paper_tokens": _with(model={"target_difference": False}),
    "mask0.5": _with(train={"mask_ratio": 0.5}),
    "mask0.9": _with(train={"mask_ratio": 0.9}),
    "distractors0.2": _with(train={"distractor_templates": 0.2}),
    "distractors0.4": _with(train={"distractor_templates": 0.4}),
    "dropout0.2": _with(train={"template_dropout": 0.2}),
    "relevance": _with(model={"template_relevance": True}),
    "relevance_distractors0.05": _with(model={"template_relevance": True},
                                       train={"distractor_templates": 0.05}),
    "relevance_distractors0.1": _with(model={"template_relevance": True},
                                      train={"distractor_templates": 0.1}),
    "relevance_distractors0.2": _with(model={"template_relevance": True},
                                      train={"distractor_templates": 0.2}),
    "relevance_distractors0.4": _with(model={"template_relevance": True},
                                      train={"distractor_templates": 0.4}),
    "template_visible": _with(train={"template_mask_ratio": 0.0, "inference_episodes": 0.0}),
    "relevance_gate_distractors0.1": _with(model={"template_relevance": True,
                                                  "template_gate": "relevance"},
                                           train={"distractor_templates": 0.1}),
    "relevance_gate_distractors0.2": _with(model={"template_relevance": True,
                                                  "template_gate": "relevance"},
                                           train={"distractor_templates": 0.2}),
    "token_gate_distractors0.1": _with(model={"template_relevance": True,
                                              "template_gate": "tokens"},
                                       train={"distractor_templates": 0.1}),
}
RUN_LABELS = {
    "default": "default: paper recipe (mask 0.7) + target−input encoding + ½ inference episodes",
    "paper": "the paper's recipe exactly (mask 0.7, paper's tokens)",
    "no_inference_episodes": "default without inference episodes (the previous default)",
    "paper_tokens": "default with the paper's tokens (no target−input encoding)",
    "mask0.5": "default, mask ratio 0.5",
    "mask0.9": "default, mask ratio 0.9",
    "distractors0.2": "default + 20 % random templates in training",
    "distractors0.4": "default + 40 % random templates in training",
    "dropout0.2": "default + template dropout 0.2",
    "relevance": "default + template relevance encoding",
    "relevance_distractors0.05": "default + template relevance encoding + 5 % random templates "
    "in training",
    "relevance_distractors0.1": "default + template relevance encoding + 10 % random templates "
    "in training",
    "relevance_distractors0.2": "default + template relevance encoding + 20 % random templates "
    "in training",
    "relevance_distractors0.4": "default + template relevance encoding + 40 % random templates "
    "in training",
    "template_visible": "target−input encoding, template targets never masked (query 0.7)",
    "relevance_gate_distractors0.1": "default + template relevance encoding + template gate + "
    "10 % random templates in training",
    "relevance_gate_distractors0.2": "default + template relevance encoding + template gate + "
    "20 % random templates in training",
    "token_gate_distractors0.1": "default + template relevance encoding + template gate on the "
    "tokens + 10 % random templates in training",
}
# A gate calibrated on a trained model: the run named by the value trains as usual, then a
# relevance gate alone (hoijax.icl.calibrate_gate) on its held transformer, for GATE_STEPS
# steps at GATE_LR, every example an inference episode.
CALIBRATED_GATE = {"relevance_distractors0.1_mask0.5_calibrated_gate":
                   "relevance_distractors0.1_mask0.5",
                   "relevance_distractors0.1_calibrated_gate": "relevance_distractors0.1"}
GATE_STEPS, GATE_LR = 400, 0.02
# The mask ratios of the paper's ablation for the relevance recipes (the setup tables).
for _base in ("relevance", "relevance_distractors0.1", "relevance_distractors0.2",
              "relevance_gate_distractors0.1", "token_gate_distractors0.1"):
    for _ratio in (0.5, 0.9):
        RUNS[f"{_base}_mask{_ratio}"] = (RUNS[_base][0],
                                         {**RUNS[_base][1], "mask_ratio": _ratio})
        RUN_LABELS[f"{_base}_mask{_ratio}"] = f"{RUN_LABELS[_base]}, mask ratio {_ratio}"
for _name, _base in CALIBRATED_GATE.items():
    RUNS[_name] = RUNS[_base]
    RUN_LABELS[_name] = f"{RUN_LABELS[_base]}, then a relevance gate trained alone"


def random_templates(q_types, db_types, db_scene, q_scene, rng, db_setup=None, q_setup=None
                     ) -> np.ndarray:
    """A database row of the same hand type from another scene (of the same recording setup,
    when setups are given), per query."""
    db_setup = np.zeros(len(db_types), int) if db_setup is None else db_setup
    q_setup = np.zeros(len(q_types), int) if q_setup is None else q_setup
    out = np.empty(len(q_types), np.int32)
    for i, (t, s, g) in enumerate(zip(q_types, q_scene, q_setup)):
        out[i] = rng.choice(np.flatnonzero((db_types == t) & (db_scene != s) & (db_setup == g)))
    return out


def template_attention(params, cfg, queries, database, t_idx, n_max=256) -> list[float]:
    """Per layer: mean share of the attention of the query's (present) target tokens that goes
    to the template's tokens (input and target), at inference masks."""
    n = min(n_max, queries.num_frames)
    ex = icl.gather_examples(queries, database, jnp.arange(n), jnp.asarray(t_idx[:n]),
                             hide_query_gt=True)
    tpl_m, qry_m = icl.inference_masks(cfg.num_target_tokens)

    def one(e):
        _, inter = EgoHandIcl(cfg).apply({"params": params}, e, tpl_m, qry_m, True,
                                         mutable=["intermediates"])
        return [inter["intermediates"][f"block_{i}"]["attn"]["attention_weights"][0]
                for i in range(cfg.num_layers)]

    weights = jax.jit(jax.vmap(one))(ex)  # per layer (n, heads, 4T, 4T)
    t = cfg.num_target_tokens
    valid = np.repeat(np.asarray(queries.presence[:n]), cfg.tokens_per_hand, axis=1)  # (n, T)
    out = []
    for w in weights:
        w = np.asarray(w)[:, :, 3 * t:, :]  # rows: query target tokens
        share = w[..., :2 * t].sum(-1).mean(1)  # (n, T) mass on template tokens, head mean
        out.append(float(share[valid].mean()))
    return out


def gain_by_similarity(queries, database, t_idx, err_removed, err_retrieved, bins=4) -> dict:
    """Per-hand gain (P-MPVPE removed − retrieved, mm) by quantile bins of the cosine similarity
    of the template's coarse − gt articulation+shape error (entries 3:58) to the query's."""
    e_q = np.asarray(queries.coarse - queries.gt)[..., 3:58]
    e_t = np.asarray(database.coarse - database.gt)[t_idx][..., 3:58]
    both = np.asarray(queries.presence) & np.asarray(database.presence)[t_idx]
    cos = np.sum(e_q * e_t, -1) / (np.linalg.norm(e_q, axis=-1) * np.linalg.norm(e_t, axis=-1)
                                   + 1e-12)
    gain = err_removed - err_retrieved
    ok = both & np.isfinite(gain)
    c, g = cos[ok], gain[ok]
    edges = np.quantile(c, np.linspace(0, 1, bins + 1))
    rows = []
    for i in range(bins):
        sel = (c >= edges[i]) & ((c < edges[i + 1]) if i + 1 < bins else (c <= edges[i + 1]))
        rows.append({"similarity_from": float(edges[i]), "similarity_to": float(edges[i + 1]),
                     "mean_similarity": float(c[sel].mean()), "mean_gain_mm": float(g[sel].mean()),
                     "hands": int(sel.sum())})
    return {"bins": rows, "correlation": float(np.corrcoef(c, g)[0, 1])}


def per_hand_errors(pred, q, models, sides):
    a = icl.hand_metrics_arrays(pred, q.gt, q.presence, models, sides)
    a.update(icl.keypoint_metrics_arrays(pred, q.keypoints_gt, q.keypoints_valid, q.presence,
                                         models))
    return a, icl.summarize_metrics(a)


def run_one(name, args, train, test, database, tpl_train, tpl_test, tpl_rand, models,
            train_setup):
    m_over, t_over = RUNS[name]
    model_cfg = icl.IclConfig(d_model=args.d_model, num_layers=args.layers, num_heads=4,
                              **m_over)
    train_cfg = icl.TrainConfig(total_steps=args.steps, batch_size=args.batch_size,
                                learning_rate=args.lr, seed=args.seed, log_every=50,
                                **t_over)
    result = icl.train_icl(model_cfg, train_cfg, train, tpl_train, progress=args.progress,
                           groups=train_setup)
    seconds = result.seconds
    if name in CALIBRATED_GATE:  # then the gate alone, on the held transformer
        model_cfg, result = icl.calibrate_gate(result.params, model_cfg, train_cfg, train,
                                               tpl_train, steps=GATE_STEPS,
                                               learning_rate=GATE_LR, progress=args.progress,
                                               groups=train_setup)
        seconds += result.seconds
    t1 = time.perf_counter()
    preds = {
        "retrieved": icl.predict_icl(result.params, model_cfg, test, database, tpl_test),
        "removed": icl.predict_icl(result.params, model_cfg, test, database, tpl_test,
                                   use_template=False),
        "random": icl.predict_icl(result.params, model_cfg, test, database, tpl_rand),
    }
    arrays, metrics = {}, {}
    for k, p in preds.items():
        arrays[k], metrics[k] = per_hand_errors(p, test, models, model_cfg.sides)
    diag = {
        "template_attention_retrieved": template_attention(result.params, model_cfg, test,
                                                           database, tpl_test),
        "template_attention_random": template_attention(result.params, model_cfg, test,
                                                        database, tpl_rand),
        "gain_vs_error_similarity": gain_by_similarity(
            test, database, tpl_test, arrays["removed"]["pa_mpvpe_mm"],
            arrays["retrieved"]["pa_mpvpe_mm"]),
    }
    r, rm = metrics["retrieved"]["P-MPVPE_mm"], metrics["removed"]["P-MPVPE_mm"]
    return {
        "label": RUN_LABELS[name], "metrics": metrics, "diagnostics": diag,
        "template_gain_percent": 100.0 * (rm - r) / rm,
        "model_config": model_cfg.to_dict(), "train_config": dataclasses.asdict(train_cfg),
        "num_parameters": int(sum(x.size for x in jax.tree.leaves(result.params))),
        "gate_calibration": ({"steps": GATE_STEPS, "learning_rate": GATE_LR}
                             if name in CALIBRATED_GATE else None),
        "train_seconds": seconds, "eval_seconds": time.perf_counter() - t1,
        "final_train_loss_mean_last_100": float(np.mean(result.losses[-100:])),
    }


def _fmt(m, c):
    return f"{m[c]:.3f}" if "F@" in c else f"{m[c]:.2f}"


def write_tables(payload: dict, out: Path) -> str:
    runs = payload["runs"]
    coarse = payload["coarse"]
    lines = [
        f"Held-out synthetic scenes (data seed {payload['args']['data_seed']}): "
        f"{payload['num_test_frames']} query frames ({coarse['num_hands']} hands, "
        f"{coarse['num_two_hand_frames']} two-hand frames), database {payload['database_size']} "
        f"frames, templates from the query's own scene: "
        f"{100 * payload['same_scene_template_fraction']:.1f} %. Each model trained "
        f"{payload['args']['steps']} steps on one CPU core.",
        "",
    ]
    setups = payload["synthetic_config"].get("scenes_per_setup", 0)
    if setups:
        f = payload["synthetic_config"]["setup_error_fraction"]
        lines += [
            f"Recording setups of {setups} scenes each; the test scenes' setups are held out. "
            f"A share {f:g} of every scene's systematic error (variance {f * f:.0%}) is its "
            "setup's, shown by no text or image; the random template comes from another scene "
            "of the query's setup, and so do the random templates of training.", ""]
    lines += [
        "The paper's recipe: MAE mask ratio 0.7 on the template's and the query's target "
        "tokens, the query target fully masked at inference, loss on the masked groups, "
        "L_mano = sum of squared parameter errors, λm = 0.05, λv = 5, λ3D = 0.01. The default "
        "row adds the target − input encoding and draws half of the training examples as "
        "inference episodes (template target whole, query target fully masked); every other "
        "row names what it changes. The first table is the recommended recipe (`hoijax "
        "icl-train`'s defaults): the default row plus the template relevance encoding.",
        "",
    ]
    main = runs.get(RECOMMENDED) or runs.get("default") or next(iter(runs.values()))
    lines += ["| input | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS),
              "| coarse input (detector) | " + " | ".join(_fmt(coarse, c) for c in COLUMNS)
              + " |"]
    for k, label in (("retrieved", "retrieved template"), ("random",
                     "random same-type template from another scene"),
                     ("removed", "template removed")):
        lines.append(f"| {main['label']}: {label} | "
                     + " | ".join(_fmt(main['metrics'][k], c) for c in COLUMNS) + " |")
    lines += ["", f"Template gain (P-MPVPE, removed → retrieved): "
              f"{main['template_gain_percent']:.1f} %.", "",
              "Ablation (P-MPVPE mm / F@5; template gain = removed vs retrieved):", "",
              "| run | no template | random template | retrieved template | template gain | "
              "attention on template (retrieved / random) | train s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs.values():
        m = r["metrics"]
        att_r = np.mean(r["diagnostics"]["template_attention_retrieved"])
        att_x = np.mean(r["diagnostics"]["template_attention_random"])
        cells = [f"{m[k]['P-MPVPE_mm']:.2f} / {m[k]['F@5']:.3f}"
                 for k in ("removed", "random", "retrieved")]
        lines.append(f"| {r['label']} | " + " | ".join(cells)
                     + f" | {r['template_gain_percent']:.1f} % | {att_r:.2f} / {att_x:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", "Gain (mm, removed − retrieved) by similarity of the template's error to the "
              "query's (quartiles of the cosine; per hand):", "",
              "| run | " + " | ".join(f"Q{i + 1}" for i in range(4)) + " | correlation |",
              "|---|" + "---:|" * 5]
    for name, r in runs.items():
        g = r["diagnostics"]["gain_vs_error_similarity"]
        cells = [f"{b['mean_gain_mm']:.2f} (cos {b['mean_similarity']:.2f})" for b in g["bins"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {g['correlation']:.2f} |")
    lines += ["", f"Command: `{payload['command']}` (wall time {payload['wall_seconds']:.0f} s)"]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "icl_table.md").write_text(text)
    (out / "icl_table.json").write_text(json.dumps(payload, indent=2))
    return text


_NOT_DATA = ("out", "runs", "progress", "merge", "combine")


def _data_args(args: dict) -> dict:
    """The arguments that make a table's data and training (what --merge and --combine check)."""
    return {k: v for k, v in args.items() if k not in _NOT_DATA}


def combine_tables(paths: list[Path], out: Path) -> str:
    """One table from the ``icl_table.json`` files of runs made apart (for example two processes
    at once) on the same data and training arguments (checked); the wall times add up."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = parts[0]
    same = _data_args(first["args"])
    for p, part in zip(paths[1:], parts[1:]):
        theirs = _data_args(part["args"])
        if theirs != same:
            raise SystemExit(f"--combine: {p} was made with other arguments: {theirs} != {same}")
    payload = {**first, "runs": {k: v for part in parts for k, v in part["runs"].items()},
               "wall_seconds": sum(float(part["wall_seconds"]) for part in parts),
               "command": " & ".join(part["command"] for part in parts)
               + f" (run apart, then --combine {' '.join(str(p) for p in paths)})"}
    return write_tables(payload, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--scenes", type=int, default=2400)
    ap.add_argument("--frames-per-scene", type=int, default=5)
    ap.add_argument("--test-scenes", type=int, default=200)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=3)
    ap.add_argument("--scenes-per-setup", type=int, default=0,
                    help="SyntheticIclConfig.scenes_per_setup (0: one setup)")
    ap.add_argument("--setup-error-fraction", type=float, default=0.0,
                    help="SyntheticIclConfig.setup_error_fraction: share of the systematic "
                    "error shared by a recording setup's scenes")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="keep the runs of the existing <out>/icl_table.json (same data and "
                    "training arguments, checked) and add or replace the runs given")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                    help="train nothing: write one table from these icl_table.json files (runs "
                    "made apart on the same data and training arguments)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.combine:
        print(combine_tables(args.combine, args.out))
        return

    t0 = time.perf_counter()
    syn = icl.SyntheticIclConfig(num_scenes=args.scenes, frames_per_scene=args.frames_per_scene,
                                 seed=args.data_seed, scenes_per_setup=args.scenes_per_setup,
                                 setup_error_fraction=args.setup_error_fraction)
    data, meta = icl.make_synthetic_icl(syn)
    train, test, m_train, m_test = icl.split_by_scene(data, meta, args.test_scenes)
    database = icl.concat_icl_data(train, test)
    db_scene = np.concatenate([m_train["scene_id"], m_test["scene_id"]])
    r_train = icl.retrieve_for(train, train, exclude_index=np.arange(train.num_frames))
    r_test = icl.retrieve_for(test, database,
                              exclude_index=np.arange(test.num_frames) + train.num_frames)
    tpl_test = np.asarray(r_test.index)
    db_setup = np.concatenate([m_train["setup_id"], m_test["setup_id"]])
    if set(m_test["setup_id"].tolist()) & set(m_train["setup_id"].tolist()) and \
            args.scenes_per_setup:
        raise SystemExit("--test-scenes must be a multiple of --scenes-per-setup: the test "
                         "scenes' setups must be held out")
    tpl_rand = random_templates(icl.hand_types(test), icl.hand_types(database), db_scene,
                                m_test["scene_id"], np.random.default_rng(args.seed),
                                db_setup, m_test["setup_id"])
    models = icl.hand_models()
    _, coarse = per_hand_errors(np.asarray(test.coarse), test, models, icl.TWO_HANDS)

    runs, earlier_wall = {}, 0.0
    if args.merge and (args.out / "icl_table.json").exists():
        old = json.loads((args.out / "icl_table.json").read_text())
        mine = _data_args(vars(args))
        theirs = {k: old["args"].get(k) for k in mine}
        if theirs != mine:
            raise SystemExit(f"--merge: {args.out / 'icl_table.json'} was made with other "
                             f"arguments: {theirs} != {mine}")
        runs = {k: v for k, v in old["runs"].items() if k not in args.runs}
        earlier_wall = float(old["wall_seconds"])
        earlier_command = old["command"]
    else:
        earlier_command = None

    def payload() -> dict:
        return {
            "coarse": coarse, "runs": runs,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "same_scene_template_fraction": float(np.mean(db_scene[tpl_test]
                                                          == m_test["scene_id"])),
            "num_train_frames": train.num_frames, "num_test_frames": test.num_frames,
            "database_size": database.num_frames,
            "synthetic_config": {**dataclasses.asdict(syn), "sides": list(syn.sides)},
            "wall_seconds": earlier_wall + time.perf_counter() - t0,
            "command": ((earlier_command + " && " if earlier_command else "")
                        + "python experiments/icl_table.py --runs " + " ".join(args.runs) + " "
                        + " ".join(f"--{k.replace('_', '-')} {v}"
                                   for k, v in _data_args(vars(args)).items())
                        + (" --merge" if earlier_command else "")),
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                        "load_average_at_end": list(os.getloadavg())},
            "versions": package_versions("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                         "numpy"),
        }

    for name in args.runs:
        runs[name] = run_one(name, args, train, test, database, np.asarray(r_train.index),
                             tpl_test, tpl_rand, models, m_train["setup_id"])
        print(name, json.dumps({k: v["P-MPVPE_mm"] for k, v in runs[name]["metrics"].items()}),
              "attention", runs[name]["diagnostics"]["template_attention_retrieved"], flush=True)
        write_tables(payload(), args.out)  # after every run: a long run's partial table survives
    print(write_tables(payload(), args.out))


if __name__ == "__main__":
    main()
