"""Recurrence for a pretrained decoder (Yoshida, Ettinger & Gimpel, 2020): a frozen HF causal LM reads a text in
short windows and carries a few memory vectors from each window to the next, so its context is unbounded while
its cache never holds more than one window.

Layout. A text is cut into disjoint windows of ``window`` tokens; every window starts again at position 0, so the
base never sees a position beyond its window and its cache never holds more than ``window`` entries. What a
window leaves behind is ``memory_slots`` vectors of the base's width (``memory``), the same for every position of
the next window.

Writing (``RecurrenceModule.update``). After a window, the slots attend (cross-attention, queries from the slots)
over the window's hidden states at the output of decoder layer ``read_layer`` and mix the result ``c`` into the
memory through a gate, per slot and channel, as a GRU does: ``m' = (1 - z) m + z c`` with
``z = sigmoid(W [m; c] + b)``. The read layer defaults to two thirds of the depth: late enough that the states
are contextual (and include what the memory injected into this window, which makes the memory recurrent), early
enough that they are not yet specialised to the next token's identity, as the last layers are.

Reading (injection). After each decoder layer of ``inject_layers`` (default: a quarter and half of the depth),
every position of a window adds ``tanh(g) * CrossAttention(h, memory)`` to its residual stream: Flamingo's gated
cross-attention, with the gate ``g`` of each injected layer zero at initialisation. Why not the alternatives:
memory as extra keys and values of the base's own attention changes every softmax's denominator even when the
memory is zero, so it cannot be switched off exactly, and prefix embeddings take positions and cache entries. The
gated residual cross-attention is exactly the base model when ``g = 0`` (``0 * x`` adds exact zeros), leaves the
base's attention untouched, and depends on a position and the memory only, so the base's KV cache stays valid
within a window. The base's weights are frozen; only ``RecurrenceModule`` (about 2% of SmolLM2-135M at the
defaults) trains, by truncated back-propagation through ``K`` windows (``Recurrent.tbptt``).

``RecurrentLM`` is the recurrent model as a ``LanguageModel``: ``start`` reads a prompt of any length window by
window; a row whose window is full starts a new one (its memory updated) at its next ``extend``, so greedy, beam
and exact search run on it with at most ``window`` cached entries and ``memory_slots`` memory vectors per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import DynamicCache, PreTrainedModel

from decoding.hf import HFCausalLM, HFState, _KVNode, _last_hidden, _Source, _stack_kv
from decoding.protocol import as_ids
from models.errors import ConfigError

__all__ = ["Recurrent", "RecurrenceModule", "RecurrentLM", "RecurrentState", "TrainSettings", "decoder_layers",
           "dev_nll", "load", "load_recurrent", "module_folder", "save", "target_logprobs", "train"]


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The decoder blocks of an HF causal LM (``layers`` of Llama, Qwen2, Gemma; ``h`` of GPT-2)."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        layers = getattr(decoder, "h", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"cannot find the decoder layers of {type(model).__name__}")
    return layers


class _CrossAttention(nn.Module):
    """Multi-head attention from ``x`` (B, T, width) to ``context`` (B, S, width), both layer-normalised, through
    an inner width ``dim``; returns (B, T, width)."""

    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.norm_x, self.norm_context = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v = (nn.Linear(width, dim, bias=False) for _ in range(3))
        self.o = nn.Linear(dim, width, bias=False)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        (b, t, _), s = x.shape, context.shape[1]
        x, context = self.norm_x(x), self.norm_context(context)

        def split(z: Tensor, n: int) -> Tensor:
            return z.view(b, n, self.heads, -1).transpose(1, 2)

        mask = None if context_mask is None else context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(split(self.q(x), t), split(self.k(context), s),
                                             split(self.v(context), s), attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


class RecurrenceModule(nn.Module):
    """What trains: the initial memory, the writer (``update``) and one gated reader per injected layer."""

    def __init__(self, width: int, *, slots: int, n_inject: int, dim: int = 256, heads: int = 4):
        super().__init__()
        self.initial = nn.Parameter(torch.randn(slots, width) / math.sqrt(width))
        self.write = _CrossAttention(width, dim, heads)
        self.gate = nn.Linear(2 * width, width)
        self.read = nn.ModuleList(_CrossAttention(width, dim, heads) for _ in range(n_inject))
        self.read_gates = nn.Parameter(torch.zeros(n_inject))

    def update(self, memory: Tensor, states: Tensor) -> Tensor:
        """Memory (B, S, width) after a window whose hidden states at the read layer are ``states`` (B, T, width)."""
        candidate = self.write(memory, states.to(memory.dtype))
        z = torch.sigmoid(self.gate(torch.cat([memory, candidate], dim=-1)))
        return (1 - z) * memory + z * candidate

    def inject(self, index: int, hidden: Tensor, memory: Tensor) -> Tensor:
        read = self.read[index](hidden.to(memory.dtype), memory)
        return hidden + (torch.tanh(self.read_gates[index]) * read).to(hidden.dtype)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class Recurrent:
    """A frozen HF causal LM read in windows with a ``RecurrenceModule`` (the module's docstring); ``module``: a
    trained one (else a fresh one)."""

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, window: int, memory_slots: int = 16,
                 read_layer: int | None = None, inject_layers: Sequence[int] | None = None, dim: int = 256,
                 heads: int = 4, module: RecurrenceModule | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        n = len(layers)
        self.window = _positive_int("window", window)
        self.memory_slots = _positive_int("memory_slots", memory_slots)
        self.read_layer = (2 * n) // 3 if read_layer is None else read_layer
        self.inject_layers = tuple(sorted({n // 4, n // 2} if inject_layers is None else inject_layers))
        bad = [i for i in (self.read_layer, *self.inject_layers) if isinstance(i, bool) or not 0 <= i < n]
        if bad or not self.inject_layers:
            raise ConfigError(f"read_layer and inject_layers (non-empty) must be layers 0..{n - 1} of the base, "
                              f"got read_layer={self.read_layer}, inject_layers={list(self.inject_layers)}")
        width = int(model.config.hidden_size)
        self.module = module if module is not None else RecurrenceModule(
            width, slots=self.memory_slots, n_inject=len(self.inject_layers), dim=dim, heads=heads)
        self.module.to(model.device)
        if self.module.initial.shape != (self.memory_slots, width) or len(self.module.read) != len(
                self.inject_layers):
            raise ConfigError(f"the module holds {tuple(self.module.initial.shape)} memory and "
                              f"{len(self.module.read)} readers; this base needs ({self.memory_slots}, {width}) "
                              f"and {len(self.inject_layers)}")
        self.dim, self.heads = self.module.write.q.out_features, self.module.write.heads
        self._memory: Tensor | None = None
        self._captured: Tensor | None = None
        self._hooks = [layers[i].register_forward_hook(partial(self._inject, j))
                       for j, i in enumerate(self.inject_layers)]
        self._hooks.append(layers[self.read_layer].register_forward_hook(self._capture))

    def settings(self) -> dict[str, Any]:
        return {"window": self.window, "memory_slots": self.memory_slots, "read_layer": self.read_layer,
                "inject_layers": list(self.inject_layers), "dim": self.dim, "heads": self.heads}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def remove(self) -> None:
        """Take the hooks off the base model (it is then the plain base again)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _inject(self, index: int, _module: nn.Module, _args: Any, output: Tensor) -> Tensor | None:
        return None if self._memory is None else self.module.inject(index, output, self._memory)

    def _capture(self, _module: nn.Module, _args: Any, output: Tensor) -> None:
        if self._memory is not None:
            self._captured = output

    @contextmanager
    def reading(self, memory: Tensor) -> Iterator[None]:
        """Forwards of the base inside read ``memory`` (B, S, width) at the injected layers."""
        self._memory = memory
        try:
            yield
        finally:
            self._memory = self._captured = None

    def initial(self, batch: int) -> Tensor:
        return self.module.initial[None].expand(batch, -1, -1)

    def _window(self, ids: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, T, V) of one window ``ids`` (B, T) read with ``memory``, and the memory it leaves."""
        with self.reading(memory):
            logits = self.model(input_ids=ids, use_cache=False).logits
            assert self._captured is not None
            return logits, self.module.update(memory, self._captured)

    def advance(self, ids: Tensor, memory: Tensor, window: int | None = None) -> Tensor:
        """The memory after reading ``ids`` (B, T) in windows of ``window`` tokens (default: the model's)."""
        w = window or self.window
        for start in range(0, ids.shape[1], w):
            memory = self._window(ids[:, start: start + w], memory)[1]
        return memory

    def _windows(self, ids: Sequence[int], window: int | None, memory: bool, carry: bool) -> Iterator[Tensor]:
        """(w, V) logits of each window of a text read from the initial memory (see ``logits``)."""
        w = window or self.window
        text = torch.tensor([list(ids)], device=self.model.device)
        state = self.initial(1)
        for start in range(0, text.shape[1], w):
            piece = text[:, start: start + w]
            if memory:
                logits, left = self._window(piece, state)
                state = left if carry else state
            else:
                logits = self.model(input_ids=piece, use_cache=False).logits
            yield logits[0]

    def logits(self, ids: Sequence[int], window: int | None = None, *, memory: bool = True,
               carry: bool = True) -> Tensor:
        """(T, V) teacher-forced logits of a text read in windows of ``window`` tokens (default: the model's) from
        the initial memory; ``memory=False``: the base alone on the same disjoint windows; ``carry=False``: every
        window read with the initial memory (what the module adds without recurrence)."""
        return torch.cat(list(self._windows(ids, window, memory, carry)))

    def token_logprobs(self, ids: Sequence[int], window: int | None = None, *, memory: bool = True,
                       carry: bool = True) -> Tensor:
        """(T - 1,) float64 log-probabilities of ``ids[1:]`` read as ``logits`` reads the text, one window's
        logits at a time (memory bounded by a window, not by the text)."""
        text = torch.tensor(list(ids), device=self.model.device)
        out, start = [], 0
        for logits in self._windows(ids, window, memory, carry):
            targets = text[start + 1: start + 1 + len(logits)]
            out.append(target_logprobs(logits[: len(targets)], targets))
            start += len(logits)
        return torch.cat(out)

    def _window_nll(self, ids: Tensor, targets: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        logits, memory = self._window(ids, memory)
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum", ignore_index=-100)
        return nll, memory

    def tbptt(self, inputs: Tensor, targets: Tensor, memory: Tensor | None = None, *, window: int | None = None,
              checkpoint: bool = True) -> tuple[Tensor, Tensor]:
        """Summed NLL of ``targets`` (B, N; -100 is ignored) after ``inputs`` (B, N) read in windows of ``window``
        tokens from ``memory`` (default: the initial one), gradients through all of its windows; and the memory it
        leaves, detached, to carry into the next stretch of the same texts. ``checkpoint``: recompute each window's
        activations in the backward pass (memory: one window's)."""
        w = window or self.window
        memory = self.initial(inputs.shape[0]) if memory is None else memory
        total = inputs.new_zeros((), dtype=torch.float32)
        for start in range(0, inputs.shape[1], w):
            piece = inputs[:, start: start + w], targets[:, start: start + w]
            if checkpoint and torch.is_grad_enabled():
                nll, memory = torch.utils.checkpoint.checkpoint(self._window_nll, *piece, memory, use_reentrant=False)
            else:
                nll, memory = self._window_nll(*piece, memory)
            total = total + nll
        return total, memory.detach()


def target_logprobs(logits: Tensor, targets: Tensor, chunk: int = 256) -> Tensor:
    """(n,) float64 log-probabilities of ``targets`` (n,) under ``logits`` (n, V), normalised ``chunk`` rows at a
    time (a float64 copy of all of them would be the largest tensor of a long text's scoring)."""
    return torch.cat([torch.log_softmax(part.double(), dim=-1).gather(1, t[:, None])[:, 0]
                      for part, t in zip(logits.split(chunk), targets.split(chunk), strict=True)]) \
        if len(targets) else logits.new_zeros(0, dtype=torch.float64)


@dataclass
class RecurrentState(HFState):
    memory: Tensor  # (n, S, width): what each row's earlier windows left
    windows: list[tuple[int, ...]]  # each row's current window (at most ``window`` tokens; the KV path holds them)


class RecurrentLM(HFCausalLM):
    """``Recurrent`` as a ``LanguageModel`` (this module's docstring): ``HFCausalLM``'s batching and masking within
    a window, the memory per row. A row whose window is full is re-read once with its memory to update the memory
    (the hidden states of the read layer are not kept between steps), so decoding costs one extra window forward
    per ``window`` tokens."""

    def __init__(self, rec: Recurrent, *, eos_id: int | None = None, extra_masked_ids: Sequence[int] = ()):
        super().__init__(rec.model, rec.tokenizer, eos_id=eos_id, extra_masked_ids=extra_masked_ids)
        self.rec = rec

    def signature(self) -> dict[str, Any]:
        return {**super().signature(), "recurrence": self.rec.settings()}

    def _check_positions(self, n: int, what: str) -> None:
        """Any length: the base sees at most one window of positions."""
        super()._check_positions(min(n, self.rec.window), what)

    @staticmethod
    def _with(base: HFState, memory: Tensor, windows: list[tuple[int, ...]]) -> RecurrentState:
        return RecurrentState(base.nodes, base.logprobs, base.source, base.hidden, memory, windows)

    def start(self, source_ids: Sequence[int]) -> RecurrentState:
        ids = self._prompt(source_ids)
        w = self.rec.window
        current = (len(ids) - 1) // w * w
        device = self.model.device
        with torch.inference_mode():
            memory = self.rec.advance(torch.tensor([ids[:current]], device=device), self.rec.initial(1))
            with self.rec.reading(memory):
                out = self.model(input_ids=torch.tensor([ids[current:]], device=device),
                                 past_key_values=DynamicCache(config=self.config), use_cache=True,
                                 output_hidden_states=True)
        root = _KVNode(_stack_kv(out.past_key_values, slice(None))[:, :, 0], None, len(ids) - current)
        base = HFState([root], self._normalise(out.logits[:, -1]), _Source(ids), _last_hidden(out.hidden_states))
        return self._with(base, memory, [ids[current:]])

    def extend(self, state: HFState, tokens: Tensor) -> RecurrentState:
        assert isinstance(state, RecurrentState)
        nodes, windows, memory = list(state.nodes), list(state.windows), state.memory
        full = [i for i, window in enumerate(windows) if len(window) == self.rec.window]
        if full:
            rows = torch.tensor(full, device=memory.device)
            with torch.inference_mode():
                done = torch.tensor([windows[i] for i in full], device=self.model.device)
                memory = memory.index_copy(0, rows, self.rec.advance(done, memory[rows]))
            for i in full:
                nodes[i] = _KVNode(nodes[i].kv[:, :, :, :0], None, 0)
                windows[i] = ()
        with self.rec.reading(memory):
            base = super().extend(HFState(nodes, state.logprobs, state.source, state.hidden), tokens)
        return self._with(base, memory, [w + (t,) for w, t in zip(windows, tokens.tolist(), strict=True)])

    def select(self, state: HFState, rows: Tensor) -> RecurrentState:
        assert isinstance(state, RecurrentState)
        return self._with(super().select(state, rows), state.memory[rows.to(state.memory.device)],
                          [state.windows[i] for i in rows.tolist()])

    def without_logprobs(self, state: HFState) -> RecurrentState:
        assert isinstance(state, RecurrentState)
        return self._with(super().without_logprobs(state), state.memory, state.windows)

    def concat(self, states: Sequence[HFState]) -> RecurrentState:
        assert all(isinstance(s, RecurrentState) for s in states)
        return self._with(super().concat(states), torch.cat([s.memory for s in states]),  # type: ignore[attr-defined]
                          [w for s in states for w in s.windows])  # type: ignore[attr-defined]

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        prompt = self._prompt(source_ids)
        target = as_ids(target_ids, "target_ids")
        if not target:
            return torch.zeros(0)
        with torch.inference_mode():
            logits = self.rec.logits(prompt + target)[len(prompt) - 1: -1]
        lp = self._normalise(logits)
        return lp.gather(1, torch.tensor(target, device=lp.device)[:, None])[:, 0]


# ---------------------------------------------------------------- training, saving, loading

MODULE_FILE, SETTINGS_FILE = "recurrence.safetensors", "recurrence.json"


@dataclass(frozen=True)
class TrainSettings:
    """How ``train`` runs: ``batch`` streams of training documents, each read ``k_windows`` windows per step (the
    window drawn per step from ``windows``), the memory carried (detached) from step to step along a document and
    reset at a new one; AdamW with linear warm-up and cosine decay over ``max_steps``; stopped at ``max_minutes``
    of training time; dev NLL (at the model's window) every ``eval_every`` steps; a checkpoint every
    ``checkpoint_minutes``."""

    windows: Sequence[int] = (64, 128, 256)
    k_windows: int = 4
    batch: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 400
    max_minutes: float = 110.0
    eval_every: int = 100
    checkpoint_minutes: float = 10.0
    seed: int = 0


def _stretch(rng: Any, docs: Sequence[Sequence[int]], n: int) -> int:
    """A random document with at least ``n`` tokens, drawn in proportion to its length."""
    sizes = [len(d) if len(d) >= n else 0 for d in docs]
    if not any(sizes):
        raise ConfigError(f"no training document has the {n} tokens of one step; lower windows or k_windows")
    return int(rng.choices(range(len(docs)), weights=sizes)[0])


def dev_nll(rec: Recurrent, docs: Sequence[Sequence[int]], window: int) -> dict[str, float]:
    """Mean NLL per token of ``docs`` after their first window, with the memory and with the base alone on the
    same disjoint windows."""
    total = {"memory": 0.0, "base": 0.0}
    count = 0
    with torch.inference_mode():
        for ids in docs:
            target = torch.tensor(list(ids[window:]), device=rec.model.device)
            if not len(target):
                continue
            for key, memory in (("memory", True), ("base", False)):
                logits = rec.logits(ids, window, memory=memory)[window - 1: -1].float()
                total[key] += float(F.cross_entropy(logits, target, reduction="sum"))
            count += len(target)
    return {k: v / max(count, 1) for k, v in total.items()}


def train(rec: Recurrent, train_docs: Sequence[Sequence[int]], dev_docs: Sequence[Sequence[int]], out: Path,
          settings: TrainSettings, *, meta: dict[str, Any]) -> dict[str, Any]:
    """Train ``rec.module`` (or resume) into ``out``: ``out/checkpoint`` while training, then the module
    (``save``) with ``training.json`` and ``learning_curve.csv``. ``meta`` (config, data hash, command) is
    stored with it; a checkpoint of other ``meta["config"]`` (but for the budget keys) is refused."""
    import random

    import pandas as pd

    from models import training
    from models.training import Budget, Checkpoint, fresh_state

    out = Path(out)
    params = [p for p in rec.module.parameters()]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def schedule(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.max_steps - settings.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    checkpoint = Checkpoint(out, meta, {"module": rec.module, "optimizer": opt, "scheduler": sched})
    state = checkpoint.resume() or fresh_state(streams=[None] * settings.batch, rng=rng.getstate())
    rng.setstate(state["rng"])

    def evaluate() -> dict[str, float]:
        rec.module.eval()
        nll = dev_nll(rec, dev_docs, rec.window)
        rec.module.train()
        return {"dev_nll": nll["memory"], "dev_nll_base": nll["base"]}

    def step(state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        window = rng.choice(settings.windows)
        n = settings.k_windows * window
        inputs, memories = [], []
        for b, stream in enumerate(state["streams"]):
            if stream is None or stream["pos"] + n + 1 > len(train_docs[stream["doc"]]):
                doc = _stretch(rng, train_docs, n + 1)  # a new document, from a random offset in its first stretch
                stream = {"doc": doc, "pos": rng.randrange(0, min(n, len(train_docs[doc]) - n - 1) + 1),
                          "memory": None}
                state["streams"][b] = stream
            inputs.append(list(train_docs[stream["doc"]][stream["pos"]: stream["pos"] + n + 1]))
            memories.append(rec.module.initial if stream["memory"] is None else stream["memory"])
        state["rng"] = rng.getstate()
        ids = torch.tensor(inputs, device=rec.model.device)
        nll, left = rec.tbptt(ids[:, :-1], ids[:, 1:], torch.stack(memories), window=window)
        for b, stream in enumerate(state["streams"]):
            stream["pos"] += n
            stream["memory"] = left[b]
        return nll / ids[:, 1:].numel(), {"window": window}

    if not state["curve"]:
        state["curve"].append({"step": 0, "elapsed_s": 0.0, "train_nll": None, **evaluate()})
    rec.module.train()
    state = training.run(step, evaluate, state, Budget(settings.max_steps, settings.max_minutes,
                                                       settings.eval_every, settings.checkpoint_minutes),
                         checkpoint, optimizer=opt, scheduler=sched, params=params, desc="training recurrence",
                         loss_key="train_nll", smoothing=0.95)
    info = {**meta, "steps": state["step"], "training_seconds": round(state["elapsed"], 1),
            "n_parameters": rec.n_parameters(), "final": state["curve"][-1]}
    save(rec, out, info)
    pd.DataFrame(state["curve"]).to_csv(out / "learning_curve.csv", index=False)
    return info


def save(rec: Recurrent, folder: Path, meta: dict[str, Any]) -> None:
    """The module in float16 (``recurrence.safetensors``) and ``recurrence.json``: the base model's name and the
    settings that rebuild it (``load``), with ``meta`` (training record)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous().cpu() for k, v in rec.module.state_dict().items()},
              folder / MODULE_FILE)
    (folder / SETTINGS_FILE).write_text(json.dumps({"settings": rec.settings(), **meta}, indent=2) + "\n")


def load(folder: Path, model: PreTrainedModel, tokenizer: Any = None, *, window: int | None = None) -> Recurrent:
    """A saved module over ``model`` (the base it was trained on: ``recurrence.json``'s ``base``), read in windows
    of ``window`` tokens (default: the trained setting's)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())["settings"]
        weights = load_file(folder / MODULE_FILE)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{folder} holds no recurrence module ({MODULE_FILE} and {SETTINGS_FILE}): {err}") from err
    width = weights["initial"].shape[1]
    module = RecurrenceModule(width, slots=settings["memory_slots"], n_inject=len(settings["inject_layers"]),
                              dim=settings["dim"], heads=settings["heads"])
    module.load_state_dict({k: v.float() for k, v in weights.items()})
    return Recurrent(model, tokenizer, **{**settings, "window": window or settings["window"]}, module=module)


def module_folder(name_or_path: str | Path) -> Path:
    """A folder written by ``lq train recurrence``, or the name of a module shipped in ``models/shipped``."""
    from models.registry import SHIPPED_DIR

    folder = Path(name_or_path)
    folder = folder if folder.is_dir() else SHIPPED_DIR / str(name_or_path)
    if not (folder / SETTINGS_FILE).is_file():
        raise ConfigError(f"{name_or_path!r} is no recurrence module: expected a folder with {SETTINGS_FILE} and "
                          f"{MODULE_FILE}, written by `lq train recurrence`")
    return folder


def load_recurrent(name_or_path: str | Path, *, device: str = "cpu",
                   window: int | None = None) -> tuple[Recurrent, str]:
    """A trained module over its base (loaded with ``models.load_model``), and the base's name."""
    from models.registry import load_model

    folder = module_folder(name_or_path)
    base = str(json.loads((folder / SETTINGS_FILE).read_text())["base"])
    model, tok, _ = load_model(base, device=device)
    return load(folder, model, tok, window=window), base
