"""Recurrence for a pretrained decoder (models/recurrence.py) on tiny GPT-2 and Llama models."""

import json
import math

import pandas as pd
import pytest
import torch

from decoding import beam_search, exact_search, greedy_search
from models.errors import ConfigError
from models.recurrence import Recurrent, RecurrentLM
from tests.conftest import VOCAB, brute_mode, tiny_gpt2, tiny_llama
from tests.test_experiments import tiny_model_dir  # noqa: F401  (fixture)

BUILDS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def text(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (n,), generator=g).tolist()


def recurrent(build, seed=0, window=4, gate=None, **kw):
    rec = Recurrent(build(seed).double(), window=window, memory_slots=3, dim=8, heads=2, **kw)
    rec.module.double()
    if gate is not None:
        rec.module.read_gates.data.fill_(gate)
    return rec


@pytest.mark.parametrize("kind", list(BUILDS))
def test_with_the_gates_at_zero_it_is_the_base_on_disjoint_windows(kind):
    rec = recurrent(BUILDS[kind])
    ids = text(14)
    with torch.no_grad():
        got = rec.logits(ids)
        rec.remove()
        plain = torch.cat([rec.model(input_ids=torch.tensor([ids[a: a + 4]])).logits[0] for a in range(0, 14, 4)])
    torch.testing.assert_close(got, plain, atol=0, rtol=0)


def test_the_memory_carries_the_past_once_the_gates_open():
    rec = recurrent(tiny_llama, gate=1.0)
    a, b = text(12, 1), text(12, 2)
    with torch.no_grad():
        first, second = rec.logits(a[:8] + a[8:]), rec.logits(b[:8] + a[8:])
    assert not torch.allclose(first[8:], second[8:])  # the same last window after different pasts
    for carry in (True, False):  # window by window, the same log-probabilities as from all the logits at once
        whole = torch.log_softmax(rec.logits(a, 5, carry=carry)[:-1].double(), dim=-1)
        torch.testing.assert_close(rec.token_logprobs(a, 5, carry=carry),
                                   whole.gather(1, torch.tensor(a[1:])[:, None])[:, 0], rtol=0, atol=1e-12)
    reset_a, reset_b = (rec.logits(t[:8] + a[8:], carry=False) for t in (a, b))
    torch.testing.assert_close(reset_a[8:], reset_b[8:], rtol=0, atol=0)  # no carry-over: the past is gone
    assert not torch.allclose(reset_a[8:], rec.logits(a, memory=False)[8:])  # but the initial memory is read
    assert rec.n_parameters() == sum(p.numel() for p in rec.module.parameters())


def test_gradients_reach_the_module_through_k_windows_with_and_without_checkpoints():
    rec = recurrent(tiny_llama, gate=0.5)
    inputs = torch.tensor([text(12, 3), text(12, 4)])
    targets = torch.full_like(inputs, -100)
    targets[:, 8:] = inputs[:, 8:].flip(1)  # only the third window's targets count
    grads = []
    for checkpoint in (False, True):
        rec.module.zero_grad()
        nll, memory = rec.tbptt(inputs, targets, checkpoint=checkpoint)
        nll.backward()
        grads.append({n: p.grad.clone() for n, p in rec.module.named_parameters()})
        assert not memory.requires_grad and memory.shape == (2, 3, 16)
    assert grads[0]["initial"].abs().sum() > 0  # two windows back from the only loss
    assert grads[0]["write.q.weight"].abs().sum() > 0
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-10, rtol=0)
    assert all(not p.requires_grad for p in rec.model.parameters())


@pytest.mark.parametrize("kind", list(BUILDS))
def test_cached_rows_batch_like_single_rows_and_equal_score_across_windows(kind):
    lm = RecurrentLM(recurrent(BUILDS[kind], gate=0.7, window=3))
    source = (3, 4, 2, 1, 5)  # a window and a bit
    root = lm.start(source)
    states, path = [root], []
    for t in (4, 2, 1, 3, 5, 2):
        states.append(lm.extend(states[-1], torch.tensor([t])))
        path.append(t)
    forced = lm.score(source, path)
    cached = torch.stack([lm.logprobs(s)[0, t] for s, t in zip(states, path, strict=False)])
    torch.testing.assert_close(cached, forced, atol=1e-10, rtol=0)
    rows = [states[0], states[2], states[4], states[5]]  # windows at different fills
    batch = lm.extend(lm.concat(rows), torch.tensor([1, 3, 4, 2]))
    single = [lm.extend(s, torch.tensor([t])) for s, t in zip(rows, (1, 3, 4, 2), strict=True)]
    torch.testing.assert_close(lm.logprobs(batch), torch.cat([lm.logprobs(s) for s in single]), atol=1e-10, rtol=0)
    picked = lm.select(batch, torch.tensor([2, 0]))
    torch.testing.assert_close(lm.logprobs(picked), lm.logprobs(batch)[[2, 0]])
    assert lm.signature()["recurrence"]["window"] == 3


def test_prompts_beyond_the_position_table_and_bounded_cache():
    lm = RecurrentLM(recurrent(tiny_gpt2, gate=0.5, window=5))
    source = tuple(text(45, 5))  # tiny GPT-2 has 32 positions
    seen = []
    extend = lm.extend

    def recording(state, tokens):
        out = extend(state, tokens)
        seen.extend(sum(kv.shape[3] for kv in node.path()) for node in out.nodes)
        assert out.memory.shape[1] == 3
        return out

    lm.extend = recording
    beam = beam_search(lm, source, beam_size=3, max_len=12)
    greedy = greedy_search(lm, source, max_len=12)
    assert seen and max(seen) <= 5
    for hyp in (beam.best, greedy.best):
        assert hyp.logprob == pytest.approx(float(lm.score(source, hyp.token_ids).sum()), abs=1e-8)


@pytest.mark.parametrize("kind,seed", [("gpt2", 0), ("llama", 1)])
def test_exact_search_on_a_recurrent_lm_equals_brute_force(kind, seed):
    lm = RecurrentLM(recurrent(BUILDS[kind], seed, gate=1.0, window=3))
    source = (2, 4, 3, 1)
    for min_len in (0, 2):
        mode, lp = brute_mode(lm, source, 4, min_len)
        res = exact_search(lm, source, max_len=4, min_len=min_len, batch_size=3)
        assert res.certified and res.best.token_ids == mode
        assert res.best.logprob == pytest.approx(lp, abs=1e-5)


def test_bad_settings_are_refused():
    model = tiny_llama(0)
    for kw, message in [({"window": 0}, "window must be an integer >= 1"),
                        ({"window": 4, "memory_slots": 2.5}, "memory_slots must be"),
                        ({"window": 4, "read_layer": 7}, "layers 0..1"),
                        ({"window": 4, "inject_layers": []}, "non-empty"),
                        ({"window": 4, "dim": 6, "heads": 4}, "multiple of heads")]:
        with pytest.raises(ConfigError, match=message):
            Recurrent(model, **kw)


def train_config(model_dir, **kw):
    from experiments import train_recurrence
    from experiments.config import load_config

    return load_config(train_recurrence.TrainRecurrenceConfig, "train_recurrence", overrides={
        "base": str(model_dir), "domains": ["bible", "wikipedia"], "window": 4, "windows": [4, 8],
        "k_windows": 2, "memory_slots": 3, "read_layer": 1, "inject_layers": [0], "dim": 8, "heads": 2,
        "max_steps": 3, "warmup_steps": 1, "eval_every": 2, "dev_tokens": 24} | kw)


def test_train_recurrence_end_to_end_resumes_and_loads(tiny_model_dir, tmp_path):  # noqa: F811
    from experiments import train_recurrence
    from models import load_model
    from models.recurrence import load

    def cfg(**kw):
        return train_config(tiny_model_dir, **kw)

    out = train_recurrence.main(cfg(), tmp_path / "rec", limit=2)
    record = json.loads((out / "recurrence.json").read_text())
    assert record["steps"] == 3 and record["settings"]["window"] == 4 and record["settings"]["inject_layers"] == [0]
    card = (out / "README.md").read_text()
    assert "| recurrent |" in card and "sha256" in card
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) == 1 + 3  # steps 0, 2, 3
    train_recurrence.main(cfg(max_steps=5), tmp_path / "rec", limit=2)  # resumes: two more steps
    assert json.loads((out / "recurrence.json").read_text())["steps"] == 5
    with pytest.raises(Exception, match="different config"):
        train_recurrence.main(cfg(max_steps=6, lr=0.5), tmp_path / "rec", limit=2)
    model, tok, _ = load_model(str(tiny_model_dir))
    rec = load(out, model, tok, window=8)
    assert rec.window == 8 and rec.module.read_gates.abs().sum() > 0  # trained away from the closed gates
    ids = list(tok("in the beginning god created the heaven and the earth")["input_ids"])
    assert rec.logits(ids * 2).shape == (2 * len(ids), model.config.vocab_size)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):  # noqa: F811
    from experiments import train_recurrence

    return train_recurrence.main(train_config(tiny_model_dir, max_steps=2), tmp_path_factory.mktemp("rec"), limit=2)


def test_run_recurrence_end_to_end_same_tokens_for_every_method_and_resumes(trained, tmp_path):
    from experiments import recurrence
    from experiments.config import load_config

    cfg = load_config(recurrence.RecurrenceConfig, "recurrence", overrides={
        "module": str(trained), "domains": ["bible", "wikipedia"], "windows": [4, 8], "context": 20, "pieces": 2,
        "sliding_stride": 2, "sink_tokens": 1, "n_boot": 50})
    run = recurrence.main(cfg, tmp_path / "run")
    rows = pd.DataFrame([json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()])
    names = {m.name for m in recurrence.methods(cfg)}
    assert names == {"full", *(f"{f} W={w}" for w in (4, 8) for f in ("recurrent", "reset", "disjoint",
                                                                      "disjoint+slots", "sliding", "sliding+sink"))}
    assert set(rows["method"]) == names and len(rows) == 2 * 2 * len(names)
    assert rows["tokens"].eq(20 - 8).all()  # every method scores the tokens after the largest window
    state = rows.groupby("method")["state_mb"].first()
    assert state["sliding W=8"] == state["disjoint W=8"] < state["recurrent W=8"] < state["disjoint+slots W=8"]
    table = pd.read_csv(run / "summary.csv")
    pooled = table[table["domain"] == "all"].set_index("method")
    assert pooled.loc["recurrent W=4", "pieces"] == 4 and pd.isna(pooled.loc["sliding+sink W=4", "delta_sliding"])
    assert not pd.isna(pooled.loc["sliding W=4", "delta_sliding"])  # the sinks' own effect
    assert state["sliding+sink W=8"] == state["sliding W=8"] and state["reset W=8"] == state["recurrent W=8"]
    report = (run / "report.md").read_text()
    assert "| all | recurrent W=8 |" in report and "the recurrent model" in report
    assert (run / "figures" / "recurrence_memory.png").is_file() and (run / "figures" / "recurrence_time.png").is_file()
    before = (run / "rows.jsonl").read_text()
    recurrence.main(cfg, tmp_path / "run")
    assert (run / "rows.jsonl").read_text() == before


def test_paired_deltas_are_differences_of_summed_nll_over_tokens():
    from experiments.recurrence import summary

    rows = []
    for piece, (a, b, c) in enumerate([(10.0, 12.0, 9.0), (20.0, 19.0, 18.0), (5.0, 8.0, 4.0)]):
        for method, family, nll in (("recurrent W=4", "recurrent", a), ("sliding+sink W=4", "sliding+sink", b),
                                    ("full", "full", c)):
            rows.append({"domain": "d", "piece": str(piece), "method": method, "family": family,
                         "window": 4 if family != "full" else 16, "tokens": 10, "nll": nll, "read_tokens": 16,
                         "seconds": 1.0, "state_mb": 1.0})
    table = summary(pd.DataFrame(rows), n_boot=200).set_index(["domain", "method"])
    r = table.loc[("d", "recurrent W=4")]
    assert r["delta_sliding"] == pytest.approx((35 - 39) / 30) and r["delta_full"] == pytest.approx((35 - 31) / 30)
    assert r["delta_sliding_lo"] <= r["delta_sliding"] <= r["delta_sliding_hi"]
    assert r["ppl"] == pytest.approx(math.exp(35 / 30))
    assert table.loc[("all", "recurrent W=4"), "pieces"] == 3
