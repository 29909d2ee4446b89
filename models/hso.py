"""Hidden-state optimisation (HSO; Yoshida & Gimpel, 2021) and dynamic evaluation (Krause et al., 2018, 2019)
over any Hugging Face causal LM.

Both read a text in segments: each segment is first scored with the model as it stands (that log-probability is
what is reported), then the segment's negative log-likelihood updates the model before the next segment is read.
``HSO`` updates the cached keys and values of the last ``window`` tokens, never the parameters: every cache entry
has its own Adam moments and step count, which travel with the entry as the window slides and leave with it.
``DynamicEvaluation`` updates parameters instead (RMS-normalised SGD decaying to the original weights) and puts
the original weights back when the text is done.

Positions: keys are cached after their rotary rotation and stay at their absolute positions. New tokens get their
absolute ``position_ids`` and an explicit 4-D attention mask, so every query-key distance is exact however far
the window has slid and nothing is ever re-rotated. Texts are thereby limited to the model's position table
(``max_position_embeddings``), rotary or learned (GPT-2). A model with sliding-window layers (Gemma-3) needs
``window + segment`` within its sliding window, so that its local layers see what its global layers see (the
default window is 512 tokens, or the sliding window less one segment where that is smaller).

``HSOLM`` is HSO as a ``LanguageModel``: ``start`` optimises the prompt's cache on the prompt's own log-likelihood,
then every search decodes from that cache with ``HFCausalLM``'s batching and masking.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel

from decoding.hf import HFCausalLM, HFState, _cache_from, _KVNode, _last_hidden, _Source, _stack_kv, position_limit
from decoding.protocol import as_ids
from decoding.types import SearchInputError
from models.errors import ConfigError

__all__ = ["HSO", "HSOLM", "DynamicEvaluation", "Forward", "NoAdaptation", "Streaming", "Window", "after_past",
           "kv_bytes_per_token", "sliding_window"]

STATES = ("kv", "k", "v")


@dataclass
class Window:
    """The cache of a text's last tokens: keys and values (L, 2, H, T, D) at absolute ``positions`` (T,), and for
    HSO each entry's Adam moments (like ``kv``) and step count (T,)."""

    kv: Tensor
    positions: Tensor
    m: Tensor
    v: Tensor
    steps: Tensor

    @classmethod
    def fresh(cls, kv: Tensor, positions: Tensor) -> Window:
        return cls(kv, positions, torch.zeros_like(kv), torch.zeros_like(kv),
                   torch.zeros(kv.shape[3], dtype=torch.long, device=kv.device))

    def __len__(self) -> int:
        return self.kv.shape[3]

    def extended(self, new: Window, keep: int, sink: int = 0) -> Window:
        """This window followed by ``new``'s entries, of which it keeps at most ``keep``: the first ``sink`` entries
        of the text (attention sinks) and the last ``keep - sink``."""
        def cat(a: Tensor, b: Tensor, dim: int) -> Tensor:
            joined = torch.cat([a, b], dim=dim)
            n = joined.shape[dim]
            if n <= keep:
                return joined
            recent = joined.narrow(dim, n - keep + sink, keep - sink)
            return torch.cat([joined.narrow(dim, 0, sink), recent], dim=dim) if sink else recent

        return Window(cat(self.kv, new.kv, 3), cat(self.positions, new.positions, 0), cat(self.m, new.m, 3),
                      cat(self.v, new.v, 3), cat(self.steps, new.steps, 0))


def sliding_window(config: Any) -> int | None:
    """The sliding attention window of a model with sliding-attention layers (Gemma-3), else None."""
    if any(t == "sliding_attention" for t in getattr(config, "layer_types", None) or ()):
        return int(config.sliding_window)
    return None


def kv_bytes_per_token(config: Any, dtype_bytes: int = 4) -> int:
    """Bytes of one token's cached keys and values over every layer of a decoder of ``config``."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * dim * dtype_bytes


def _mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, q, k) additive attention mask from a (B, q, k) boolean one (True: may attend)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def after_past(n_past: int, n: int, device: torch.device) -> Tensor:
    """(n, n_past + n): every past entry visible, causal among the ``n`` new tokens."""
    return torch.cat([torch.ones(n, n_past, dtype=torch.bool, device=device),
                      torch.ones(n, n, dtype=torch.bool, device=device).tril()], dim=1)


def _own_cache(n: int, device: torch.device) -> Tensor:
    """(n, 2n): token i of a text re-read over the text's own cache sees the cached entries j < i and itself."""
    return torch.cat([torch.ones(n, n, dtype=torch.bool, device=device).tril(-1),
                      torch.eye(n, dtype=torch.bool, device=device)], dim=1)


@dataclass
class Forward:
    logits: Tensor  # (n, V) float32; a batch: (B, n, V); n: the kept positions only
    kv: Tensor  # (L, 2, H, n, D) the new tokens' keys and values; a batch: (L, 2, B, H, n, D)
    hidden: Tensor | None  # (1, d) final-layer state at the last new token, when asked for; a batch: (B, d)


class Streaming:
    """Scores a text segment by segment over a sliding window of cached states; subclasses adapt the model to each
    segment after scoring it (``_adapt``). This class itself adapts nothing: it is the baseline every method is
    compared with (``NoAdaptation``)."""

    method = "none"

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, segment: int = 32,
                 window: int | None = None, sink: int = 0):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.segment = _positive_int("segment", segment)
        sliding = sliding_window(self.config)
        self.window = _positive_int("window", window if window is not None else
                                    512 if sliding is None else max(1, min(512, sliding - self.segment)))
        if sliding is not None and self.window + self.segment > sliding:
            raise ConfigError(f"window + segment = {self.window + self.segment} exceeds the model's sliding attention "
                              f"window ({sliding}); choose window + segment <= {sliding}")
        self.sink = _non_negative_int("sink", sink)
        if self.sink >= self.window:
            raise ConfigError(f"sink ({self.sink}) must be below the window ({self.window})")

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "segment": self.segment, "window": self.window,
                **({"sink": self.sink} if self.sink else {})}

    def state_bytes(self) -> int:
        """What the method keeps beyond the weights, at a full window: the cached keys and values (and for
        subclasses their optimiser state or weight copies); activations are not counted."""
        return kv_bytes_per_token(self.config, self.model.dtype.itemsize) * self.window

    def signature(self) -> dict[str, Any]:
        return {"model": getattr(self.config, "_name_or_path", "") or type(self.model).__name__,
                "architecture": type(self.model).__name__,
                "dtype": str(self.model.dtype).removeprefix("torch."), **self.settings()}

    def forward(self, ids: Sequence[int] | Tensor, positions: Tensor, past: Tensor | None, allowed: Tensor, *,
                hidden: bool = False, keep: Tensor | None = None) -> Forward:
        """One forward of ``ids`` (n,) at absolute ``positions`` (n,) over ``past`` (L, 2, H, T, D) with attention
        ``allowed`` (n, T + n); or of a batch: ``ids``, ``positions`` (B, n) and ``allowed`` (B, n, T + n), every
        row over the same ``past``. ``keep``: only the logits at these of the n positions (the LM head is the
        costliest layer of a large-vocabulary model). Gradients flow wherever autograd is on."""
        device = self.model.device
        batch = torch.as_tensor(ids, device=device)
        single = batch.dim() == 1
        if single:
            batch, positions, allowed = batch[None], positions[None], allowed[None]
        b, n = batch.shape
        cache = DynamicCache(config=self.config) if past is None else _cache_from(self.config, [
            (past[layer, 0][None].expand(b, -1, -1, -1), past[layer, 1][None].expand(b, -1, -1, -1))
            for layer in range(past.shape[0])])
        out = self.model(input_ids=batch, position_ids=positions.to(device),
                         attention_mask=_mask(allowed.to(device), self.model.dtype), past_key_values=cache,
                         use_cache=True, output_hidden_states=hidden,
                         logits_to_keep=0 if keep is None else keep.to(device))
        kv = _stack_kv(out.past_key_values, slice(-n, None))
        logits = out.logits[..., : self.vocab_size]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        last = _last_hidden(out.hidden_states) if hidden else None
        return Forward(logits[0], kv[:, :, 0], last) if single else Forward(logits, kv, last)

    def _check_text(self, ids: Sequence[int]) -> tuple[int, ...]:
        text = as_ids(ids, "ids")
        if len(text) < 2:
            raise SearchInputError(f"a text to score needs at least 2 tokens (the first is context), got {len(text)}")
        limit = position_limit(self.config)
        if limit is not None and len(text) > limit:
            raise SearchInputError(f"a text of {len(text)} tokens exceeds the model's {limit} positions; score it in "
                                   f"documents of at most {limit} tokens")
        return text

    def score_text(self, ids: Sequence[int]) -> Tensor:
        """(len(ids) - 1,) log-probabilities of ``ids[1:]``, each segment scored before the model adapts to it."""
        text = self._check_text(ids)
        out = []
        window: Window | None = None
        with self._session():
            for a in range(0, len(text) - 1, self.segment):
                b = min(a + self.segment, len(text) - 1)
                positions = torch.arange(a, b)
                targets = torch.tensor(text[a + 1: b + 1], device=self.model.device)
                lp, new = self._segment(window, text[a:b], positions, targets)
                out.append(lp)
                window = new if window is None else window.extended(new, self.window, self.sink)
        return torch.cat(out).cpu()

    def _segment(self, window: Window | None, ids: Sequence[int], positions: Tensor,
                 targets: Tensor) -> tuple[Tensor, Window]:
        """The segment's log-probabilities as scored before adapting, and its own entries for the window."""
        past = None if window is None else window.kv
        allowed = after_past(0 if past is None else past.shape[3], len(ids), self.model.device)
        if window is None or not self._adapts():
            with torch.no_grad():
                fwd = self.forward(ids, positions, past, allowed)
            return _target_logprobs(fwd.logits, targets), Window.fresh(fwd.kv, positions.to(fwd.kv.device))
        with torch.enable_grad():
            first, kv = self._adapt(window, ids, positions, targets, allowed)
        return first, Window.fresh(kv, positions.to(kv.device))

    def _adapts(self) -> bool:
        return False

    def _adapt(self, window: Window, ids: Sequence[int], positions: Tensor, targets: Tensor,
               allowed: Tensor) -> tuple[Tensor, Tensor]:
        """Update the model (or ``window`` in place) on the segment; return its log-probabilities before the first
        update and its own keys and values from the last forward (computed before the last update: one forward and
        backward per step, no extra forward)."""
        raise NotImplementedError

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Around one text: parameters frozen (HSO) or saved and restored (dynamic evaluation)."""
        flags = [p.requires_grad for p in self.model.parameters()]
        try:
            for p in self.model.parameters():
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in zip(self.model.parameters(), flags, strict=True):
                p.requires_grad_(flag)


class NoAdaptation(Streaming):
    """The same segments and window, no update: the baseline of HSO and dynamic evaluation."""


class HSO(Streaming):
    """Hidden-state optimisation: after scoring each segment, ``steps_per_segment`` Adam steps on the window's
    cached ``states`` ("kv": keys and values, "k" or "v" only) lower the segment's mean negative log-likelihood;
    the parameters are frozen and untouched. Each cache entry keeps its own moments and step count (bias
    correction), so an entry that arrived late is not treated as if it had been updated all along."""

    method = "hso"

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, lr: float, steps_per_segment: int = 1,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, segment: int = 32,
                 window: int | None = None, states: str = "kv"):
        super().__init__(model, tokenizer, segment=segment, window=window)
        self.lr = _non_negative("lr", lr)
        self.steps = _non_negative_int("steps_per_segment", steps_per_segment)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _non_negative("eps", eps)
        if states not in STATES:
            raise ConfigError(f"states must be one of {', '.join(STATES)}, got {states!r}")
        self.states = states

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "lr": self.lr, "steps": self.steps, "betas": list(self.betas),
                "states": self.states}

    def _adapts(self) -> bool:
        return self.steps > 0 and self.lr > 0

    def state_bytes(self) -> int:
        """The window, its two Adam moments and its gradient."""
        return 4 * super().state_bytes()

    def _adapt(self, window: Window, ids: Sequence[int], positions: Tensor, targets: Tensor,
               allowed: Tensor) -> tuple[Tensor, Tensor]:
        first = kv = None
        for _ in range(self.steps):
            leaf = window.kv.detach().requires_grad_(True)
            fwd = self.forward(ids, positions, leaf, allowed)
            lp = _target_logprobs(fwd.logits, targets)
            first = lp.detach() if first is None else first
            (grad,) = torch.autograd.grad(-lp.mean(), leaf)
            kv = fwd.kv.detach()
            self._step(window, grad)
        assert first is not None and kv is not None
        return first, kv

    def _step(self, window: Window, grad: Tensor) -> None:
        """One Adam step on every entry of ``window`` (in place), each with its own bias correction."""
        if self.states != "kv":
            keep = torch.zeros(2, dtype=grad.dtype, device=grad.device)
            keep[STATES.index(self.states) - 1] = 1
            grad = grad * keep.view(1, 2, 1, 1, 1)
        b1, b2 = self.betas
        window.steps += 1
        window.m.mul_(b1).add_(grad, alpha=1 - b1)
        window.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        t = window.steps.to(grad.dtype).view(1, 1, 1, -1, 1)
        m_hat = window.m / (1 - b1 ** t)
        v_hat = window.v / (1 - b2 ** t)
        window.kv = window.kv - self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def adapt_prompt(self, ids: Sequence[int]) -> Forward:
        """The prompt's cache after ``steps_per_segment`` Adam steps on the prompt's own mean log-likelihood, each
        token re-read over the cache of the tokens before it; ``logits`` and ``hidden`` of the last token, computed
        over the optimised cache. With no steps (or lr = 0) it is the model's own cache."""
        ids = as_ids(ids)
        n = len(ids)
        positions = torch.arange(n)
        device = self.model.device
        with self._session():
            with torch.no_grad():
                fwd = self.forward(ids, positions, None, after_past(0, n, device), hidden=True)
            if n < 2 or not self._adapts():
                return Forward(fwd.logits[-1:], fwd.kv, fwd.hidden)
            window = Window.fresh(fwd.kv[:, :, :, : n - 1], positions[: n - 1])
            targets = torch.tensor(ids[1:], device=device)
            with torch.enable_grad():
                self._adapt(window, ids[:-1], positions[: n - 1], targets, _own_cache(n - 1, device))
            with torch.no_grad():
                last = self.forward(ids[-1:], positions[-1:], window.kv, after_past(n - 1, 1, device), hidden=True)
        return Forward(last.logits, torch.cat([window.kv, last.kv], dim=3), last.hidden)


class DynamicEvaluation(Streaming):
    """Dynamic evaluation (Krause et al., 2018; for transformers 2019): after scoring each segment, its gradient
    updates the parameters by RMS-normalised SGD with decay to the original weights,
    ``theta -= lr * g / (sqrt(MS) + eps)`` then ``theta += decay * (theta0 - theta) * rms``, where MS is the running
    mean of squared gradients and ``rms = sqrt(MS) / mean(sqrt(MS))`` per tensor (clipped at 1 / decay). Krause
    estimate MS on training data; a pretrained model's training data is not at hand, so MS is the mean over the
    segments seen so far. ``params="all"`` updates every weight, ``"norms_biases"`` only 1-D ones (normalisation
    gains and biases). The cached states of earlier segments are kept as computed (not re-computed with the
    updated weights), as in Krause et al. (2019). The original weights are restored when the text is done."""

    method = "dynamic_eval"

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, lr: float, decay: float = 0.0,
                 steps_per_segment: int = 1, eps: float = 1e-8, params: str = "all", segment: int = 32,
                 window: int | None = None):
        super().__init__(model, tokenizer, segment=segment, window=window)
        self.lr = _non_negative("lr", lr)
        self.decay = _non_negative("decay", decay)
        self.steps = _non_negative_int("steps_per_segment", steps_per_segment)
        self.eps = _non_negative("eps", eps)
        if params not in ("all", "norms_biases"):
            raise ConfigError(f"params must be 'all' or 'norms_biases', got {params!r}")
        self.params = params
        self._ms: dict[int, Tensor] = {}
        self._rms: dict[int, Tensor] = {}
        self._theta0: dict[int, Tensor] = {}
        self._seen = 0

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "lr": self.lr, "decay": self.decay, "steps": self.steps,
                "params": self.params}

    def _updated(self) -> list[Tensor]:
        return [p for p in self.model.parameters() if self.params == "all" or p.dim() == 1]

    def _adapts(self) -> bool:
        return self.steps > 0 and self.lr > 0

    def state_bytes(self) -> int:
        """The window, and for every updated weight its original, its mean squared gradient, its RMS and its
        gradient."""
        return super().state_bytes() + 4 * sum(p.numel() * p.element_size() for p in self._updated())

    @contextmanager
    def _session(self) -> Iterator[None]:
        with super()._session():
            updated = self._updated()
            original = [p.detach().clone() for p in updated]
            self._ms, self._rms, self._seen = {}, {}, 0
            self._theta0 = {id(p): p0 for p, p0 in zip(updated, original, strict=True)}
            try:
                for p in updated:
                    p.requires_grad_(True)
                yield
            finally:
                with torch.no_grad():
                    for p, p0 in zip(updated, original, strict=True):
                        p.copy_(p0)
                        p.grad = None
                        p.requires_grad_(False)
                self._ms, self._rms, self._theta0 = {}, {}, {}

    def _adapt(self, window: Window, ids: Sequence[int], positions: Tensor, targets: Tensor,
               allowed: Tensor) -> tuple[Tensor, Tensor]:
        first = kv = None
        updated = self._updated()
        for _ in range(self.steps):
            fwd = self.forward(ids, positions, window.kv.detach(), allowed)
            lp = _target_logprobs(fwd.logits, targets)
            first = lp.detach() if first is None else first
            grads = torch.autograd.grad(-lp.mean(), updated, allow_unused=True)
            kv = fwd.kv.detach()
            self._seen += 1
            with torch.no_grad():
                for p, g in zip(updated, grads, strict=True):
                    if g is not None:
                        self._sgd(p, g)
        assert first is not None and kv is not None
        return first, kv

    def _sgd(self, p: Tensor, g: Tensor) -> None:
        """In place, into buffers kept per weight: a weight-sized temporary per step would fault in fresh pages
        every segment (a quarter of the run's time on an embedding matrix)."""
        ms = self._ms.setdefault(id(p), torch.zeros_like(p))
        ms.mul_(1 - 1 / self._seen).addcmul_(g, g, value=1 / self._seen)
        rms = torch.sqrt(ms, out=self._rms.setdefault(id(p), torch.empty_like(p)))
        scale = (rms / rms.mean().clamp_min(self.eps)).clamp_max(1 / self.decay) if self.decay > 0 else None
        p.addcdiv_(g, rms.add_(self.eps), value=-self.lr)
        if scale is not None:
            p.add_(self.decay * (self._theta0[id(p)] - p) * scale)


def _target_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    return torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class HSOLM(HFCausalLM):
    """A causal LM whose prompt cache is optimised by ``HSO.adapt_prompt`` before anything is decoded: every search
    (greedy, beam, exact, conditional beam) then runs on ``HFCausalLM``'s batching and masking over that cache, and
    ``score`` teacher-forces over the same cache. The last prompt's optimised cache is kept, so several searches of
    one prompt optimise it once."""

    def __init__(self, hso: HSO, *, eos_id: int | None = None, extra_masked_ids: Sequence[int] = ()):
        super().__init__(hso.model, hso.tokenizer, eos_id=eos_id, extra_masked_ids=extra_masked_ids)
        self.hso = hso
        self._last: tuple[tuple[int, ...], HFState] | None = None

    @classmethod
    def over(cls, lm: HFCausalLM, **hso: Any) -> HSOLM:
        """``lm`` (its model, tokenizer, EOS and masked ids) with its prompts optimised by ``HSO(**hso)``."""
        return cls(HSO(lm.model, lm.tokenizer, **hso), eos_id=lm.eos_id, extra_masked_ids=lm.masked_ids)

    def signature(self) -> dict[str, Any]:
        return {**super().signature(), "hso": self.hso.settings()}

    def start(self, source_ids: Sequence[int]) -> HFState:
        ids = self._prompt(source_ids)
        if self._last is None or self._last[0] != ids:
            fwd = self.hso.adapt_prompt(ids)
            assert fwd.hidden is not None
            root = _KVNode(fwd.kv.detach(), None, len(ids))
            self._last = ids, HFState([root], self._normalise(fwd.logits[-1:]), _Source(ids), fwd.hidden.detach())
        return self._last[1]

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        state = self.start(source_ids)
        target = as_ids(target_ids, "target_ids")
        if not target:
            return torch.zeros(0)
        self._check_positions(len(state.source.ids) + len(target), "input")
        n, past = len(target) - 1, state.nodes[0].kv
        logprobs = state.logprobs
        if n:
            with torch.no_grad():
                fwd = self.hso.forward(target[:-1], torch.arange(past.shape[3], past.shape[3] + n), past,
                                        after_past(past.shape[3], n, past.device))
            logprobs = torch.cat([logprobs, self._normalise(fwd.logits)])
        return logprobs.gather(1, torch.tensor(target, device=logprobs.device)[:, None])[:, 0]
