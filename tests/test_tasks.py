"""Task datasets: tokenisation properties under both tokenizers, metrics on hand-made logits,
and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.tasks import (TaskBuildError, make_facts, make_greater_than, make_ioi,
                                  make_sva, make_task, task_metric)
from tutorial_utils.tasks import greater_than, ioi, sva
from tutorial_utils.tasks.base import assemble, single_token_id
from tutorial_utils.tasks.vocab import (CAPITALS, EVENT_NOUNS, IOI_OBJECTS, IOI_PLACES, NAMES,
                                        SVA_NOUNS, SVA_VERBS)

TOKENIZERS = ["gpt2_tokenizer", "offline_tokenizer"]


def test_gpt2_tokenizer_is_the_real_one(gpt2_tokenizer):
    assert len(gpt2_tokenizer) == 50257
    assert gpt2_tokenizer.tokenize(" 1741") == ["Ġ17", "41"]
    assert gpt2_tokenizer.bos_token_id == 50256
    # a known GPT-2 encoding: "Hello world" -> [15496, 995]
    assert gpt2_tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_every_task_word_is_one_token(tok_name, request):
    tok = request.getfixturevalue(tok_name)
    words = (list(NAMES.all) + list(IOI_PLACES.all) + list(IOI_OBJECTS.all)
             + list(EVENT_NOUNS.all) + [w for p in SVA_NOUNS.all for w in p]
             + [w for p in SVA_VERBS for w in p] + list(CAPITALS) + list(CAPITALS.values()))
    for w in words:
        single_token_id(tok, " " + w)  # raises TaskBuildError naming the word otherwise


@pytest.mark.parametrize("tok_name", TOKENIZERS)
@pytest.mark.parametrize("split", ["canonical", "train", "heldout"])
def test_task_pairs_have_equal_length_and_single_token_answers(tok_name, split, request):
    tok = request.getfixturevalue(tok_name)
    for ds in (make_greater_than(tok, n=60, frames_split=split),
               make_sva(tok, n=60, frames_split=split),
               make_ioi(tok, n=60, frames_split=split)):
        assert ds.clean_tokens.shape == ds.corrupted_tokens.shape
        for i in range(len(ds)):
            T = int(ds.answer_pos[i]) + 1
            clean = tok(ds.clean_prompts[i], add_special_tokens=False)["input_ids"]
            corr = tok(ds.corrupted_prompts[i], add_special_tokens=False)["input_ids"]
            assert len(clean) == len(corr) == T - 1, ds.clean_prompts[i]
            assert ds.clean_tokens[i, 1:T].tolist() == clean
            # the pair differs, and only in a few tokens (the cue)
            diff = (ds.clean_tokens[i] != ds.corrupted_tokens[i]).sum().item()
            assert 1 <= diff <= 2, (ds.clean_prompts[i], ds.corrupted_prompts[i])
        assert (ds.candidate_sign != 0).any(dim=1).all()
    facts = make_facts(tok)
    assert facts.is_aligned and len(facts) == len(CAPITALS)


def test_canonical_prompts_read_as_in_the_papers(gpt2_tokenizer):
    gt = make_greater_than(gpt2_tokenizer, n=5, seed=1)
    assert gt.clean_prompts[0].startswith("The ") and " lasted from the year " in gt.clean_prompts[0]
    cc, yy = gt.meta["cc"][0], gt.meta["yy"][0]
    assert gt.clean_prompts[0].endswith(f"{cc}{yy:02d} to the year {cc}")
    assert gt.corrupted_prompts[0].endswith(f"{cc}01 to the year {cc}")
    io = make_ioi(gpt2_tokenizer, n=2, order="ABBA")
    m = io.meta
    assert io.clean_prompts[0] == (f"When {m['io'][0]} and {m['s'][0]} went to the "
                                   f"{io.clean_prompts[0].split('the ')[1].split(',')[0]}, "
                                   f"{m['s'][0]} gave a {io.clean_prompts[0].split('a ')[-1]}")
    assert io.corrupted_prompts[0].split(", ")[1].startswith(m["c"][0])
    s = make_sva(gpt2_tokenizer, n=4)
    for p, plural in zip(s.clean_prompts, s.meta["plural"]):
        assert p.startswith("The ") and " on the " in p
        subj = p.split()[1]
        assert (subj in [pl for _, pl in SVA_NOUNS.all]) == plural


def test_heldout_frames_and_words_are_disjoint_from_training():
    for mod in (greater_than, sva, ioi):
        assert not set(mod.frames("heldout")) & set(mod.frames("train"))
    assert greater_than.CANONICAL_FRAME in greater_than.frames("heldout")
    assert ioi.CANONICAL_FRAME in ioi.frames("heldout")
    for split in (NAMES, EVENT_NOUNS, SVA_NOUNS, IOI_PLACES, IOI_OBJECTS):
        assert not set(split.train) & set(split.heldout)


def test_gpt2_years_that_do_not_split_are_skipped(gpt2_tokenizer):
    # GPT-2 writes " 1800" and " 1830" as other pieces; the 18th century keeps only clean splits
    ds = make_greater_than(gpt2_tokenizer, n=200, centuries=(18,))
    assert 30 not in ds.meta["yy"] and 40 not in ds.meta["yy"]
    with pytest.raises(TaskBuildError, match="no start year"):
        make_greater_than(gpt2_tokenizer, n=5, centuries=(19,))


# --- metrics on hand-made logits ---------------------------------------------------------
def _logits_with_mass_on(ds, token_ids_per_example, V):
    logits = torch.full((len(ds), ds.seq_len, V), -1e4)
    for b, ids in enumerate(token_ids_per_example):
        logits[b, int(ds.answer_pos[b]), ids] = 0.0
    return logits


def test_greater_than_metric_on_hand_made_logits(gpt2_tokenizer):
    ds = make_greater_than(gpt2_tokenizer, n=4, seed=3)
    V = len(gpt2_tokenizer)
    year = greater_than.year_token_ids(gpt2_tokenizer)
    above = _logits_with_mass_on(ds, [[year[min(99, yy + 1)]] for yy in ds.meta["yy"]], V)
    below = _logits_with_mass_on(ds, [[year[yy]] for yy in ds.meta["yy"]], V)
    uniform = _logits_with_mass_on(ds, [year] * len(ds), V)
    assert torch.allclose(ds.metric(above, per_example=True), torch.ones(4), atol=1e-5)
    assert torch.allclose(ds.metric(below, per_example=True), -torch.ones(4), atol=1e-5)
    expected = torch.tensor([((99 - yy) - (yy + 1)) / 100 for yy in ds.meta["yy"]])
    assert torch.allclose(task_metric(uniform, ds)[0], expected, atol=1e-5)
    # logits already taken at the answer position give the same numbers
    at_pos = uniform[torch.arange(4), ds.answer_pos]
    assert torch.allclose(ds.metric(at_pos), expected.mean(), atol=1e-6)


def test_sva_and_ioi_metrics_on_hand_made_logits(gpt2_tokenizer):
    V = len(gpt2_tokenizer)
    ds = make_sva(gpt2_tokenizer, n=6, seed=2)
    are, is_ = (single_token_id(gpt2_tokenizer, " are"), single_token_id(gpt2_tokenizer, " is"))
    agree = _logits_with_mass_on(ds, [[are] if p else [is_] for p in ds.meta["plural"]], V)
    half = _logits_with_mass_on(ds, [[are, is_]] * 6, V)
    assert torch.allclose(ds.metric(agree, per_example=True), torch.ones(6), atol=1e-5)
    assert torch.allclose(ds.metric(half, per_example=True), torch.zeros(6), atol=1e-5)

    io = make_ioi(gpt2_tokenizer, n=3)
    logits = torch.zeros(3, io.seq_len, V)
    for b in range(3):
        logits[b, int(io.answer_pos[b]), io.candidate_ids[b, 0]] = 3.0
        logits[b, int(io.answer_pos[b]), io.candidate_ids[b, 1]] = 1.0 + b
    assert torch.allclose(io.metric(logits, per_example=True), torch.tensor([2.0, 1.0, 0.0]))
    # a stack of two runs along the batch is scored run by run (task_metric), and refused by
    # the one-run dataset.metric
    stacked = torch.cat([logits, -logits])
    assert task_metric(stacked, io).shape == (2, 3)
    assert torch.allclose(task_metric(stacked, io).mean(1), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="stacked"):
        io.metric(stacked)


# --- bad input ---------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(gpt2_tokenizer):
    with pytest.raises(TaskBuildError, match="Nairobi.*not a single token"):
        single_token_id(gpt2_tokenizer, " Nairobi", "a test")
    with pytest.raises(TaskBuildError, match="example 1: clean and corrupted prompts differ"):
        assemble(gpt2_tokenizer, "t", "logit_diff", ["a b", "The war"], ["a c", "The Nairobi"],
                 [[1], [1]], [[1.0], [1.0]], ["x", "y"], {})
    with pytest.raises(ValueError, match="unknown task 'gt'.*greater_than"):
        make_task("gt", gpt2_tokenizer)
    with pytest.raises(ValueError, match="frames must be"):
        make_ioi(gpt2_tokenizer, frames_split="weird")
    with pytest.raises(ValueError, match="split must be"):
        make_sva(gpt2_tokenizer, nouns="test")
    ds = make_ioi(gpt2_tokenizer, n=3)
    with pytest.raises(ValueError, match="not a multiple of the dataset size 3"):
        task_metric(torch.zeros(4, ds.seq_len, 10), ds)


def test_csv_export_round_trips(tmp_path, gpt2_tokenizer):
    import csv

    ds = make_greater_than(gpt2_tokenizer, n=5)
    ds.to_csv(tmp_path / "gt.csv")
    rows = list(csv.DictReader(open(tmp_path / "gt.csv")))
    assert [r["clean_prompt"] for r in rows] == ds.clean_prompts
    assert [int(r["yy"]) for r in rows] == ds.meta["yy"]


def test_shipped_csvs_are_up_to_date(tmp_path, gpt2_tokenizer, offline_tokenizer):
    from tutorial_utils.tasks.export import TASK_DIR, export_all

    fresh = export_all(tmp_path, {"gpt2": gpt2_tokenizer, "offline": offline_tokenizer})
    for path in fresh:
        shipped = TASK_DIR / path.name
        assert shipped.exists(), f"{shipped} missing: run python -m tutorial_utils.tasks.export"
        assert shipped.read_text() == path.read_text(), f"{shipped} is stale"


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_ioi_corruptions_change_exactly_the_names_they_name(tok_name, request):
    """s2: only S2 changes; io: only IO's intro mention changes; abc: IO, S1 and S2 all change,
    to three names distinct from each other and from the clean ones. Prompts align token by
    token (single-token names) and the candidates stay the clean IO and S."""
    tok = request.getfixturevalue(tok_name)
    n = 40
    for corruption, changed in (("s2", {"S2"}), ("io", {"IO"}), ("abc", {"IO", "S1", "S2"})):
        ds = make_ioi(tok, n=n, corruption=corruption, seed=4)
        assert ds.clean_tokens.shape == ds.corrupted_tokens.shape
        assert set(ds.meta["corruption"]) == {corruption}
        for i in range(n):
            clean = tok.convert_ids_to_tokens(ds.clean_tokens[i].tolist())
            corr = tok.convert_ids_to_tokens(ds.corrupted_tokens[i].tolist())
            io, s = "Ġ" + ds.meta["io"][i], "Ġ" + ds.meta["s"][i]
            roles = {"IO": [j for j, t in enumerate(clean) if t == io]}
            s_pos = [j for j, t in enumerate(clean) if t == s]
            roles["S1"], roles["S2"] = s_pos[:1], s_pos[1:]
            diff = {j for j, (a, b) in enumerate(zip(clean, corr)) if a != b}
            expected = {j for r in changed for j in roles[r]}
            assert diff == expected, (corruption, ds.clean_prompts[i], ds.corrupted_prompts[i])
            new_names = {corr[j] for j in diff}
            assert len(new_names) == len(changed) and not new_names & {io, s}, corr
        assert torch.equal(ds.candidate_ids[:, 0], make_ioi(tok, n=n, seed=4).candidate_ids[:, 0]) \
            or corruption == "abc"  # abc draws two more names per prompt, so its stream differs


def test_ioi_default_corruption_is_s2_and_bad_corruptions_are_refused(gpt2_tokenizer):
    a, b = make_ioi(gpt2_tokenizer, n=6, seed=2), make_ioi(gpt2_tokenizer, n=6, seed=2,
                                                           corruption="s2")
    assert a.corrupted_prompts == b.corrupted_prompts
    with pytest.raises(ValueError, match="corruption must be s2, abc or io"):
        make_ioi(gpt2_tokenizer, n=2, corruption="ABC")


def test_export_cli_help_writes_nothing(tmp_path, monkeypatch, capsys):
    """``--help`` prints usage and exits 0 before any file is written (it once re-exported every
    shipped CSV)."""
    from tutorial_utils.tasks import export

    called = []
    monkeypatch.setattr(export, "export_all", lambda *a, **k: called.append(a) or [])
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--help"])
    assert exit_info.value.code == 0 and "--out-dir" in capsys.readouterr().out
    assert not called
    export.main(["--out-dir", str(tmp_path / "csv")])
    assert called and called[0][0] == tmp_path / "csv"
