"""Model loading: the choice logic, offline behaviour, hook options, devices, and the
residual-stream decomposition the primer teaches."""

from __future__ import annotations

import time

import pytest
import torch

from tutorial_utils import models
from tutorial_utils.models import get_device, load_model, resolve_model_name


@pytest.fixture
def no_env(monkeypatch):
    for var in (models.MODEL_ENV, models.ENCODER_ENV, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_choice_order(no_env, tmp_path):
    assert resolve_model_name("gpt2") == ("gpt2", "asked for explicitly")
    no_env.setenv(models.MODEL_ENV, "tiny-gpt2-tasks")
    assert resolve_model_name(None) == ("tiny-gpt2-tasks", "from $TUTORIAL_MODEL")
    assert resolve_model_name("gpt2")[0] == "gpt2"  # an explicit argument beats the variable
    no_env.delenv(models.MODEL_ENV)
    no_env.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_name(None) == ("tiny-gpt2-tasks", "HF_HUB_OFFLINE is set")
    assert resolve_model_name(None, "encoder")[0] == "minilm-l6"
    no_env.delenv("HF_HUB_OFFLINE")
    no_env.setattr(models, "hub_reachable", lambda timeout=2.0: True)
    assert resolve_model_name(None) == ("gpt2", "the Hugging Face hub answered")
    assert resolve_model_name(None, "encoder")[0] == "bert-base-uncased"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_name(str(tmp_path))[0] == str(tmp_path)


def test_unknown_names_list_the_valid_ones(no_env):
    with pytest.raises(ValueError, match=r"unknown decoder 'gpt3'.*'gpt2', 'tiny-attn-tasks', 'tiny-gpt2-tasks'"):
        resolve_model_name("gpt3")
    with pytest.raises(ValueError, match="'minilm-l6' is an encoder: use load_encoder"):
        load_model("minilm-l6")
    with pytest.raises(ValueError, match="unknown hook options"):
        load_model("offline", hooks={"attn_results": True}, verbose=False)


def test_hub_check_never_hangs(no_env):
    t0 = time.time()
    reachable = models.hub_reachable(timeout=2.0)
    assert time.time() - t0 < 5.0
    assert reachable in (True, False)


def test_offline_load_is_fast_and_says_why(no_env, capsys):
    no_env.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    model = load_model(device="cpu")
    elapsed = time.time() - t0
    out = capsys.readouterr().out.strip().splitlines()
    assert elapsed < 10, f"offline load took {elapsed:.1f}s"
    assert len(out) == 1 and "tiny-gpt2-tasks" in out[0] and "HF_HUB_OFFLINE" in out[0]
    assert model.cfg.n_layers == 4 and not model.training


def test_device_is_never_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_seed_everything_repeats_draws():
    models.seed_everything(3)
    a = torch.rand(3)
    models.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_hook_options(hooked_model, model):
    for name in ("blocks.0.attn.hook_result", "blocks.1.hook_q_input", "blocks.2.hook_mlp_in"):
        assert name in hooked_model.hook_dict, name
    _, cache = hooked_model.run_with_cache(hooked_model.to_tokens("The war lasted"))
    assert cache["blocks.0.attn.hook_result"].shape[-2:] == (4, 128)


def test_to_tokens_prepends_bos_once(model):
    toks = model.to_tokens("When Mary and John went to the store")
    assert toks[0, 0].item() == model.tokenizer.bos_token_id
    assert (toks[0, 1:] != model.tokenizer.bos_token_id).all()


def test_residual_stream_is_the_sum_of_its_writers(model):
    """x_L = x_0 + sum_l attn_out_l + sum_l mlp_out_l (the primer's central identity)."""
    toks = model.to_tokens("The keys on the cabinet are old. When Mary and John went to the")
    _, cache = model.run_with_cache(toks)
    L = model.cfg.n_layers
    x0 = cache["hook_embed"] + cache["hook_pos_embed"]
    total = x0 + sum(cache[f"blocks.{l}.hook_attn_out"] + cache[f"blocks.{l}.hook_mlp_out"]
                     for l in range(L))
    final = cache[f"blocks.{L - 1}.hook_resid_post"]
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], x0, atol=1e-5)
    assert (total - final).abs().max().item() < 1e-4


def test_encoder_loads_offline_and_tasks_refuse_it(no_env):
    from tutorial_utils.models import load_encoder
    from tutorial_utils.tasks import make_sva

    enc = load_encoder("offline", device="cpu", verbose=False)
    from tutorial_utils.model_checks import is_encoder
    assert is_encoder(enc) and enc.cfg.n_layers == 6
    with pytest.raises(ValueError, match="needs a causal decoder"):
        make_sva(enc, n=2)


def test_course_model_is_the_shipped_one_unless_asked_otherwise(monkeypatch, capsys):
    """Notebooks load the shipped model whatever the network; $TUTORIAL_MODEL=offline (CI) or
    unset gives it silently; another explicit model runs with a banner."""
    from tutorial_utils import models

    calls = []
    monkeypatch.setattr(models, "load_model", lambda name, **kw: calls.append(name) or name)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: True)  # online: still shipped
    for value in (None, "offline", "tiny-gpt2-tasks"):
        if value is None:
            monkeypatch.delenv(models.MODEL_ENV, raising=False)
        else:
            monkeypatch.setenv(models.MODEL_ENV, value)
        assert models.load_course_model("tiny-gpt2-tasks") == "tiny-gpt2-tasks"
        assert "NOTE" not in capsys.readouterr().out
    monkeypatch.setenv(models.MODEL_ENV, "gpt2")
    assert models.load_course_model("tiny-gpt2-tasks") == "gpt2"
    out = capsys.readouterr().out
    assert "running on 'gpt2'" in out and "tiny-gpt2-tasks" in out
    with pytest.raises(ValueError, match="offline decoder"):
        models.load_course_model("gpt2")
