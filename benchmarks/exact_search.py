"""Benchmark: ``decoding.exact_search`` against a plain depth-first branch and bound on SmolLM2-135M-Instruct.

    python benchmarks/exact_search.py [--prompts P [P ...]] [--max-len 30] [--max-seconds 600]

For every prompt (chat template applied) both searches look for the certified mode of p(y | x) over outputs of
at most ``max_len`` tokens (EOS excluded), with the adapter's masking (unk, id 0, never emitted), and the script
prints nodes scored, forward calls and wall time of each, the speed ratio (baseline wall / exact_search wall),
and whether both returned the same mode (same token ids, log-probabilities within 1e-4).

The baseline lives here only. It is written directly against the Hugging Face model, not the adapter: one
``transformers.DynamicCache``, one forward call per scored node (a single token on top of the cache), and a
``cache.crop(-1)`` to roll the cache back when it backtracks, so no key/value state is ever recomputed. It
visits children in order of decreasing log-probability and prunes every prefix whose log-probability is <= the
incumbent's; EOS may end an output at any length 0..max_len, and at depth max_len only EOS may follow.

Both searches are seeded with the same incumbent, ``decoding.beam_search(lm, ids, beam_size=4,
max_len=max_len)``, and the seed's cost (nodes, forward calls, wall time) is included in BOTH columns: inside
``exact_search`` it is part of the call, and the baseline runs the same beam search inside its timed region.
The ``seed`` row shows that shared cost on its own (its wall time as timed inside the baseline's run). Both get
the same ``max_seconds`` budget, seed included.

Wall times are CPU wall-clock and sensitive to other load on the machine; the script prints the load average
before and after. Log-probabilities are fp32 model outputs accumulated in float64; exact_search's batched,
left-padded forward and the baseline's single-row forward differ in the last float32 bits (~1e-5 over a
sequence), hence the 1e-4 tolerance.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import decoding  # noqa: E402
from decoding.hf import HFCausalLM  # noqa: E402
from models.chat import prompt_ids  # noqa: E402

DEFAULT_PROMPTS = ("Name a color.", "What is the capital of France?", "Translate to French: cat",
                   "What is 2+2?")
LOGPROB_TOL = 1e-4


@dataclass
class Run:
    """One search's outcome and cost (seed included)."""

    token_ids: tuple[int, ...] | None
    logprob: float
    certified: bool
    nodes: int
    forward_calls: int
    wall_s: float
    seed: decoding.SearchResult | None = None
    seed_wall_s: float = 0.0
    tree_mb: float = math.nan  # what exact_search's tree allocated (stats.extra)
    bytes_per_node: float = math.nan
    limit_s: float = math.nan


class DepthFirstBaseline:
    """Depth-first branch and bound scoring one node per forward call, on one DynamicCache with rollback."""

    def __init__(self, model: Any, *, eos_id: int, masked_ids: Sequence[int], max_len: int,
                 max_seconds: float | None):
        self.model = model
        self.eos = eos_id
        self.max_len = max_len
        self.max_seconds = max_seconds
        vocab = int(model.get_output_embeddings().weight.shape[0])
        self.mask = torch.zeros(vocab, dtype=torch.bool, device=model.device)
        self.mask[list(masked_ids)] = True
        self.nodes = 0
        self.forward_calls = 0
        self.best_lp = -math.inf
        self.best_ids: tuple[int, ...] | None = None
        self.budget_hit = False
        self._t0 = 0.0

    def search(self, prompt: Sequence[int], incumbent: decoding.Hypothesis | None, t0: float) -> None:
        self._t0 = t0
        if incumbent is not None:
            self.best_lp, self.best_ids = incumbent.logprob, incumbent.token_ids
        cache = DynamicCache(config=self.model.config)
        root = self._forward(torch.tensor([list(prompt)], device=self.model.device), cache)
        self._visit((), 0.0, root, cache)

    def _forward(self, input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Run the new token(s) on top of the cache (which grows by them); next-token log-probs, float64."""
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.nodes += 1
        self.forward_calls += 1
        logits = out.logits[0, -1, : self.mask.shape[0]].float().masked_fill(self.mask, float("-inf"))
        return torch.log_softmax(logits, dim=-1).double()

    def _visit(self, prefix: tuple[int, ...], logprob: float, lp: torch.Tensor, cache: DynamicCache) -> None:
        """``cache`` holds prompt + prefix; it is left as it was found (unless the budget is hit)."""
        end = logprob + float(lp[self.eos])
        if end > self.best_lp:
            self.best_lp, self.best_ids = end, prefix + (self.eos,)
        if len(prefix) >= self.max_len:
            return
        scores = lp + logprob
        scores[self.eos] = float("-inf")
        keep = torch.nonzero(scores > self.best_lp).view(-1)
        if not keep.numel():
            return
        values = scores[keep]
        order = torch.sort(values, descending=True, stable=True).indices  # ties: lower token id first
        for token, value in zip(keep[order].tolist(), values[order].tolist(), strict=True):
            if not value > self.best_lp:  # sorted: every later sibling is no better
                return
            if self.max_seconds is not None and time.perf_counter() - self._t0 >= self.max_seconds:
                self.budget_hit = True
                return
            child = self._forward(torch.tensor([[token]], device=self.model.device), cache)
            self._visit(prefix + (token,), value, child, cache)
            if self.budget_hit:
                return
            cache.crop(-1)


def run_baseline(lm: HFCausalLM, prompt: Sequence[int], *, max_len: int, max_seconds: float | None,
                 seed_beam_size: int) -> Run:
    t0 = time.perf_counter()
    seed = decoding.beam_search(lm, prompt, beam_size=seed_beam_size, max_len=max_len)
    seed_wall = time.perf_counter() - t0
    incumbent = max(seed.hypotheses, key=lambda h: h.logprob, default=None)
    dfs = DepthFirstBaseline(lm.model, eos_id=lm.eos_id, masked_ids=lm.masked_ids, max_len=max_len,
                             max_seconds=max_seconds)
    dfs.search(prompt, incumbent, t0)
    wall = time.perf_counter() - t0
    return Run(dfs.best_ids, dfs.best_lp, not dfs.budget_hit, dfs.nodes + seed.stats.nodes,
               dfs.forward_calls + seed.stats.forward_calls, wall, seed, seed_wall)


def run_exact(lm: Any, prompt: Sequence[int], *, max_len: int, max_seconds: float | None,
              seed_beam_size: int, batch_size: int) -> Run:
    """exact_search's outcome and cost, and (``limit_s``) the limit of the forwards it ran."""
    recording = Recording(lm)
    t0 = time.perf_counter()
    res = decoding.exact_search(recording, prompt, max_len=max_len, max_seconds=max_seconds,
                                batch_size=batch_size, seed_beam_size=seed_beam_size)
    wall = time.perf_counter() - t0
    best = res.best
    return Run(best.token_ids if best else None, best.logprob if best else -math.inf, res.certified,
               res.stats.nodes, res.stats.forward_calls, wall,
               limit_s=limit_seconds(lm, prompt, recording.calls, recording.starts),
               tree_mb=res.stats.extra.get("tree_mb", math.nan),
               bytes_per_node=res.stats.extra.get("bytes_per_node", math.nan))


class Recording:
    """An HF adapter that records, for every ``extend``, each row's cached length: the forwards a search ran."""

    def __init__(self, lm: Any):
        self.lm = lm
        self.calls: list[list[int]] = []
        self.starts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    def start(self, source: Sequence[int]) -> Any:
        self.starts += 1
        return self.lm.start(source)

    def extend(self, state: Any, tokens: torch.Tensor) -> Any:
        self.calls.append([node.length for node in state.nodes])
        return self.lm.extend(state, tokens)


def limit_seconds(lm: Any, source: Sequence[int], calls: Sequence[Sequence[int]], starts: int) -> float:
    """The limit of a search: the wall time of the same forwards (same rows at the same cached lengths, one new
    token each) run as plain model calls on ready contiguous, left-padded caches, with no search bookkeeping: only
    the model call is timed; plus ``starts`` times the prompt's (or source's) first forward. A causal LM gets
    explicit positions; an encoder-decoder the encoder output once, the cross-attention cache shared, and (Marian)
    each row's position through the adapter's position hook."""
    from transformers import EncoderDecoderCache

    from decoding.hf import HFSeq2SeqLM, _cache_from

    model, config = lm.model, lm.model.config
    seq2seq = isinstance(lm, HFSeq2SeqLM)
    t0 = time.perf_counter()
    root = lm.start(source)
    total = starts * (time.perf_counter() - t0)
    kv = root.nodes[0].kv  # (L, 2, H, n, D): a real cache, tiled to each call's length
    source_state = root.source
    for lengths in calls:
        n, t = len(lengths), max(lengths)
        reps = -(-t // kv.shape[3])
        past = kv.repeat(1, 1, 1, reps, 1)[:, :, :, :t][:, :, None].expand(-1, -1, n, -1, -1, -1).contiguous()
        mask = torch.zeros(n, t + 1, dtype=torch.long, device=kv.device)
        for row, length in enumerate(lengths):
            mask[row, t - length:] = 1
        layers = [(past[i, 0], past[i, 1]) for i in range(past.shape[0])]
        tokens = torch.full((n, 1), lm.eos_id, device=kv.device)
        with torch.inference_mode():
            if seq2seq:
                cross = _cache_from(config, [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                                             for k, v in source_state.cross_kv])
                pair = EncoderDecoderCache(_cache_from(config, layers), cross)
                hidden = source_state.encoder_hidden.expand(n, -1, -1)
                lm._row_positions = torch.tensor([[x] for x in lengths], device=kv.device) \
                    if lm._explicit_positions else None
                t0 = time.perf_counter()
                model(encoder_outputs=(hidden,), decoder_input_ids=tokens, past_key_values=pair, use_cache=True,
                      decoder_attention_mask=mask)
                total += time.perf_counter() - t0
                lm._row_positions = None
            else:
                cache = _cache_from(config, layers)
                positions = torch.tensor([[x] for x in lengths], device=kv.device)
                t0 = time.perf_counter()
                model(input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=cache,
                      use_cache=True)
                total += time.perf_counter() - t0
    return total


def show(tok: Any, ids: tuple[int, ...] | None) -> str:
    return "(none)" if ids is None else repr(tok.decode(list(ids), skip_special_tokens=False))


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-len", type=int, default=30)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--batch-size", type=int, default=16, help="exact_search's batch size")
    ap.add_argument("--seed-beam-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verses", type=int, default=6, help="encoder-decoder models: test verses searched")
    ap.add_argument("--max-source-tokens", type=int, default=24, help="encoder-decoder models: longest source")
    args = ap.parse_args(argv)

    from models import load_lm

    torch.set_num_threads(args.threads)
    lm, tok, _ = load_lm(args.model)
    if not isinstance(lm, HFCausalLM):
        return seq2seq_main(lm, tok, args)
    print(f"model {args.model} ({lm.signature()['dtype']}), eos {lm.eos_id}, masked {list(lm.masked_ids)}, "
          f"max_len {args.max_len}, max_seconds {args.max_seconds:g}, exact batch_size {args.batch_size}, "
          f"seed beam {args.seed_beam_size}, torch threads {torch.get_num_threads()}")
    print("Seed (beam search) cost is included in both searches' nodes, forward calls and wall time.\n")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    decoding.beam_search(lm, prompt_ids(tok, "Hi."), beam_size=2, max_len=3)  # warm-up, untimed
    seed_label = f"seed: beam {args.seed_beam_size} (in both)"

    totals = {"exact": [0, 0, 0.0], "baseline": [0, 0, 0.0], "seed": [0, 0, 0.0]}
    limit_total = 0.0
    all_ok = True
    summary: list[tuple[str, ...]] = [("prompt", "exact wall s", "limit s", "exact / limit", "baseline wall s",
                                       "ratio", "same mode")]
    for question in args.prompts:
        prompt = prompt_ids(tok, question)
        ours = run_exact(lm, prompt, max_len=args.max_len, max_seconds=args.max_seconds,
                         seed_beam_size=args.seed_beam_size, batch_size=args.batch_size)
        base = run_baseline(lm, prompt, max_len=args.max_len, max_seconds=args.max_seconds,
                            seed_beam_size=args.seed_beam_size)
        seed, seed_wall = base.seed, base.seed_wall_s
        assert seed is not None
        ratio = base.wall_s / ours.wall_s
        same_ids = ours.token_ids == base.token_ids
        close = abs(ours.logprob - base.logprob) <= LOGPROB_TOL
        ok = ours.certified and base.certified and same_ids and close
        all_ok &= ok

        print(f"=== {question!r} ({len(prompt)} prompt tokens)")
        rows = [("search", "nodes", "forward calls", "wall s", "certified", "logprob", "output")]
        seed_best = seed.best
        rows.append((seed_label, str(seed.stats.nodes), str(seed.stats.forward_calls),
                     f"{seed_wall:.2f}", "-", f"{seed_best.logprob:.6f}" if seed_best else "-",
                     show(tok, seed_best.token_ids if seed_best else None)))
        for name, r in (("exact_search", ours), ("baseline DFS", base)):
            rows.append((name, str(r.nodes), str(r.forward_calls), f"{r.wall_s:.2f}",
                         "yes" if r.certified else "NO (budget hit)", f"{r.logprob:.6f}", show(tok, r.token_ids)))
        print(table(rows))
        print(f"speed ratio (baseline wall / exact_search wall): {ratio:.2f}x; exact_search's forwards as plain "
              f"model calls (the limit): {ours.limit_s:.2f} s, exact wall / limit {ours.wall_s / ours.limit_s:.2f}; "
              f"search tree {ours.tree_mb:.1f} MB, {ours.bytes_per_node / 1024:.1f} KiB per expanded node")
        limit_total += ours.limit_s
        if ok:
            print(f"same certified mode: yes (|delta logprob| = {abs(ours.logprob - base.logprob):.2e})\n")
        else:
            problems = [f"{n} not certified" for n, r in (("exact_search", ours), ("baseline", base))
                        if not r.certified]
            if not same_ids:
                problems.append(f"different token ids: exact {ours.token_ids} vs baseline {base.token_ids}")
            if not close:
                problems.append(f"logprobs differ by {abs(ours.logprob - base.logprob):.2e} > {LOGPROB_TOL}")
            print("!!! MISMATCH / NOT CERTIFIED: " + "; ".join(problems) + "\n")
        for key, r in (("exact", ours), ("baseline", base)):
            totals[key][0] += r.nodes
            totals[key][1] += r.forward_calls
            totals[key][2] += r.wall_s
        totals["seed"][0] += seed.stats.nodes
        totals["seed"][1] += seed.stats.forward_calls
        totals["seed"][2] += seed_wall
        summary.append((question, f"{ours.wall_s:.2f}", f"{ours.limit_s:.2f}", f"{ours.wall_s / ours.limit_s:.2f}",
                        f"{base.wall_s:.2f}", f"{ratio:.2f}x", "yes" if ok else "NO"))

    print(f"=== total over {len(args.prompts)} prompts")
    rows = [("search", "nodes", "forward calls", "wall s")]
    for name, key in ((seed_label, "seed"), ("exact_search", "exact"), ("baseline DFS", "baseline")):
        n, f, w = totals[key]
        rows.append((name, str(n), str(f), f"{w:.2f}"))
    print(table(rows))
    ex, ba = totals["exact"][2], totals["baseline"][2]
    se = totals["seed"][2]
    summary.append(("TOTAL", f"{ex:.2f}", f"{limit_total:.2f}", f"{ex / limit_total:.2f}", f"{ba:.2f}",
                    f"{ba / ex:.2f}x", "yes" if all_ok else "NO"))
    print(f"speed ratio (baseline wall / exact_search wall): {ba / ex:.2f}x; "
          f"with the seed's wall time subtracted from both (approx.): {(ba - se) / max(ex - se, 1e-9):.2f}x\n")
    print(table(summary))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\nALL SAME CERTIFIED MODE" if all_ok else "\n!!! SOME PROMPTS DIFFER OR ARE NOT CERTIFIED (see above)")
    return 0 if all_ok else 1


def seq2seq_main(lm: Any, tok: Any, args: argparse.Namespace) -> int:
    """An encoder-decoder (the shipped Marian model): exact search on test verses against its limit (no DFS
    baseline: that one is written for causal LMs)."""
    from experiments.corpora import load_corpus

    verses = load_corpus("bible-de-en", split="test")
    sources = [ids for ids in (list(tok(s)["input_ids"]) for s in verses["source"])
               if len(ids) <= args.max_source_tokens][: args.verses]
    print(f"model {args.model}, {len(sources)} test verses of <= {args.max_source_tokens} source tokens, max_len "
          f"{args.max_len}, max_seconds {args.max_seconds:g}, batch_size {args.batch_size}, seed beam "
          f"{args.seed_beam_size}, torch threads {torch.get_num_threads()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    decoding.beam_search(lm, sources[0], beam_size=2, max_len=3)  # warm-up, untimed
    header = ("verse", "source tokens", "nodes", "forward calls", "wall s", "limit s", "wall / limit", "nodes/s",
              "tree MB", "KiB/node", "certified")
    rows: list[tuple[str, ...]] = [header]
    totals = [0, 0, 0.0, 0.0, 0]
    for i, source in enumerate(sources):
        r = run_exact(lm, source, max_len=args.max_len, max_seconds=args.max_seconds,
                      seed_beam_size=args.seed_beam_size, batch_size=args.batch_size)
        rows.append((str(i), str(len(source)), str(r.nodes), str(r.forward_calls), f"{r.wall_s:.2f}",
                     f"{r.limit_s:.2f}", f"{r.wall_s / r.limit_s:.2f}", f"{r.nodes / r.wall_s:.0f}",
                     f"{r.tree_mb:.1f}", f"{r.bytes_per_node / 1024:.1f}", "yes" if r.certified else "NO"))
        for j, v in enumerate((r.nodes, r.forward_calls, r.wall_s, r.limit_s, int(r.certified))):
            totals[j] += v
    n, f, w, limit, certified = totals
    rows.append(("TOTAL", "", str(n), str(f), f"{w:.2f}", f"{limit:.2f}", f"{w / limit:.2f}", f"{n / w:.0f}",
                 "", "", f"{certified}/{len(sources)}"))
    print(table(rows))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
