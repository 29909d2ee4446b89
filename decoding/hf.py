"""Hugging Face adapters: any ``AutoModelForCausalLM`` or encoder-decoder model as a ``LanguageModel``.

Rows of a state are paths in a prefix tree whose nodes own the key/value states of their own tokens
(``_KVNode``). Selecting, repeating and concatenating rows is free (no cache copies), each token's KV is
stored once however many hypotheses share it, and exact search can batch frontier nodes of different depths
into one forward call: their paths are gathered into a left-padded cache with explicit position ids (causal
LMs, and encoder-decoders whose decoder position table can be indexed per row: Marian), or grouped by length
(other encoder-decoders, whose decoders derive positions from the cache length). A state
also keeps each row's final-layer hidden state (``hidden``), one (n, d) tensor, for attribute classifiers.

This module is the only place that touches transformers internals; it builds on ``model(...)`` with
``past_key_values`` only, never on ``generate()``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from decoding.protocol import as_ids, check_finite, storage_bytes
from decoding.types import SearchInputError
from decoding.validate import token_id, token_ids


@dataclass(eq=False)
class _KVNode:
    kv: Tensor  # (L, 2, H, n, D): keys and values of this node's own n positions, every layer
    parent: _KVNode | None
    length: int  # positions from the root up to and including this node

    def path(self) -> list[Tensor]:
        chunks = []
        node: _KVNode | None = self
        while node is not None:
            chunks.append(node.kv)
            node = node.parent
        return chunks[::-1]


@dataclass(eq=False)
class _Source:
    """What every row of one source shares: the source ids and, for encoder-decoders, the encoder output and
    the cross-attention keys/values (batch 1, expanded as views when rows are batched: never copied)."""

    ids: tuple[int, ...]
    encoder_hidden: Tensor | None = None  # (1, S, d)
    cross_kv: list[tuple[Tensor, Tensor]] | None = None  # per layer (1, H, S, D)


@dataclass
class HFState:
    nodes: list[_KVNode]
    logprobs: Tensor  # (n, V)
    source: _Source
    hidden: Tensor  # (n, d) final-layer hidden state at each row's last position; (n, 0) without logprobs

    def __len__(self) -> int:
        return len(self.nodes)


# config -> an empty DynamicCache built from it, copied for each forward: building one from a config walks (and
# deep-copies) the config, which cost a seventh of an encoder-decoder's exact search. The config is kept with its
# template, so an id reused by a later config never matches.
_TEMPLATES: dict[int, tuple[Any, DynamicCache]] = {}


def _empty_cache(config: Any) -> DynamicCache:
    """A fresh, empty DynamicCache with the layer types ``DynamicCache(config=config)`` has."""
    entry = _TEMPLATES.get(id(config))
    if entry is None or entry[0] is not config:
        entry = _TEMPLATES[id(config)] = (config, DynamicCache(config=config))
    cache = copy.copy(entry[1])
    cache.layers = [copy.copy(layer) for layer in entry[1].layers]
    return cache


# Decoder position tables (``embed_positions``) indexed by absolute position with no offset, whose output a hook
# can replace by each row's own positions.
EXPLICIT_POSITIONS = ("MarianSinusoidalPositionalEmbedding",)


def _cache_from(config: Any, layers: Sequence[tuple[Tensor, Tensor]]) -> DynamicCache:
    """A DynamicCache holding the given (B, H, T, D) tensors as they are (no concatenation copy)."""
    cache = _empty_cache(config)
    cache_layers: list[Any] = list(cache.layers)
    if len(cache_layers) != len(layers):
        cache_layers = [DynamicLayer() for _ in layers]
        cache.layers = cache_layers
    for layer, (k, v) in zip(cache_layers, layers, strict=True):
        if getattr(layer, "is_sliding", False) and k.shape[-2] + 1 > layer.sliding_window:
            raise SearchInputError(f"sequences of {k.shape[-2] + 1} tokens reach the model's sliding attention "
                                   f"window ({layer.sliding_window}); search is limited to sequences within it")
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = k.shape[-2]
    return cache


def position_limit(config: Any) -> int | None:
    """How many positions the model's position embeddings hold (``max_position_embeddings`` or GPT-2's
    ``n_positions``), or None where they are not limited."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _last_hidden(hidden_states: Sequence[Tensor]) -> Tensor:
    """(B, d) last layer at the last position, copied: a view would keep the whole (B, T, d) output alive."""
    return hidden_states[-1][:, -1].clone()


def _stack_kv(cache: DynamicCache, positions: slice) -> Tensor:
    """(L, 2, B, H, n, D) keys and values of the given positions of every layer."""
    layers: list[Any] = list(cache.layers)
    return torch.stack([torch.stack((layer.keys[:, :, positions], layer.values[:, :, positions]))
                        for layer in layers])


class _HFBase:
    model: PreTrainedModel

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, eos_id: int | None = None,
                 extra_masked_ids: Sequence[int] = ()):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.eos_id = self._find_eos(eos_id)
        self.masked_ids = tuple(sorted(
            i for i in {*self._default_masked_ids(), *token_ids("extra_masked_ids", extra_masked_ids, self.vocab_size)}
            if i is not None and i != self.eos_id and 0 <= i < self.vocab_size))
        self._mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=model.device)
        self._mask[list(self.masked_ids)] = True

    def _find_eos(self, eos_id: int | None) -> int:
        """``eos_id`` if given, else the first EOS id of the generation config, config or tokenizer; a token id of
        the model's vocabulary."""
        if eos_id is not None:
            return token_id("eos_id", eos_id, self.vocab_size)
        candidates = [getattr(getattr(self.model, "generation_config", None), "eos_token_id", None),
                      self.config.eos_token_id,
                      getattr(self.tokenizer, "eos_token_id", None)]
        for c in candidates:
            if isinstance(c, list | tuple) and c:
                c = c[0]
            if c is not None:
                return token_id("eos_id (the model's EOS token id)", c, self.vocab_size)
        raise SearchInputError(
            f"{type(self.model).__name__} has no EOS token id in its config, generation config or tokenizer; "
            "pass eos_id=... (mode search needs to know which token ends an output)")

    def _default_masked_ids(self) -> set[int | None]:
        tok = self.tokenizer
        return {self.config.pad_token_id, getattr(tok, "pad_token_id", None), getattr(tok, "unk_token_id", None)}

    def _check_positions(self, n: int, what: str) -> None:
        """Raise unless a sequence of ``n`` tokens fits the model's position embeddings (where they are limited)."""
        limit = position_limit(self.config)
        if limit is not None and n > limit:
            raise SearchInputError(f"{what} of {n} tokens exceeds the model's {limit} positions")

    def _normalise(self, logits: Tensor) -> Tensor:
        """(..., V) logits -> log-probs over the non-masked tokens, float32."""
        logits = logits[..., : self.vocab_size].float()
        return check_finite(torch.log_softmax(logits.masked_fill(self._mask, float("-inf")), dim=-1))

    def signature(self) -> dict[str, Any]:
        return {
            "model": getattr(self.config, "_name_or_path", "") or type(self.model).__name__,
            "architecture": type(self.model).__name__,
            "eos_id": self.eos_id,
            "masked_ids": list(self.masked_ids),
            "dtype": str(self.model.dtype).removeprefix("torch."),
        }

    def logprobs(self, state: HFState) -> Tensor:
        return state.logprobs

    def cache_bytes(self, state: HFState) -> int:
        """Bytes of the rows' newest keys and values (one storage per batch), plus the source's encodings for the
        root: what keeping the state's rows costs (``decoding.protocol.CacheBytes``)."""
        tensors: list[Tensor | None] = [n.kv for n in state.nodes]
        if any(n.parent is None for n in state.nodes):
            tensors += [state.source.encoder_hidden, *(t for kv in state.source.cross_kv or [] for t in kv)]
        return storage_bytes(tensors)

    def hidden(self, state: HFState) -> Tensor:
        """(n, d) final-layer hidden state at each row's last position: the input of the LM head."""
        return state.hidden

    def select(self, state: HFState, rows: Tensor) -> HFState:
        idx = rows.tolist()
        return HFState([state.nodes[i] for i in idx], state.logprobs[rows], state.source, state.hidden[rows])

    def without_logprobs(self, state: HFState) -> HFState:
        n = len(state.nodes)
        return HFState(state.nodes, state.logprobs.new_empty(n, 0), state.source, state.hidden.new_empty(n, 0))

    def concat(self, states: Sequence[HFState]) -> HFState:
        source = states[0].source
        if any(s.source is not source for s in states):
            raise SearchInputError("cannot batch rows of different sources into one state")
        return HFState([n for s in states for n in s.nodes], torch.cat([s.logprobs for s in states]), source,
                       torch.cat([s.hidden for s in states]))

    def _gather(self, nodes: Sequence[_KVNode]) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Left-padded per-layer (B, H, T, D) caches of the rows' paths and the (B, T) attention mask."""
        paths = [torch.cat(n.path(), dim=3) if n.parent is not None else n.kv for n in nodes]
        t_max = max(p.shape[3] for p in paths)
        n_layers, _, heads, _, dim = paths[0].shape
        kv = paths[0].new_zeros(n_layers, 2, len(nodes), heads, t_max, dim)
        mask = torch.zeros(len(nodes), t_max, dtype=torch.long, device=kv.device)
        for b, p in enumerate(paths):
            kv[:, :, b, :, t_max - p.shape[3]:] = p
            mask[b, t_max - p.shape[3]:] = 1
        return [(kv[layer, 0], kv[layer, 1]) for layer in range(n_layers)], mask

    def _new_nodes(self, cache: DynamicCache, parents: Sequence[_KVNode]) -> list[_KVNode]:
        kv = _stack_kv(cache, slice(-1, None))  # (L, 2, B, H, 1, D)
        return [_KVNode(kv[:, :, b], p, p.length + 1) for b, p in enumerate(parents)]


class HFCausalLM(_HFBase):
    """A decoder-only model; the source is the prompt (token ids, e.g. a chat template already applied).

    Masked: the pad and unk tokens (when they are not EOS). An empty source falls back to the BOS token."""

    def _prompt(self, source_ids: Sequence[int]) -> tuple[int, ...]:
        ids = as_ids(source_ids)
        if not ids:
            bos = self.config.bos_token_id if self.config.bos_token_id is not None else getattr(
                self.tokenizer, "bos_token_id", None)
            if bos is None:
                raise SearchInputError("empty prompt and the model has no BOS token to start from")
            ids = (int(bos),)
        self._check_positions(len(ids), "input")
        return ids

    def start(self, source_ids: Sequence[int]) -> HFState:
        ids = self._prompt(source_ids)
        input_ids = torch.tensor([ids], device=self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, past_key_values=DynamicCache(config=self.config),
                             use_cache=True, output_hidden_states=True)
        root = _KVNode(_stack_kv(out.past_key_values, slice(None))[:, :, 0], None, len(ids))
        return HFState([root], self._normalise(out.logits[:, -1]), _Source(ids), _last_hidden(out.hidden_states))

    def extend(self, state: HFState, tokens: Tensor) -> HFState:
        parents = state.nodes
        self._check_positions(max(p.length for p in parents) + 1, "input")
        layers, mask = self._gather(parents)
        mask = torch.cat([mask, mask.new_ones(len(parents), 1)], dim=1)
        positions = torch.tensor([[p.length] for p in parents], device=mask.device)
        with torch.inference_mode():
            out = self.model(input_ids=tokens.view(-1, 1).to(mask.device), attention_mask=mask,
                             position_ids=positions, past_key_values=_cache_from(self.config, layers),
                             use_cache=True, output_hidden_states=True)
        return HFState(self._new_nodes(out.past_key_values, parents), self._normalise(out.logits[:, -1]),
                       state.source, _last_hidden(out.hidden_states))

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        prompt = self._prompt(source_ids)
        target = as_ids(target_ids, "target_ids")
        if not target:
            return torch.zeros(0)
        ids = torch.tensor([prompt + target], device=self.model.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1: -1]
        lp = self._normalise(logits)
        return lp.gather(1, ids[0, len(prompt):, None])[:, 0]


class HFSeq2SeqLM(_HFBase):
    """An encoder-decoder model (Marian, T5, BART). The encoder runs once per source; the decoder starts from
    ``decoder_start_token_id``, which the adapter feeds and never counts as an output token.

    Masked: pad, unk, and the decoder-start token where it is not EOS. Sources, and decoder sequences (the start
    token and the output), longer than the model's position embeddings are refused."""

    def __init__(self, model: PreTrainedModel, tokenizer: Any = None, *, eos_id: int | None = None,
                 extra_masked_ids: Sequence[int] = ()):
        start = model.config.decoder_start_token_id
        if start is None:
            start = getattr(model.generation_config, "decoder_start_token_id", None)
        if start is None:
            raise SearchInputError(f"{type(model).__name__} has no decoder_start_token_id in its config")
        self.decoder_start_id = int(start)
        super().__init__(model, tokenizer, eos_id=eos_id, extra_masked_ids=extra_masked_ids)
        # A decoder whose absolute position table we can index per row batches rows of any lengths in one forward;
        # others derive every row's position from the (padded) cache length, so rows are grouped by length.
        embed = getattr(model.get_decoder(), "embed_positions", None)
        self._row_positions: Tensor | None = None
        self._explicit_positions = type(embed).__name__ in EXPLICIT_POSITIONS
        if embed is not None and self._explicit_positions:
            embed.register_forward_hook(self._positions_of_rows)

    def _positions_of_rows(self, module: Any, _args: Any, output: Tensor) -> Tensor | None:
        """The position table at each row's own position (B, 1, d) while ``_row_positions`` is set."""
        return None if self._row_positions is None else module.weight[self._row_positions].to(output.dtype)

    def _default_masked_ids(self) -> set[int | None]:
        return super()._default_masked_ids() | {self.decoder_start_id}

    def _encode(self, source_ids: Sequence[int]) -> _Source:
        ids = as_ids(source_ids)
        if not ids:
            raise SearchInputError("empty source: an encoder-decoder model needs at least one source token "
                                   "(tokenize with the tokenizer, which appends </s>)")
        self._check_positions(len(ids), "source")
        with torch.inference_mode():
            hidden = self.model.get_encoder()(input_ids=torch.tensor([ids], device=self.model.device))
        return _Source(ids, encoder_hidden=hidden.last_hidden_state)

    def start(self, source_ids: Sequence[int]) -> HFState:
        source = self._encode(source_ids)
        cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        with torch.inference_mode():
            out = self.model(encoder_outputs=(source.encoder_hidden,),
                             decoder_input_ids=torch.tensor([[self.decoder_start_id]], device=self.model.device),
                             past_key_values=cache, use_cache=True, output_hidden_states=True)
        cross = out.past_key_values.cross_attention_cache
        source.cross_kv = [(layer.keys, layer.values) for layer in cross.layers]
        root = _KVNode(_stack_kv(out.past_key_values.self_attention_cache, slice(None))[:, :, 0], None, 1)
        return HFState([root], self._normalise(out.logits[:, -1]), source, _last_hidden(out.decoder_hidden_states))

    def extend(self, state: HFState, tokens: Tensor) -> HFState:
        self._check_positions(max(node.length for node in state.nodes) + 1, "decoder sequence")
        if self._explicit_positions:
            new, lp, h = self._step(state.source, state.nodes, tokens)
            return HFState(new, lp, state.source, h)
        groups: dict[int, list[int]] = {}
        for row, node in enumerate(state.nodes):
            groups.setdefault(node.length, []).append(row)
        nodes: list[_KVNode | None] = [None] * len(state.nodes)
        logprobs = state.logprobs.new_empty(len(state.nodes), self.vocab_size)
        hidden: Tensor | None = None
        for rows in groups.values():
            parents = [state.nodes[r] for r in rows]
            new, lp, h = self._step(state.source, parents, tokens[rows])
            for r, n, in zip(rows, new, strict=True):
                nodes[r] = n
            logprobs[rows] = lp
            if hidden is None:
                hidden = h.new_empty(len(state.nodes), h.shape[1])
            hidden[rows] = h
        assert hidden is not None
        return HFState([n for n in nodes if n is not None], logprobs, state.source, hidden)

    def _step(self, source: _Source, parents: Sequence[_KVNode],
              tokens: Tensor) -> tuple[list[_KVNode], Tensor, Tensor]:
        assert source.cross_kv is not None and source.encoder_hidden is not None
        n = len(parents)
        self_layers, mask = self._gather(parents)
        cross = _cache_from(self.config, [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                                          for k, v in source.cross_kv])
        cache = EncoderDecoderCache(_cache_from(self.config, self_layers), cross)
        hidden = source.encoder_hidden.expand(n, -1, -1)
        padded = {}
        if self._explicit_positions:  # left-padded rows of any lengths, each at its own position
            padded["decoder_attention_mask"] = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
            self._row_positions = torch.tensor([[p.length] for p in parents], device=hidden.device)
        try:
            with torch.inference_mode():
                out = self.model(encoder_outputs=(hidden,), decoder_input_ids=tokens.view(-1, 1).to(hidden.device),
                                 past_key_values=cache, use_cache=True, output_hidden_states=True, **padded)
        finally:
            self._row_positions = None
        return (self._new_nodes(out.past_key_values.self_attention_cache, parents),
                self._normalise(out.logits[:, -1]), _last_hidden(out.decoder_hidden_states))

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        source = self._encode(source_ids)
        target = as_ids(target_ids, "target_ids")
        if not target:
            return torch.zeros(0)
        dec = torch.tensor([(self.decoder_start_id, *target[:-1])], device=self.model.device)
        with torch.inference_mode():
            logits = self.model(encoder_outputs=(source.encoder_hidden,), decoder_input_ids=dec).logits[0]
        lp = self._normalise(logits)
        return lp.gather(1, torch.tensor(target, device=lp.device)[:, None])[:, 0]
