"""Benchmark: ``decoding.beam_search`` against Hugging Face ``generate(num_beams=k)`` at identical outputs.

    python benchmarks/beam_search.py [--model bible-de-en-marian] [--n 30] [--beams 5 10 50] [--threads 2]

Both search the same sources (the shipped model: the first ``n`` test verses of at most 24 tokens; a causal LM:
the first ``n`` chatterbot test prompts, chat template applied) for at most ``max_len`` tokens with the
adapter's masked tokens suppressed, no length penalty (``length_penalty=0``) and ``early_stopping=True`` (stop
once ``k`` hypotheses have finished, as ``beam_search`` does). The script prints, per beam size, both wall
times (each source searched one at a time, batch 1, in the same process, alternating), their ratio
(ours / generate: below 1 is faster) and on how many sources the best outputs are the same tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import decoding  # noqa: E402


def sources(tok: Any, seq2seq: bool, n: int) -> list[list[int]]:
    if seq2seq:
        from experiments.corpora import load_corpus

        verses = load_corpus("bible-de-en", split="test")["source"]
        return [ids for ids in (list(tok(s)["input_ids"]) for s in verses) if len(ids) <= 24][:n]
    from experiments.loop import chat_examples

    return [ex.source_ids for ex in chat_examples("chatterbot", "test", n, tok, 30)]


def generate(lm: Any, source: Sequence[int], k: int, max_len: int) -> tuple[int, ...]:
    """HF's beam search: its best output's tokens after the prompt / decoder start, EOS included."""
    model = lm.model
    ids = torch.tensor([list(source)], device=model.device)
    seq2seq = model.config.is_encoder_decoder
    with torch.inference_mode():
        out = model.generate(input_ids=ids, num_beams=k, num_return_sequences=1, do_sample=False,
                             max_new_tokens=max_len + 1, length_penalty=0.0, early_stopping=True,
                             suppress_tokens=list(lm.masked_ids), eos_token_id=lm.eos_id,
                             pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None
                             else lm.eos_id)
    tokens = out[0, 1:] if seq2seq else out[0, ids.shape[1]:]
    kept = tokens.tolist()
    return tuple(kept[: kept.index(lm.eos_id) + 1] if lm.eos_id in kept else kept)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="bible-de-en-marian")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--beams", type=int, nargs="+", default=[5, 10, 50])
    ap.add_argument("--max-len", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from decoding.hf import HFSeq2SeqLM
    from models import load_lm

    torch.set_num_threads(args.threads)
    lm, tok, _ = load_lm(args.model)
    todo = sources(tok, isinstance(lm, HFSeq2SeqLM), args.n)
    print(f"model {args.model}, {len(todo)} sources, max_len {args.max_len}, torch threads "
          f"{torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    decoding.beam_search(lm, todo[0], beam_size=2, max_len=3)  # warm-up, untimed
    generate(lm, todo[0], 2, 3)
    print(f"{'k':>4}  {'ours s':>8}  {'generate s':>10}  {'ours / generate':>15}  same best output")
    for k in args.beams:
        ours_s = theirs_s = 0.0
        same = 0
        for source in todo:
            t0 = time.perf_counter()
            best = decoding.beam_search(lm, source, beam_size=k, max_len=args.max_len).best
            ours_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs = generate(lm, source, k, args.max_len)
            theirs_s += time.perf_counter() - t0
            same += best is not None and best.token_ids == theirs
        print(f"{k:>4}  {ours_s:>8.2f}  {theirs_s:>10.2f}  {ours_s / theirs_s:>15.2f}  {same}/{len(todo)}")
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
