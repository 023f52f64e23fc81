"""Write the offline model's model card (``README.md`` beside the checkpoint) from its
``training_record.json``, so every number in the card is the measured one.

    python -m tutorial_utils.course.offline_model.model_card data/models/tiny-attn-tasks [--measure]

``--measure`` first adds the trained/held-out generalisation breakdown and the composition
evidence (:func:`.evaluate.composition_evidence`) to the record. A
``notes`` entry in the record (free text: what was missed and what would be needed) is printed
after the metrics.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ...errors import TutorialError
from ...names import head_name
from .cli_checks import check_weights, read_json
from ...tasks.vocab import NAMES
from .evaluate import composition_evidence, generalisation_breakdown
from ...models import load_model

TARGETS = [
    ("Greater-Than probability difference", "greater_than_pd", ">= 0.85 (GPT-2 small: 0.81)"),
    ("Greater-Than PD on the corrupted '01' prompts", "greater_than_pd_corrupted",
     "far lower than the clean PD"),
    ("Greater-Than accuracy (PD > 0)", "greater_than_acc", "-"),
    ("SVA probability difference (opposite-number attractors)", "sva_pd", ">= 0.80"),
    ("SVA accuracy", "sva_acc", ">= 0.95"),
    ("IOI logit difference IO - S", "ioi_logit_diff", ">= 3.0"),
    ("IOI accuracy", "ioi_acc", ">= 0.90"),
    ("Induction: loss on the first copy", "induction_loss_first", "-"),
    ("Induction: loss on the second copy", "induction_loss_second", "< 20% of the first"),
    ("Induction: best head's induction score", "induction_best_score", ">= 0.5"),
    ("Factual recall top-1 (trained facts)", "facts_top1", ">= 0.95"),
]


ATTN_ONLY = """
**Attention-only.** Every MLP block is present in the checkpoint (so it is a standard GPT-2
checkpoint that `transformers` and TransformerLens load unchanged) but its weights are zero and
were frozen during training: `mlp(x) = 0` exactly, so each layer computes `x + attn(ln_1(x))`.
Why: with MLPs, earlier versions of this model solved IOI by *counting* names (one layer-0 head
averaging every name, MLPs turning the average into an answer) and never composed heads. An
attention head's output is linear in what it attends to, so without MLPs no single layer can
tell the name that occurs once from the one that occurs twice: the model has to compose heads
across layers, as GPT-2 small does (ARENA teaches composition on attention-only models for the
same reason). The `mL` nodes in the notebooks' graphs therefore carry exactly zero.
"""


def render_composition(ev: dict | None) -> str:
    """The card's composition section, from the measured ``record["composition"]``."""
    if not ev:
        return ""

    ioi, ind = ev["ioi"], ev["induction"]
    n_names = len(NAMES.all)
    hh = "\n".join(f"| {e['sender']} | {e['receiver']} | {e['effect']:+.2f} |"
                   for e in ioi["head_to_head_edges"]) or "| - | - | - |"
    movers = "\n".join(
        f"| {m['head']} | {m['direct_effect']:+.2f} | {m['attention_end_to_io']:.2f} | "
        f"{m['attention_end_to_s2']:.2f} | {m['copying_score']:.2f} | "
        f"{m['anti_copying_score']:.2f} |" for m in ioi["name_movers"]) or "| - | - | - | - | - | - |"
    eff = ind["effect_removed_via"]
    two_strongest = ""
    if ind.get("effect_removed_via_two_strongest"):
        e2 = ind["effect_removed_via_two_strongest"]
        two_strongest = (
            f" With the two heads of highest previous-token score ({', '.join(ind['two_strongest_prev_heads'])}; no "
            f"threshold) as senders: query {e2['q']:.2f}, **key {e2['k']:.2f}**, value {e2['v']:.2f}.")
    return f"""
## Composition (measured)
Command: `{ev['command']}` (IOI: {ioi['n_prompts']} canonical prompts, ABBA and BABA, ABC
corruption; clean logit difference {ioi['logit_diff_clean']:.2f}, corrupted
{ioi['logit_diff_corrupted']:.2f}; `iterative_path_patching(threshold={ioi['threshold']})`).

**IOI.** The walk back from the logits keeps heads in layers {ioi['layers_with_heads']}
({len(ioi['heads'])} heads: {", ".join(ioi['heads'])}). Head -> head edges it keeps (normalised
effect: the share of the clean - corrupted logit difference that patching this edge alone
removes):

| sender | receiver input | effect |
| --- | --- | --- |
{hh}

Heads whose direct edge to the logits carries >= {ioi['threshold']} of the effect, with their
attention from the final position (END) to the indirect object (IO) and to the second subject
mention (S2), and their copying / anti-copying scores (the fraction of all {n_names} names whose
own logit is top-1 under `W_E[name] W_OV W_U`, or under its negation). Wang et al.'s name movers
would attend END -> IO and copy; heads that attend to S2 and anti-copy push the subject down.

| head | direct effect | attention END -> IO | attention END -> S2 | copying | anti-copying |
| --- | --- | --- | --- | --- | --- |
{movers}

**Induction.** Previous-token heads {", ".join(ind['prev_token_heads'])} (previous-token scores
{", ".join(f"{x:.2f}" for x in ind['prev_token_scores'])}) and induction heads
{", ".join(ind['induction_heads'])} (induction scores
{", ".join(f"{x:.2f}" for x in ind['induction_scores'])}) on repeated random tokens (corrupted:
the first copy replaced by other random tokens). Patching the previous-token heads' outputs into
the induction heads' inputs alone removes this share of the induction effect (mean
log-probability of the second copy): query {eff['q']:.2f}, **key {eff['k']:.2f}**, value
{eff['v']:.2f} (K-composition).{two_strongest}
"""


def render_card(record: dict, name: str) -> str:
    tc, cc, m = record["train_config"], record["corpus_config"], record["final_metrics"]
    rows = "\n".join(f"| {label} | {m[key]:.2f} | {target} |" for label, key, target in TARGETS)
    bar = "\n".join(f"- {'met' if ok else '**missed**'}: `{k}`" for k, ok in record["bar"].items())
    hist = "\n".join(
        f"| {h['step']} | {h['elapsed_s'] / 60:.1f} | {h['greater_than_pd']:.2f} | "
        f"{h['sva_pd']:.2f} | {h['ioi_logit_diff']:.2f} | {h['induction_best_score']:.2f} | "
        f"{h['facts_top1']:.2f} |" for h in record["history"])
    breakdown = ""
    if record.get("breakdown"):
        lines = [f"| {r['task'].upper()} | {r['frames']} | {r['words']} | {r['metric']:.2f} | "
                 f"{r['accuracy']:.2f} |" for r in record["breakdown"]]
        breakdown = (
            "\n### Which novelty is hard: trained vs held-out frames and words (200 prompts each)\n"
            "Metric: IOI logit difference, SVA probability difference (opposite-number "
            "attractors).\n\n| task | frames | words | metric | accuracy |\n"
            "| --- | --- | --- | --- | --- |\n" + "\n".join(lines) + "\n")
    extra_kinds = ""
    if cc.get("w_name_recall"):
        extra_kinds += (f", name recall {cc['w_name_recall']:.2f} (one name mentioned, then "
                        "predicted: \"Maria was at the garden. Later, a friend sent a drink to "
                        "Maria.\")")
    if cc.get("p_ioi_distractor"):
        extra_kinds += (f"; {cc['p_ioi_distractor']:.0%} of IOI sentences hold a third, "
                        "once-mentioned name after the subject (\"..., John saw Tom and gave a "
                        "drink to Mary.\")")
    recall_note = (" (and held-out names in name-recall sentences, which hold one name and no "
                   "IOI frame)" if cc.get("w_name_recall") else "")
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in tc.items()
                    if k in ("lr", "ioi_distractor", "name_recall", "w_filler"))
    recipe_command = (f"`python -m tutorial_utils.course.offline_model.train --out runs/{name} "
                      f"--seed {tc['seed']}` (defaults; explicitly:{flags})")
    selection_text = " and the best checkpoint kept"
    if record.get("selection"):
        recipe_command += (f", then `python -m tutorial_utils.course.offline_model.select runs/{name} "
                           f"--out data/models/{name}`")
        rows_sel = "\n".join(
            f"| {step} | {v['task_score']:.2f} | {v['composition_score']:.2f} | {v['total']:.2f} "
            f"| {', '.join(v['name_movers']) or '-'} | {v['induction_k']:.2f} |"
            for step, v in sorted(record["selection"]["scores"].items(), key=lambda t: int(t[0])))
        selection_text = (
            ", every checkpoint saved, and `select` chose among them on the task score plus a "
            "composition score (name mover copying / 0.8 + induction K-composition share / 0.5 + "
            "strongest head -> head edge / 0.10, each capped at 1; measured on IOI prompts drawn "
            "with seed 1)\n\n| step | task score (of 7) | composition score (of 3) | total | "
            "name movers | induction K share |\n| --- | --- | --- | --- | --- | --- |\n"
            + rows_sel + "\n\n(name movers: heads with a direct effect that attend from END more "
            "to IO than to S2, listed once the clean - corrupted IOI gap is >= 1). Chosen")
    return f"""# {name}: a small GPT-2-architecture model trained on the course's tasks

This model exists so that the course runs offline, in CI and on a student's laptop, on a model
that really performs the tasks the notebooks dissect, with circuits whose heads *compose* across
layers (the composition notebook, 04, dissects it). It is **not** GPT-2: it was trained from
scratch in this repository on a synthetic corpus, and the circuits it learned are its own (the
notebooks say where they differ from the published GPT-2 circuits). Load it with
`tutorial_utils.models.load_model("{name}")`.

## Architecture
`GPT2LMHeadModel` (pre-LayerNorm, learned absolute positions, tied input/output embeddings, no
dropout): {tc['n_layer']} layers, d_model {tc['n_embd']}, {tc['n_head']} heads of dimension
{tc['n_embd'] // tc['n_head']}, context {tc['n_ctx']} tokens, vocabulary {record['vocab_size']},
{record['parameters']:,} parameters ({record.get('trainable_parameters', record['parameters']):,}
trained), stored in float32 safetensors.
{ATTN_ONLY if tc.get('attn_only') else ''} It loads offline with `tutorial_utils.models.load_model("{name}")`
(`TransformerBridge.boot_transformers` on this directory + `enable_compatibility_mode()`).

## Tokenizer
Word level with GPT-2's conventions (`tutorial_utils/course/offline_model/tokenizer.py`): a word and its
leading space are one token (" war" -> `Ġwar`), a year splits into century + two digits
(" 1741" -> " 17" + "41"), punctuation is its own token, `<|endoftext|>` (id 0) is BOS/EOS/pad,
and every name, noun and answer word of the tasks is a single token.

## Training data
Generated on the fly by `tutorial_utils/course/offline_model/corpus.py` (seed {tc['seed']}): documents of
{cc['n_ctx']} tokens starting with BOS, filled with sentences drawn with weights IOI
{cc['w_ioi']:.2f}, Greater-Than {cc['w_greater_than']:.2f}, agreement {cc['w_sva']:.2f}, facts
{cc['w_facts']:.2f}, filler {cc['w_filler']:.2f}{extra_kinds}; {cc['p_induction_doc']:.0%} of documents contain a
random span of tokens that is repeated later (induction). {record['documents_seen']:,} documents,
{record['tokens_seen']:,} tokens in all.

**Held out of training** (the evaluation below uses only these): Greater-Than frames with
(subject + verb + span) index sum divisible by 5 (the canonical "The {{noun}} lasted from the year
{{start}} to the year {{cc}}" among them), 12 event nouns, and start years ending in 2 or 7; SVA
prepositions "above"/"beside" and the relative-clause verb "wanted", and 12 subject nouns; IOI
intro/action frame combinations with (i + j) divisible by 4 (the canonical "When A and B went to
the place, B gave a drink to" among them), 276 of the 476 names, 2 places and 2 objects (half of
the IOI training sentences use corpus-only openings and actions, some with the repeated name as
an object: "the clerk asked B to give a drink to"). Held-out words still
appear in neutral filler sentences{recall_note}, so their embeddings are trained; they never appear in the
task's own sentences. The canonical frames of the held-out sets are recombinations of trained
parts (e.g. the subject, verb and span of the canonical Greater-Than frame each occur in other
training frames).

## Training recipe
{recipe_command}:
AdamW (betas 0.9/0.98, weight decay {tc['weight_decay']} on matrices), peak learning rate
{tc['lr']}, {tc['warmup']} warm-up steps then cosine decay to {tc['min_lr_ratio']} x peak,
batch {tc['batch_size']} x {tc['n_ctx']} tokens, {record.get('steps_run', tc['steps'])} steps
(schedule over {tc['steps']} steps{f" or {tc['max_minutes']:.0f} minutes, whichever came first" if tc.get('max_minutes') else ""}),
gradient clipping at 1.0. Checkpoint selection: every {tc['eval_every']} steps the model was
scored on a validation draw of held-out prompts (seed 1; the table below uses seed 0){selection_text}:
step **{record.get('selected_step', record.get('steps_run', tc['steps']))}**.
Wall time **{record['wall_time_s'] / 60:.0f} min** ({record['wall_time_s']:.0f} s) on
{record['machine']} (a 2-core CPU machine shared with other work, so times vary).

## Measured metrics (held-out prompts, 200 per task)
| metric | value | target |
| --- | --- | --- |
{rows}

Best induction head: {course_head_name(m['induction_best_head'])}.

{bar}
{breakdown}{render_composition(record.get("composition"))}{record.get("notes", "")}

### During training (validation draw, 100 prompts per task)
| step | minutes | GT PD | SVA PD | IOI LD | induction score | facts |
| --- | --- | --- | --- | --- | --- | --- |
{hist}

`tests/test_offline_model.py` re-measures these targets on a fresh seeded sample in CI, so a
retrain that breaks one fails the tests.
"""


def measure_breakdown(model_dir: str | Path) -> None:
    """Add the trained/held-out breakdown to ``training_record.json`` (measured, not typed)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel


    model_dir = Path(model_dir)
    path = model_dir / "training_record.json"
    record = json.loads(path.read_text())
    model = GPT2LMHeadModel.from_pretrained(str(model_dir), attn_implementation="eager")
    record["breakdown"] = generalisation_breakdown(model, AutoTokenizer.from_pretrained(str(model_dir)))

    record["composition"] = composition_evidence(load_model(str(model_dir), device="cpu",
                                                            hooks=True))
    path.write_text(json.dumps(record, indent=1) + "\n")


def course_head_name(name: str) -> str:
    """A head in the course's notation, ``aL.hH``; records written before it say ``LxHy``."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name)
    return head_name(int(m[1]), int(m[2])) if m else name


#: What :func:`render_card` reads from ``training_record.json`` (besides optional entries).
RECORD_KEYS = ("train_config", "corpus_config", "final_metrics", "bar", "history", "vocab_size",
               "parameters", "documents_seen", "tokens_seen", "wall_time_s", "machine")
TRAIN_KEYS = ("n_layer", "n_embd", "n_head", "n_ctx", "seed", "lr", "warmup", "min_lr_ratio",
              "weight_decay", "batch_size", "steps", "eval_every")


def check_model_dir(model_dir: str | Path, measure: bool = False) -> dict:
    """The folder holds a decoder trained by :mod:`.train` with a complete record (and, for
    ``--measure``, weights that read and are finite); returns the record. Checked before any
    measuring or writing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise TutorialError(f"model folder {model_dir} does not exist")
    config = read_json(model_dir / "config.json", "the model's config")
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "gpt2":
        raise TutorialError(
            f"{model_dir} holds a {kind!r} model: model_card writes the card of a GPT-2 decoder "
            "trained by offline_model.train (the masked LM's card is written by "
            "offline_model.train_mlm)")
    record = read_json(model_dir / "training_record.json", "the training record")
    missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
    missing += [f"train_config.{k}" for k in TRAIN_KEYS
                if "train_config" not in missing and k not in record.get("train_config", {})]
    missing += [f"final_metrics.{key}" for _, key, _ in TARGETS
                if "final_metrics" not in missing and key not in record.get("final_metrics", {})]
    if missing:
        raise TutorialError(f"{model_dir / 'training_record.json'} lacks {', '.join(missing)}: "
                            "it was not written by offline_model.train (or by select)")
    if measure:
        check_weights(model_dir)
    return record


def write_card(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    record = check_model_dir(model_dir)
    out = model_dir / "README.md"
    out.write_text(render_card(record, model_dir.name))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                allow_abbrev=False)
    p.add_argument("model_dir", type=Path, nargs="?", default=Path("data/models/tiny-attn-tasks"),
                   help="the model folder (default: data/models/tiny-attn-tasks)")
    p.add_argument("--measure", action="store_true",
                   help="first measure the generalisation breakdown and the composition evidence")
    args = p.parse_args(argv)  # a misspelt option is an error, not ignored
    try:
        check_model_dir(args.model_dir, measure=args.measure)
    except TutorialError as err:
        p.error(str(err))
    if args.measure:
        measure_breakdown(args.model_dir)
    print(write_card(args.model_dir))


if __name__ == "__main__":
    main()
