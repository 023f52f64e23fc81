"""An evaluator's own check of an offline decoder: IOI, agreement and Greater-Than on frames
that appear nowhere in the project (not in ``tutorial_utils.tasks``, not in the corpus), so the
task splits' "held-out frames" are not the only test of generalisation.

    python benchmarks/eval_own_frames.py data/models/tiny-attn-tasks

Prints, over 200 prompts per row (seed 11): IOI logit difference IO - S and accuracy with the
training names and with the held-out names (ABBA/BABA alternating); agreement probability
difference p(is|are, right) - p(wrong) with opposite-number attractors (is/are only, so the PD is
low when a model spreads its probability over other verbs); Greater-Than probability difference.
Measured on 2026-12-02: tiny-attn-tasks v6 IOI 4.22 / 0.76 (training names), 0.86 / 0.58
(held-out names), agreement 0.19 / 1.00, Greater-Than 0.47; v3: 3.18 / 0.70, -0.26 / 0.49,
0.15 / 1.00, 0.45. Not a test: the figures are a diagnostic for the model card's next version.
"""
from __future__ import annotations

import random
import sys

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

from tutorial_utils.tasks.vocab import (CENTURIES, EVENT_NOUNS, IOI_OBJECTS, IOI_PLACES, NAMES,
                                        SVA_NOUNS)

#: Frames of the evaluator's own (every word is in the offline vocabulary; none is a task frame).
IOI_FRAMES = ("In the {place}, {a} met {b}, and {s} gave a {obj} to",
              "{a} and {b} talked about the {place}. Then {s} gave a {obj} to",
              "When {a} met {b} at the {place}, {s} sold a {obj} to",
              "{a} and {b} had lunch at the {place}, and {s} handed a {obj} to",
              "On that day {a} and {b} saw the {place}. {s} wrote a letter to",
              "After the {place}, {a} and {b} talked, and {s} lent the {obj} to")
SVA_FRAMES = ("The {subj} behind the {attr}", "The {subj} by the {attr}",
              "The {subj} that the {attr} saw", "The {subj} with the {attr}")
GT_FRAMES = ("In the year {cc}{yy}, the {noun} began. The {noun} ran until the year {cc}",
             "The {noun} ran from the year {cc}{yy} to the year {cc}")
N = 200


def main(model_dir: str) -> None:
    torch.set_num_threads(1)
    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    unk = tok.unk_token_id

    def ids(text: str) -> list[int]:
        out = tok(text, add_special_tokens=False)["input_ids"]
        if unk in out:
            raise ValueError(f"a word of {text!r} is not in this model's vocabulary")
        return out

    @torch.no_grad()
    def last_logits(text: str) -> torch.Tensor:
        return model(torch.tensor([[tok.bos_token_id] + ids(text)])).logits[0, -1]

    rng = random.Random(11)  # one stream, drawn in the order below
    heldout_names = [n for n in NAMES.all if n not in NAMES.train]
    for split, names in (("train", NAMES.train), ("heldout", heldout_names)):
        diffs = []
        for i in range(N):
            io, s = rng.sample(names, 2)
            a, b = (io, s) if i % 2 else (s, io)  # BABA / ABBA alternating
            text = IOI_FRAMES[i % len(IOI_FRAMES)].format(
                a=a, b=b, s=s, place=rng.choice(IOI_PLACES.all), obj=rng.choice(IOI_OBJECTS.all))
            logits = last_logits(text)
            diffs.append(float(logits[ids(" " + io)[0]] - logits[ids(" " + s)[0]]))
        t = torch.tensor(diffs)
        print(f"IOI own frames, {split} names: LD {t.mean():.2f}, acc {(t > 0).float().mean():.2f}")

    pds = []
    for i in range(N):
        pair = rng.choice(SVA_NOUNS.all)
        attractor = rng.choice([q for q in SVA_NOUNS.all if q != pair])
        plural = i % 2  # opposite-number attractor
        text = rng.choice(SVA_FRAMES).format(subj=pair[plural], attr=attractor[1 - plural])
        probs = last_logits(text).softmax(-1)
        good, bad = (" are", " is") if plural else (" is", " are")
        pds.append(float(probs[ids(good)[0]] - probs[ids(bad)[0]]))
    t = torch.tensor(pds)
    print(f"SVA own frames (is/are): PD {t.mean():.2f}, acc {(t > 0).float().mean():.2f}")

    year_ids = [ids(f"{y:02d}")[0] for y in range(100)]
    pds = []
    for _ in range(N):
        yy, cc = rng.randint(2, 98), rng.choice(CENTURIES)
        text = rng.choice(GT_FRAMES).format(noun=rng.choice(EVENT_NOUNS.all), cc=cc, yy=f"{yy:02d}")
        p_year = last_logits(text).softmax(-1)[year_ids]
        pds.append(float(p_year[yy + 1:].sum() - p_year[:yy + 1].sum()))  # p(> YY) - p(<= YY)
    print(f"GT own frames: PD {torch.tensor(pds).mean():.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/models/tiny-attn-tasks")
