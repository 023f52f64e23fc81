"""Seeded generator of the offline model's synthetic training corpus.

Each document is BOS followed by sentences until the context (64 tokens) is full. Sentences
are drawn from the *training* frames and words of :mod:`tutorial_utils.tasks`, so held-out
frames, nouns, names and start years never appear in task sentences:

* Greater-Than year spans, "The war lasted from the year 1741 to the year 1789." (end year
  uniform above the start year, same century);
* subject-verb agreement with prepositional and relative-clause attractors of either number,
  six verb pairs (is/are, was/were, has/have, does/do, seems/seem, looks/look);
* IOI sentences, "When Mary and John went to the store, John gave a drink to Mary.";
* facts, "The capital of France is Paris." (three phrasings);
* filler sentences that use every word, held-out ones included, in neutral contexts (nouns
  with number-marking determiners, names in two-name roles that are not IOI sentences);
* repeated random spans (induction): a random span of tokens appears, then appears again.

The mix (``CorpusConfig``) follows what made induction and IOI appear in a trial model: about
30% of documents contain a repeated span and about 35% of sentences are IOI sentences.

Version 3 (the composition model) widens the data so that general mechanisms are the cheapest
solutions: 476 names of which only 200 ever occur in IOI sentences (the rest occur in filler
only, so an IOI answer must be *copied* from the context), half of the IOI sentences use
corpus-only frames (other openings, other actions, and a repeated name that is an object rather
than the subject: "the clerk asked John to give a drink to"), and half of the agreement
sentences use corpus-only prepositions and relative-clause verbs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ...tasks import greater_than, ioi, sva
from ...tasks.vocab import (ADJECTIVES, CAPITALS, CENTURIES, EVENT_NOUNS, IOI_OBJECTS,
                           IOI_PLACES, NAMES, SVA_COMPLEMENTS, SVA_NOUNS, SVA_VERBS)
from .tokenizer import BOS, build_vocab, encode_fast


SINGULAR_DETERMINERS = ("a", "one", "this", "that", "every")
PLURAL_DETERMINERS = ("two", "three", "many", "these", "those", "several")

# Corpus-only variety (v3). None of these words or frames is part of a task's held-out split,
# so they widen what the model generalises from without leaking evaluation prompts.
#: Extra IOI openings and actions, combined freely with each other; {s} is the repeated name.
IOI_EXTRA_INTROS = (
    "Since {a} and {b} were at the {place},",
    "After {a} and {b} had lunch at the {place},",
    "{a} and {b} went to the {place}, and",
    "{a} and {b} were at the {place}. Then",
    "On that day, {a} and {b} visited the {place}, and",
    "When {a} and {b} came back from the {place},",
    "Before {a} and {b} left the {place},",
    "{a} and {b} spent the day at the {place}. Later,",
)
IOI_EXTRA_ACTIONS = (
    "{s} wanted to give a {obj} to",
    "{s} decided to give the {obj} to",
    "{s} gave the {obj} back to",
    "{s} said hello to",
    "{s} wrote a letter to",
    "{s} lent a {obj} to",
    "{s} sold the {obj} to",
    "{s} carried the {obj} over to",
    "the clerk asked {s} to give a {obj} to",
    "a friend told {s} to hand the {obj} to",
)
#: Actions with a distractor name {c} after the repeated name (used with p_ioi_distractor).
IOI_DISTRACTOR_ACTIONS = (
    "{s} saw {c} and gave a {obj} to",
    "{s} met {c} and handed the {obj} to",
    "{s} called {c} and sent a {obj} to",
    "{s} and {c} brought a {obj} to",
    "{s} helped {c} and passed the {obj} to",
)
#: Name-recall sentences (used with w_name_recall): one name is mentioned and later predicted,
#: with no second name, so copying a name from the context is rewarded outside IOI too (the
#: pressure that makes GPT-2's name movers copy). {a} is the name; the giver is never a name.
NAME_RECALL_FRAMES = (
    "{a} went to the {place}, and the clerk gave a {obj} to",
    "When {a} came back from the {place}, a friend handed the {obj} to",
    "After {a} had lunch at the {place}, the clerk brought a {obj} to",
    "{a} was at the {place}. Later, a friend sent a {obj} to",
    "Since {a} was at the {place}, the clerk sold the {obj} to",
    "On that day, {a} visited the {place}, and a friend lent a {obj} to",
)
#: Extra prepositions and relative-clause verbs for agreement sentences (the tasks hold out
#: "above", "beside" and "wanted"; these widen the training frames).
SVA_EXTRA_PREPOSITIONS = ("at", "from", "of", "without", "below", "beneath", "outside",
                          "around", "near to", "next to", "across from", "close to")
SVA_EXTRA_RC_VERBS = ("loved", "met", "knew", "helped", "called", "kept", "visited",
                      "watched", "followed", "painted", "chose", "noticed")


@dataclass(frozen=True)
class CorpusConfig:
    """Mixture weights of sentence kinds and document options."""

    n_ctx: int = 64
    w_ioi: float = 0.35
    w_greater_than: float = 0.17
    w_sva: float = 0.18
    w_facts: float = 0.06
    w_filler: float = 0.24
    p_induction_doc: float = 0.30
    #: Fraction of IOI sentences with a third, once-mentioned name after the repeated subject
    #: ("..., John saw Tom and gave a drink to Mary."): the repeated name is then not the most
    #: recent one, so "push down the last name" no longer solves IOI (0 in the shipped v3 run).
    p_ioi_distractor: float = 0.0
    #: Weight of name-recall sentences (``NAME_RECALL_FRAMES``; 0 in the shipped v3 run).
    w_name_recall: float = 0.0


class CorpusGenerator:
    """Draws sentences and documents from one seeded random stream."""

    def __init__(self, seed: int = 0, config: CorpusConfig = CorpusConfig()):
        self.rng = random.Random(seed)
        self.config = config
        self.gt_frames = greater_than.frames("train")
        self.sva_frames = sva.frames("train")
        self.ioi_frames = ioi.frames("train")
        self.sva_extra = ([f"The {{subj}} {p} the {{attr}}" for p in SVA_EXTRA_PREPOSITIONS]
                          + [f"The {{subj}} that the {{attr}} {v}" for v in SVA_EXTRA_RC_VERBS])
        self.kinds: list[tuple[float, Callable[[], str]]] = [
            (config.w_ioi, self.ioi_sentence),
            (config.w_greater_than, self.greater_than_sentence),
            (config.w_sva, self.sva_sentence),
            (config.w_facts, self.fact_sentence),
            (config.w_filler, self.filler_sentence),
            (config.w_name_recall, self.name_recall_sentence),
        ]
        self._cum = []
        total = 0.0
        for w, _ in self.kinds:
            total += w
            self._cum.append(total)
        self._span_pool: list[str] | None = None

    # --- sentences ------------------------------------------------------------------------
    def greater_than_sentence(self) -> str:
        r = self.rng
        yy = r.choice([y for y in range(2, 99) if not greater_than.is_heldout_start_year(y)])
        cc = r.choice(CENTURIES)
        end = r.randint(yy + 1, 99)
        frame = r.choice(self.gt_frames)
        text = frame.format(noun=r.choice(EVENT_NOUNS.train), start=f"{cc}{yy:02d}", cc=cc)
        return f"{text}{end:02d}."

    def sva_sentence(self) -> str:
        r = self.rng
        subj = r.choice(SVA_NOUNS.train)
        plural = r.random() < 0.5
        u = r.random()
        if u < 0.2:
            frame = "The {subj}"
            attr = ""
        else:
            frame = r.choice(self.sva_frames) if r.random() < 0.5 else r.choice(self.sva_extra)
            pair = r.choice([p for p in SVA_NOUNS.all if p != subj])
            attr_plural = (not plural) if u < 0.65 else plural
            attr = pair[int(attr_plural)]
        sing, plur = r.choice(SVA_VERBS)
        verb = plur if plural else sing
        comp = r.choice(SVA_COMPLEMENTS[sing])
        return f"{frame.format(subj=subj[int(plural)], attr=attr)} {verb} {comp}."

    def ioi_sentence(self) -> str:
        r = self.rng
        io, s = r.sample(NAMES.train, 2)
        a, b = (io, s) if r.random() < 0.5 else (s, io)
        if r.random() < 0.5:
            frame = r.choice(self.ioi_frames)
        else:
            frame = f"{r.choice(IOI_EXTRA_INTROS)} {r.choice(IOI_EXTRA_ACTIONS)}"
        if self.config.p_ioi_distractor and r.random() < self.config.p_ioi_distractor:
            c = r.choice([n for n in NAMES.train if n not in (io, s)])
            intro = r.choice(ioi.INTROS + IOI_EXTRA_INTROS)
            frame = f"{intro} {r.choice(IOI_DISTRACTOR_ACTIONS)}".replace("{c}", c)
        text = frame.format(a=a, b=b, s=s, place=r.choice(IOI_PLACES.train),
                            obj=r.choice(IOI_OBJECTS.train))
        return f"{text} {io}."

    def name_recall_sentence(self) -> str:
        """A single name, mentioned once and predicted at the end (any name, held-out ones
        included, as in the filler's "{name} gave a {obj} to {other}."; the frames are not IOI
        frames and hold no second name)."""
        r = self.rng
        frame = r.choice(NAME_RECALL_FRAMES)
        a = r.choice(NAMES.all)
        text = frame.format(a=a, place=r.choice(IOI_PLACES.train), obj=r.choice(IOI_OBJECTS.train))
        return f"{text} {a}."

    def fact_sentence(self) -> str:
        r = self.rng
        country = r.choice(list(CAPITALS))
        capital = CAPITALS[country]
        form = r.randrange(3)
        if form == 0:
            return f"The capital of {country} is {capital}."
        if form == 1:
            return f"{capital} is the capital of {country}."
        return f"{r.choice(NAMES.all)} lives in {capital}, the capital of {country}."

    def filler_sentence(self) -> str:
        """Neutral sentences over *every* word, held-out ones included. They give each noun
        its number without subject-verb agreement (a word-level token carries no plural
        "-s": "two paintings", "a painting"), and put every name in two-name roles that are
        not IOI sentences (no repeated subject)."""
        r = self.rng
        name, other = r.sample(NAMES.all, 2)
        pair = r.choice(SVA_NOUNS.all)
        plural = r.random() < 0.5
        noun = pair[int(plural)]
        det = r.choice(PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
        event = r.choice(EVENT_NOUNS.all)
        adj = r.choice(ADJECTIVES)
        place = r.choice(IOI_PLACES.all)
        obj = r.choice(IOI_OBJECTS.all)
        year = f"{r.choice(CENTURIES)}{r.randint(0, 99):02d}"
        prep = r.choice(sva.PREPOSITIONS_TRAIN + sva.PREPOSITIONS_HELDOUT)
        templates = (
            f"{name} liked {det} {adj} {noun}.",
            f"{name} saw {det} {noun} {prep} the {place}.",
            f"{name} bought {det} {noun} for {other}.",
            f"{name} talked about the {event} with {other}.",
            f"In the year {year}, the {event} began.",
            f"{name} had a {obj} and {det} {noun}.",
            f"{name} wanted to visit the {place} in {year}.",
            f"Everyone knew {name} from the {place}.",
            f"{name} met {other} at the {place}.",
            f"{name} gave a {obj} to {other}.",
            f"{name} and {other} talked about {det} {noun}.",
            f"{name} read a book about the {event}.",
        )
        return r.choice(templates)

    def sentence(self) -> str:
        u = self.rng.random() * self._cum[-1]
        for c, (_, fn) in zip(self._cum, self.kinds):
            if u <= c:
                return fn()
        return self.kinds[-1][1]()

    # --- documents ------------------------------------------------------------------------
    def random_span(self, vocab: dict[str, int], length: int) -> list[int]:
        if self._span_pool is None:
            self._span_pool = [p for p in vocab if p not in (BOS, "<unk>")]
        return [vocab[self.rng.choice(self._span_pool)] for _ in range(length)]

    def document(self, vocab: dict[str, int]) -> list[int]:
        """One document of exactly ``n_ctx`` token ids, starting with BOS."""
        n = self.config.n_ctx
        ids = [vocab[BOS]]
        r = self.rng
        if r.random() < self.config.p_induction_doc:
            if r.random() < 0.4:  # a purely random sequence, then its repeat
                span = self.random_span(vocab, r.randint(8, (n - 1) // 2))
                ids += span + span
            else:  # a span inside text, repeated after a sentence or two
                if r.random() < 0.5:
                    ids += encode_fast(self.sentence(), vocab)
                span = self.random_span(vocab, r.randint(4, 12))
                ids += span
                for _ in range(r.randint(0, 2)):
                    ids += encode_fast(" " + self.sentence(), vocab)
                ids += span
        first = len(ids) == 1
        while len(ids) < n:
            text = self.sentence()
            ids += encode_fast(text if first else " " + text, vocab)
            first = False
        return ids[:n]

    def batch(self, vocab: dict[str, int], batch_size: int) -> list[list[int]]:
        return [self.document(vocab) for _ in range(batch_size)]


def corpus_vocab(n_sample_sentences: int = 50_000, seed: int = 12345) -> dict[str, int]:
    """The offline tokenizer's vocabulary: pieces of a large corpus sample plus every task
    word (held-out ones included), all centuries and all two-digit numbers."""
    gen = CorpusGenerator(seed)
    texts = [gen.sentence() for _ in range(n_sample_sentences)]
    # every frame of every task, held-out ones included, must be encodable
    texts += greater_than.frames("all") + sva.frames("all") + ioi.frames("all")
    texts += [" " + t for t in texts]  # sentence-initial words also occur after a space
    words: list[str] = []
    words += NAMES.all + IOI_PLACES.all + IOI_OBJECTS.all + EVENT_NOUNS.all + ADJECTIVES
    words += [w for pair in SVA_NOUNS.all for w in pair]
    words += [w for pair in SVA_VERBS for w in pair]
    words += list(CAPITALS) + list(CAPITALS.values())
    words += [f"{c}" for c in range(10, 21)] + [f"{y:02d}" for y in range(100)]
    words += [w for comps in SVA_COMPLEMENTS.values() for c in comps for w in c.split()]
    words += list(SINGULAR_DETERMINERS) + list(PLURAL_DETERMINERS)
    return build_vocab(texts, words)
