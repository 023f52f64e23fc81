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
import random, sys
import torch
torch.set_num_threads(1)
from transformers import AutoTokenizer, GPT2LMHeadModel
from tutorial_utils.tasks.vocab import NAMES, IOI_OBJECTS, IOI_PLACES, SVA_NOUNS, EVENT_NOUNS, CENTURIES
d = sys.argv[1]
m = GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
tok = AutoTokenizer.from_pretrained(d)
V = tok.get_vocab()
def ids(t): return tok(t, add_special_tokens=False)["input_ids"]
IOI = ["In the {place}, {a} met {b}, and {s} gave a {obj} to",
       "{a} and {b} talked about the {place}. Then {s} gave a {obj} to",
       "When {a} met {b} at the {place}, {s} sold a {obj} to",
       "{a} and {b} had lunch at the {place}, and {s} handed a {obj} to",
       "On that day {a} and {b} saw the {place}. {s} wrote a letter to",
       "After the {place}, {a} and {b} talked, and {s} lent the {obj} to"]
r = random.Random(11)
for fr in IOI:
    p = fr.format(a="Mary", b="John", s="John", place="store", obj="drink")
    assert 1 not in ids(p), p
lds = []
for split in ("train", "heldout"):
    names = NAMES.train if split == "train" else [n for n in NAMES.all if n not in NAMES.train]
    res = []
    for i in range(200):
        fr = IOI[i % len(IOI)]
        io, s = r.sample(names, 2)
        a, b = (io, s) if i % 2 else (s, io)
        p = fr.format(a=a, b=b, s=s, place=r.choice(IOI_PLACES.all), obj=r.choice(IOI_OBJECTS.all))
        x = torch.tensor([[0] + ids(p)])
        with torch.no_grad(): lg = m(x).logits[0, -1]
        res.append(float(lg[ids(" " + io)[0]] - lg[ids(" " + s)[0]]))
    t = torch.tensor(res)
    print(f"IOI own frames, {split} names: LD {t.mean():.2f}, acc {(t > 0).float().mean():.2f}")
SVA = ["The {subj} behind the {attr}", "The {subj} by the {attr}", "The {subj} that the {attr} saw",
       "The {subj} with the {attr}"]
for fr in SVA:
    assert 1 not in ids(fr.format(subj="key", attr="cabinet")), fr
pd = []
for i in range(200):
    pair = r.choice(SVA_NOUNS.all); att = r.choice([q for q in SVA_NOUNS.all if q != pair])
    pl = i % 2
    p = r.choice(SVA).format(subj=pair[pl], attr=att[1 - pl])
    x = torch.tensor([[0] + ids(p)])
    with torch.no_grad(): pr = m(x).logits[0, -1].softmax(-1)
    good, bad = (" are", " is") if pl else (" is", " are")
    pd.append(float(pr[ids(good)[0]] - pr[ids(bad)[0]]))
t = torch.tensor(pd); print(f"SVA own frames (is/are): PD {t.mean():.2f}, acc {(t > 0).float().mean():.2f}")
GT = ["In the year {cc}{yy}, the {noun} began. The {noun} ran until the year {cc}", "The {noun} ran from the year {cc}{yy} to the year {cc}"]
pd = []
for i in range(200):
    yy = r.randint(2, 98); cc = r.choice(CENTURIES)
    p = r.choice(GT).format(noun=r.choice(EVENT_NOUNS.all), cc=cc, yy=f"{yy:02d}")
    q = ids(p); assert 1 not in q, p
    with torch.no_grad(): pr = m(torch.tensor([[0] + q])).logits[0, -1].softmax(-1)
    yids = [ids(f"{y:02d}")[0] for y in range(100)]
    py = pr[yids]
    pd.append(float(py[yy + 1:].sum() - py[:yy + 1].sum()))
t = torch.tensor(pd); print(f"GT own frames: PD {t.mean():.2f}")
