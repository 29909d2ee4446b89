"""Learned attribute classifiers q_phi(A | x, y<=t) for conditional beam search (DESIGN.md §4).

As in FUDGE (Yang & Klein 2021) and "MAP's not dead yet" (Yoshida et al. 2024), a small head reads the frozen
model's final hidden state after a prefix and gives, like an LM head, one logit of "the finished output will have
A" for every candidate next token, so one call scores all extensions of all beams. Length attributes also get
the remaining length (to the attribute's allowed length range) as an input.

Training data (``collect``) are ancestral samples of the model's own p(y | x), not references: the target is the
model's conditional. Each sample is labelled by the attribute (an output unfinished after ``max_len`` tokens
lacks it, as in the search) and contributes one row per prefix position. The head is trained with binary
cross-entropy at every position, on a split by source (``train_classifier``), which reports held-out loss,
accuracy by prefix position and calibration: a reliability table and the expected calibration error (ECE,
Guo et al. 2017, "On calibration of modern neural networks"). A trained classifier is saved in the cache, in
``$LQ_CACHE/classifiers/<model>/<attribute name>/<settings hash>/`` (``classifier_folder`` names the folder of the
model and attribute; the experiment that trains it adds the hash of its training settings, see
``experiments.conditional``).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.attributes import Attribute, source_content
from decoding.protocol import HiddenStates, LanguageModel, as_ids
from decoding.sampling import sample
from decoding.types import SearchInputError

__all__ = [
    "AttributeHead", "ClassifierData", "ClassifierMetrics", "HiddenStateClassifier", "classifier_folder", "collect",
    "expected_calibration_error", "load_classifier", "reliability", "save_classifier", "train_classifier",
]

FREE = -(2 ** 31)
"""``remaining`` value of an attribute without a length range."""


def remaining_lengths(attribute: Attribute, source: tuple[int, ...], prefix_lengths: Sequence[int]) -> Tensor:
    """(n, 2) long: lo - (t + 1) and hi - (t + 1) for a prefix of t tokens extended by one, with (lo, hi) the
    attribute's allowed length range for ``source`` (content ids); ``FREE`` when it has none."""
    bounds = attribute.length_range(source)
    if bounds is None:
        return torch.full((len(prefix_lengths), 2), FREE, dtype=torch.long)
    t1 = torch.tensor(prefix_lengths, dtype=torch.long)[:, None] + 1
    return torch.tensor(bounds, dtype=torch.long)[None] - t1


class AttributeHead(nn.Module):
    """hidden (n, d) and remaining lengths (n, 2) -> (n, V) logits of A per next token.

    LayerNorm, plus one embedding per remaining-length bound (clipped to [-2, max_remaining]: below -2 every
    extension is too long; ``FREE`` has its own entry), then a GELU layer and a linear map to the vocabulary. The
    output weights start at zero and the bias at logit(``prior``), so an untrained head predicts the prior."""

    def __init__(self, d_model: int, vocab_size: int, *, width: int = 256, max_remaining: int = 64,
                 prior: float = 0.5):
        super().__init__()
        if not 0 < prior < 1:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        self.config = {"d_model": d_model, "vocab_size": vocab_size, "width": width, "max_remaining": max_remaining,
                       "prior": prior}
        self.max_remaining = max_remaining
        self.norm = nn.LayerNorm(d_model)
        self.lo = nn.Embedding(max_remaining + 4, d_model)
        self.hi = nn.Embedding(max_remaining + 4, d_model)
        for emb in (self.lo, self.hi):
            nn.init.normal_(emb.weight, std=0.1)
        self.mlp = nn.Sequential(nn.Linear(d_model, width), nn.GELU())
        self.out = nn.Linear(width, vocab_size)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, math.log(prior / (1 - prior)))

    def features(self, hidden: Tensor, remaining: Tensor) -> Tensor:
        """(n, width)."""
        idx = torch.where(remaining == FREE, self.max_remaining + 3, remaining.clamp(-2, self.max_remaining) + 2)
        x = self.norm(hidden) + self.lo(idx[:, 0]) + self.hi(idx[:, 1])
        return self.mlp(x)

    def forward(self, hidden: Tensor, remaining: Tensor) -> Tensor:
        return self.out(self.features(hidden, remaining))  # (n, V)

    def logit_of(self, hidden: Tensor, remaining: Tensor, token: Tensor) -> Tensor:
        """(n,) the logit of each row's ``token`` only: training needs one column, not V."""
        return (self.features(hidden, remaining) * self.out.weight[token]).sum(-1) + self.out.bias[token]


@dataclass
class HiddenStateClassifier:
    """The ``decoding.Classifier`` protocol on a HiddenStates adapter (``lm.hidden``): log sigmoid of the head.
    ``model`` is the signature of the model whose hidden states it was trained on."""

    head: AttributeHead
    attribute: Attribute
    model: dict[str, Any] = field(default_factory=dict)

    def log_q(self, lm: LanguageModel, state: Any, source: tuple[int, ...],
              prefixes: Sequence[tuple[int, ...]]) -> Tensor:
        hidden = _hidden(lm, state)
        shape = (self.head.config["vocab_size"], self.head.config["d_model"])
        if shape != (lm.vocab_size, hidden.shape[1]):
            raise SearchInputError(f"the classifier was trained on a model with {shape[0]} tokens and hidden size "
                                   f"{shape[1]} ({self.model.get('model', 'unknown')}); this model has "
                                   f"{lm.vocab_size} and {hidden.shape[1]}: train one for it (`lq train classifier`)")
        device = self.head.out.weight.device
        remaining = remaining_lengths(self.attribute, source_content(source, lm.eos_id), [len(p) for p in prefixes])
        with torch.inference_mode():
            return F.logsigmoid(self.head(hidden.to(device, torch.float32), remaining.to(device)))


def _hidden(lm: LanguageModel, state: Any) -> Tensor:
    if not isinstance(lm, HiddenStates):
        raise SearchInputError(f"{type(lm).__name__} exposes no hidden states (lm.hidden); a learned attribute "
                               "classifier needs an adapter that does, such as HFCausalLM or HFSeq2SeqLM")
    return lm.hidden(state)


@dataclass
class ClassifierData:
    """One row per (sample, prefix position t): the hidden state after the sample's first t tokens, the next
    token, and the sample's label. ``model`` is the sampled model's signature."""

    hidden: Tensor  # (N, d) float32
    token: Tensor  # (N,) long: the token that followed the prefix
    label: Tensor  # (N,) bool: the finished sample has the attribute
    position: Tensor  # (N,) long: t, the prefix length
    remaining: Tensor  # (N, 2) long: see remaining_lengths
    source_index: Tensor  # (N,) long: which source, for the held-out split
    sample_index: Tensor  # (N,) long: which sample (numbered across sources)
    vocab_size: int
    attribute: str
    model: dict[str, Any]

    def __len__(self) -> int:
        return len(self.token)


def collect(lm: LanguageModel, sources: Sequence[Sequence[int]], attribute: Attribute, *, n_samples: int,
            max_len: int, seed: int = 0, progress: bool = True) -> ClassifierData:
    """``n_samples`` ancestral samples (temperature 1, no truncation) per source, labelled by ``attribute``, with
    the hidden state at every prefix position. The hidden states come from a second, teacher-forced pass along
    the samples through the protocol (``start`` / ``extend``), batched over a source's samples."""
    from tqdm import tqdm

    seeds = np.random.default_rng(seed).integers(2 ** 31, size=len(sources)).tolist()
    keys = ("hidden", "token", "label", "position", "remaining", "source", "sample")
    rows: dict[str, list[Tensor]] = {k: [] for k in keys}
    for i, source_ids in enumerate(tqdm(sources, desc=f"sampling for {attribute.name}", disable=not progress)):
        source = as_ids(source_ids)
        content = source_content(source, lm.eos_id)
        outputs = [h.token_ids for h in sample(lm, source, n=n_samples, max_len=max_len, seed=seeds[i]).hypotheses]
        labels = [y[-1] == lm.eos_id and attribute(y[:-1], content) for y in outputs]
        live = list(range(n_samples))
        state = lm.select(lm.start(source), torch.zeros(n_samples, dtype=torch.long))
        for t in range(max_len + 1):
            tokens = torch.tensor([outputs[j][t] for j in live])
            rows["hidden"].append(_hidden(lm, state).float().cpu())
            rows["token"].append(tokens)
            rows["label"].append(torch.tensor([labels[j] for j in live]))
            rows["position"].append(torch.full((len(live),), t))
            rows["remaining"].append(remaining_lengths(attribute, content, [t] * len(live)))
            rows["source"].append(torch.full((len(live),), i))
            rows["sample"].append(torch.tensor(live) + i * n_samples)
            more = [k for k, j in enumerate(live) if len(outputs[j]) > t + 1]
            if not more:
                break
            live = [live[k] for k in more]
            state = lm.extend(lm.select(state, torch.tensor(more)), tokens[more])
    cat = {k: torch.cat(v) for k, v in rows.items()}
    return ClassifierData(cat["hidden"], cat["token"], cat["label"], cat["position"], cat["remaining"],
                          cat["source"], cat["sample"], lm.vocab_size, attribute.name, lm.signature())


@dataclass
class ClassifierMetrics:
    """Held-out evaluation of a trained head: ``loss`` (mean binary cross-entropy, nats), ``accuracy``
    (q >= 0.5), ``ece``; tables ``history`` (epoch, train_loss, held_out_loss), ``by_position`` (position, n,
    accuracy, mean_q, positive_rate, loss) and ``reliability`` (see ``reliability``)."""

    loss: float
    accuracy: float
    ece: float
    n_train: int
    n_held_out: int
    best_epoch: int
    history: pd.DataFrame
    by_position: pd.DataFrame
    reliability: pd.DataFrame

    def summary(self) -> dict[str, float | int]:
        return {"loss": self.loss, "accuracy": self.accuracy, "ece": self.ece, "n_train": self.n_train,
                "n_held_out": self.n_held_out, "best_epoch": self.best_epoch}


def reliability(q: np.ndarray, label: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """One row per equal-width bin of predicted probability: bin, lo, hi, n, mean_q, positive_rate (NaN when
    empty)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(q, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append({"bin": b, "lo": edges[b], "hi": edges[b + 1], "n": n,
                     "mean_q": float(q[inside].mean()) if n else math.nan,
                     "positive_rate": float(label[inside].mean()) if n else math.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """sum over bins of n_b / N * |mean_q - positive_rate| (Guo et al. 2017), from a ``reliability`` table."""
    full = table[table["n"] > 0]
    return float((full["n"] * (full["mean_q"] - full["positive_rate"]).abs()).sum() / full["n"].sum())


def train_classifier(data: ClassifierData, attribute: Attribute, *, held_out: float = 0.2, epochs: int = 20,
                     batch_size: int = 1024, lr: float = 1e-3, weight_decay: float = 0.01, width: int = 256,
                     max_remaining: int = 64, seed: int = 0,
                     progress: bool = True) -> tuple[HiddenStateClassifier, ClassifierMetrics]:
    """Train a head on ``data`` with a ``held_out`` share of its sources kept apart; the epoch with the lowest
    held-out loss is kept."""
    from tqdm import tqdm

    if attribute.name != data.attribute:
        raise ValueError(f"the data are labelled by {data.attribute!r}, not {attribute.name!r}")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")
    sources = data.source_index.unique()
    if len(sources) < 2:
        raise ValueError("a held-out split by source needs data from at least 2 sources")
    gen = torch.Generator().manual_seed(seed)
    n_held = min(len(sources) - 1, max(1, round(held_out * len(sources))))
    held_sources = sources[torch.randperm(len(sources), generator=gen)[:n_held]]
    held = torch.isin(data.source_index, held_sources)
    train_rows, held_rows = (~held).nonzero()[:, 0], held.nonzero()[:, 0]
    label = data.label.float()
    prior = float(label[train_rows].mean().clamp(1e-3, 1 - 1e-3))
    head = AttributeHead(data.hidden.shape[1], data.vocab_size, width=width, max_remaining=max_remaining,
                         prior=prior)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)

    def held_loss() -> float:
        z = _logits(head, data, held_rows, batch_size)
        return float(F.binary_cross_entropy_with_logits(z, label[held_rows]))

    best = (held_loss(), 0, copy.deepcopy(head.state_dict()))
    history = []
    bar = tqdm(range(1, epochs + 1), desc=f"training {attribute.name}", disable=not progress)
    for epoch in bar:
        total = 0.0
        for batch in train_rows[torch.randperm(len(train_rows), generator=gen)].split(batch_size):
            z = head.logit_of(data.hidden[batch], data.remaining[batch], data.token[batch])
            loss = F.binary_cross_entropy_with_logits(z, label[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        history.append({"epoch": epoch, "train_loss": total / len(train_rows), "held_out_loss": held_loss()})
        bar.set_postfix(train=f"{history[-1]['train_loss']:.4f}", held_out=f"{history[-1]['held_out_loss']:.4f}")
        if history[-1]["held_out_loss"] < best[0]:
            best = (history[-1]["held_out_loss"], epoch, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    metrics = _evaluate(head, data, held_rows, len(train_rows), best[1], pd.DataFrame(history), batch_size)
    return HiddenStateClassifier(head.eval(), attribute, data.model), metrics


def _logits(head: AttributeHead, data: ClassifierData, rows: Tensor, batch_size: int) -> Tensor:
    """(len(rows),) logits of the rows' own next tokens, in batches (a (N, width) activation may not fit)."""
    with torch.no_grad():
        return torch.cat([head.logit_of(data.hidden[b], data.remaining[b], data.token[b])
                          for b in rows.split(batch_size)])


def _evaluate(head: AttributeHead, data: ClassifierData, rows: Tensor, n_train: int, best_epoch: int,
              history: pd.DataFrame, batch_size: int) -> ClassifierMetrics:
    z = _logits(head, data, rows, batch_size)
    y = data.label[rows].float()
    nll = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    frame = pd.DataFrame({"position": data.position[rows].numpy(), "q": torch.sigmoid(z).numpy(),
                          "label": y.numpy(), "loss": nll.numpy()})
    frame["correct"] = (frame["q"] >= 0.5) == (frame["label"] == 1)
    by_position = frame.groupby("position").agg(
        n=("q", "size"), accuracy=("correct", "mean"), mean_q=("q", "mean"), positive_rate=("label", "mean"),
        loss=("loss", "mean")).reset_index()
    table = reliability(frame["q"].to_numpy(), frame["label"].to_numpy())
    return ClassifierMetrics(float(frame["loss"].mean()), float(frame["correct"].mean()),
                             expected_calibration_error(table), n_train, len(rows), best_epoch, history,
                             by_position, table)


def classifier_folder(model: str, attribute: Attribute) -> Path:
    """Where the classifier of ``attribute`` for the model named ``model`` (a registry name or a folder) is kept:
    ``$LQ_CACHE/classifiers/<model>/<attribute name>/``."""
    from models.registry import cache_dir

    return cache_dir() / "classifiers" / model.strip("/").replace("/", "_") / attribute.name


def save_classifier(classifier: HiddenStateClassifier, folder: str | Path,
                    metrics: ClassifierMetrics | None = None) -> Path:
    """Write ``head.safetensors`` and ``config.json`` (head config, attribute, model signature, metrics), plus the
    metric tables as CSV, into ``folder`` (e.g. ``classifier_folder(model, attribute)``); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()},
              str(folder / "head.safetensors"))
    config = {"attribute": classifier.attribute.name, "head": classifier.head.config, "model": classifier.model,
              "metrics": metrics.summary() if metrics is not None else None}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if metrics is not None:
        for name in ("history", "by_position", "reliability"):
            getattr(metrics, name).to_csv(folder / f"{name}.csv", index=False)
    return folder


def load_classifier(folder: str | Path, attribute: Attribute, *, device: str = "cpu") -> HiddenStateClassifier:
    """The classifier ``save_classifier`` wrote into ``folder``; it must predict ``attribute``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no classifier in {folder}; train one first (`lq train classifier`)")
    config = json.loads((folder / "config.json").read_text())
    if config["attribute"] != attribute.name:
        raise ValueError(f"the classifier in {folder} predicts {config['attribute']!r}, not {attribute.name!r}")
    head_config = dict(config["head"])
    head = AttributeHead(head_config.pop("d_model"), head_config.pop("vocab_size"), **head_config)
    head.load_state_dict(load_file(str(folder / "head.safetensors")))
    return HiddenStateClassifier(head.to(device).eval(), attribute, config["model"])
