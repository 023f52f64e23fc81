"""The shipped offline decoders still do what their model cards say (a retrain that breaks a task
fails here), and the current recipe's tokenizer and corpus agree with the task definitions.

* ``tiny-attn-tasks`` (version 6, attention-only; the current recipe): card reproduced, targets,
  attention-only, and the composition evidence (IOI across layers, a name mover fed through its
  query by S-inhibition heads, induction by K-composition) re-measured;
* ``tiny-gpt2-tasks`` (version 2, with MLPs; notebooks 00-03 and 05): the canonical frames the notebooks
  use still work, and the bridge agrees with Hugging Face.
"""

from __future__ import annotations

import json

import pytest
import torch

from tutorial_utils.course.offline_model.corpus import CorpusGenerator, corpus_vocab
from tutorial_utils.course.offline_model.evaluate import evaluate_model
from tutorial_utils.course.offline_model.tokenizer import encode_fast, make_hf_tokenizer, pieces

from tutorial_utils.paths import DATA_DIR

OFFLINE_DIR = DATA_DIR / "models" / "tiny-attn-tasks"
V2_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"


def test_tokenizer_mimics_gpt2_conventions():
    assert pieces(" 1741 to the year 17") == ["Ġ17", "41", "Ġto", "Ġthe", "Ġyear", "Ġ17"]
    assert pieces("When Mary, John.") == ["When", "ĠMary", ",", "ĠJohn", "."]


def test_fast_encoding_equals_the_hf_tokenizer():
    vocab = corpus_vocab()
    tok = make_hf_tokenizer(vocab)
    gen = CorpusGenerator(seed=7)
    for _ in range(200):
        text = gen.sentence()
        assert tok(text, add_special_tokens=False)["input_ids"] == encode_fast(text, vocab)
        assert tok.decode(encode_fast(text, vocab)) == text


def test_corpus_is_seeded_and_has_no_unknown_tokens():
    vocab = corpus_vocab()
    a = CorpusGenerator(seed=1).batch(vocab, 50)
    b = CorpusGenerator(seed=1).batch(vocab, 50)
    assert a == b
    assert all(len(d) == 64 and d[0] == 0 for d in a)
    assert not any(1 in d for d in a)  # <unk> is id 1


def test_name_recall_sentences_hold_one_name_and_predict_it():
    """A name-recall sentence mentions exactly one name and ends with it; its frame is not an
    IOI task frame (so no held-out IOI frame leaks), and its place and object are training ones."""
    from tutorial_utils.course.offline_model.corpus import NAME_RECALL_FRAMES, CorpusConfig
    from tutorial_utils.tasks import ioi
    from tutorial_utils.tasks.vocab import IOI_OBJECTS, IOI_PLACES, NAMES

    vocab = corpus_vocab()
    gen = CorpusGenerator(seed=3, config=CorpusConfig(w_name_recall=1.0))
    names = set(NAMES.all)
    frames = set(ioi.frames("all"))
    for _ in range(300):
        text = gen.name_recall_sentence()
        words = text.rstrip(".").replace(",", " ").split()
        mentioned = [w for w in words if w in names]
        assert len(mentioned) == 2 and mentioned[0] == mentioned[1] == words[-1], text
        assert not any(w in words for w in set(IOI_PLACES.all) - set(IOI_PLACES.train)), text
        assert not any(w in words for w in set(IOI_OBJECTS.all) - set(IOI_OBJECTS.train)), text
        assert 1 not in encode_fast(text, vocab), text
    assert all("{b}" not in f and "{s}" not in f for f in NAME_RECALL_FRAMES)
    assert not frames & set(NAME_RECALL_FRAMES)


def test_shipped_vocab_matches_the_corpus_vocab(hf_offline_model):
    assert hf_offline_model[1].get_vocab() == corpus_vocab()


@pytest.fixture(scope="module")
def hf_offline_model():
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(OFFLINE_DIR), attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(str(OFFLINE_DIR))


#: Targets this model misses (see its model card), with floors that guard against regression.
KNOWN_MISSES = {"greater_than_pd>=0.85": ("greater_than_pd", 0.72),
                "sva_pd>=0.80": ("sva_pd", 0.65), "sva_acc>=0.95": ("sva_acc", 0.82),
                "ioi_acc>=0.90": ("ioi_acc", 0.80)}


def test_shipped_model_reproduces_its_card_and_meets_the_bar(hf_offline_model):
    """Held-out frames, nouns, names and start years, 200 prompts per task as in the card."""
    model, tok = hf_offline_model
    record = json.loads((OFFLINE_DIR / "training_record.json").read_text())
    metrics = evaluate_model(model, tok, n=200, seed=0)
    measured = metrics.as_dict()
    for key, value in record["final_metrics"].items():
        if isinstance(value, float):
            assert abs(measured[key] - value) < 0.02, (key, measured[key], value)
    for target, ok in metrics.meets_bar().items():
        if target in KNOWN_MISSES:
            key, floor = KNOWN_MISSES[target]
            assert measured[key] >= floor, f"{key} regressed to {measured[key]:.3f}"
        else:
            assert ok, f"target {target} missed: {measured}"


#: Floors on the canonical frames (100 prompts, all words): (Greater-Than PD, SVA PD, IOI LD,
#: IOI accuracy). tiny-attn-tasks (version 6) measured 0.87, 0.99, 8.86 and 0.84 (most of its 476 names
#: never occur in IOI training sentences; see its card).
CANONICAL_FLOORS = {"tiny-attn-tasks": (0.80, 0.85, 5.0, 0.75),
                    "tiny-gpt2-tasks": (0.85, 0.9, 4.0, 0.9)}


@pytest.mark.parametrize("name", list(CANONICAL_FLOORS))
def test_canonical_frames_used_by_the_notebooks_work(name):
    """The notebooks use the canonical frames with all words; the models must be strong there."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from tutorial_utils.tasks import accuracy, make_greater_than, make_ioi, make_sva

    path = str(DATA_DIR / "models" / name)
    model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    gt_floor, sva_floor, ioi_floor, ioi_acc = CANONICAL_FLOORS[name]
    with torch.no_grad():
        for ds, floor in ((make_greater_than(tok, n=100), gt_floor), (make_sva(tok, n=100), sva_floor),
                          (make_ioi(tok, n=100), ioi_floor)):
            logits = model(ds.clean_tokens).logits
            assert ds.metric(logits) > floor, (name, ds.name, float(ds.metric(logits)))
            assert accuracy(logits, ds) >= (ioi_acc if ds.name == "ioi" else 0.9), (name, ds.name)
            assert ds.metric(model(ds.corrupted_tokens).logits) < ds.metric(logits) / 2, ds.name


def test_model_card_reports_the_recorded_metrics():
    record = json.loads((OFFLINE_DIR / "training_record.json").read_text())
    card = (OFFLINE_DIR / "README.md").read_text()
    for key in ("greater_than_pd", "sva_pd", "ioi_logit_diff", "facts_top1"):
        assert f"{record['final_metrics'][key]:.2f}" in card, key
    assert f"{record['wall_time_s'] / 60:.0f} min" in card


def test_bridge_and_hf_model_agree(model_with_hooks, hf_offline_model):
    """Compatibility mode changes the weights' parametrisation, not the predictions."""
    hf, _ = hf_offline_model
    model = model_with_hooks
    toks = model.to_tokens("The war lasted from the year 1741 to the year 17")
    with torch.no_grad():
        a = model(toks).log_softmax(-1)
        b = hf(toks).logits.log_softmax(-1)
    assert (a - b).abs().max().item() < 1e-3


def test_the_model_is_attention_only(hf_offline_model):
    """The card says every MLP is exactly zero: check the weights and an MLP output."""
    model, _ = hf_offline_model
    for block in model.transformer.h:
        assert all(float(p.abs().max()) == 0.0 for p in block.mlp.parameters())
        x = torch.randn(2, 5, model.config.n_embd)
        assert float(block.mlp(x).abs().max()) == 0.0


@pytest.fixture(scope="module")
def composition(model_with_hooks):
    from tutorial_utils.course.offline_model.evaluate import composition_evidence

    return composition_evidence(model_with_hooks)


@pytest.fixture(scope="module")
def model_with_hooks():
    from tutorial_utils.models import load_model

    return load_model(str(OFFLINE_DIR), device="cpu", hooks=True, verbose=False)


def test_ioi_circuit_composes_across_layers(composition):
    """Iterative path patching on canonical IOI prompts keeps heads in >= 2 layers and at least
    one head -> head edge into a query, key or value input carrying >= 0.10 of the effect."""
    ioi = composition["ioi"]
    assert len(ioi["layers_with_heads"]) >= 2, ioi["heads"]
    best = max((abs(e["effect"]) for e in ioi["head_to_head_edges"]), default=0.0)
    assert best >= 0.10, ioi["head_to_head_edges"]
    assert any(e["receiver"].rsplit(".", 1)[1] in "qkv" for e in ioi["head_to_head_edges"]
               if abs(e["effect"]) >= 0.10)


def test_ioi_has_a_name_mover_whose_query_reads_the_subject_heads(composition):
    """Wang et al.'s signature, re-measured: the head with the largest direct effect is a name
    mover (attends END -> IO, not to S2, and copies names), and the heads feeding its *query*
    with >= 0.10 of the effect attend END -> S2 (S-inhibition). The copying target of 0.8 is
    missed (0.65, see the card): the floor guards against regression."""
    movers = sorted(composition["ioi"]["name_movers"], key=lambda m: -m["direct_effect"])
    assert movers, "no head has a direct effect on the logit difference"
    nm = movers[0]
    assert nm["direct_effect"] >= 0.3, nm
    assert nm["attention_end_to_io"] >= 0.4 > 0.1 > nm["attention_end_to_s2"], nm
    assert nm["copying_score"] >= 0.55, nm
    into_query = [e for e in composition["ioi"]["head_to_head_edges"]
                  if e["receiver"] == f"{nm['head']}.q" and e["effect"] >= 0.10]
    assert into_query, composition["ioi"]["head_to_head_edges"]
    by_head = {m["head"]: m for m in movers}
    for e in into_query:
        sender = by_head[e["sender"]]  # the S-inhibition heads also act on the logits directly
        assert sender["attention_end_to_s2"] >= 0.5 > sender["attention_end_to_io"], sender


def test_induction_is_k_composition(composition):
    """Only the key path carries the previous-token heads' effect. The 0.5 target is met with the
    two strongest previous-token heads as senders (0.63), not with the thresholded class alone
    (0.41: the role is split, see the card)."""
    eff = composition["induction"]["effect_removed_via"]
    assert eff["k"] >= 0.35, eff
    assert eff["k"] > 10 * max(abs(eff["q"]), abs(eff["v"])), eff
    two = composition["induction"]["effect_removed_via_two_strongest"]
    assert two["k"] >= 0.5, two
    assert two["k"] > 10 * max(abs(two["q"]), abs(two["v"])), two


def test_card_records_the_measured_composition(composition):
    """The composition section of the card is what the code measures now (heads and edges)."""
    record = json.loads((OFFLINE_DIR / "training_record.json").read_text())
    saved = record["composition"]
    assert saved["ioi"]["heads"] == composition["ioi"]["heads"]
    assert saved["induction"]["induction_heads"] == composition["induction"]["induction_heads"]
    assert saved["induction"]["prev_token_heads"] == composition["induction"]["prev_token_heads"]
    for kind, value in composition["induction"]["effect_removed_via"].items():
        assert abs(saved["induction"]["effect_removed_via"][kind] - value) < 0.02


def test_training_defaults_are_the_shipped_run():
    """The card's command (`train --out DIR --seed 0`, defaults) is the recipe that made the
    shipped model: every default equals the recorded configuration."""
    from dataclasses import asdict

    from tutorial_utils.course.offline_model.train import TrainConfig

    record = json.loads((OFFLINE_DIR / "training_record.json").read_text())
    recorded, corpus = record["train_config"], record["corpus_config"]
    # options added after a run was recorded: the corpus configuration it recorded says what
    # that run used (snapshots only saves files and does not change the model)
    added_later = {"ioi_distractor": corpus.get("p_ioi_distractor", 0.0),
                   "name_recall": corpus.get("w_name_recall", 0.0), "w_filler": corpus["w_filler"],
                   "snapshots": False}
    defaults = asdict(TrainConfig())
    for key, value in defaults.items():
        assert recorded.get(key, added_later.get(key)) == value, key
