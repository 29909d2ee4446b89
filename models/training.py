"""One resumable training loop for every model the toolkit trains (``lq train mt``, ``nar``, ``recurrence``).

A training run owns ``<out>/checkpoint``: the weights, optimiser and scheduler, the RNG, the loop's ``state``
(step, epoch, elapsed training time, learning curve, smoothed loss) and the run's ``meta`` (config, data hash,
command), replaced atomically. A restart resumes from it; a checkpoint of another config (budget keys aside) or
other data is refused. Training time is monotonic and survives restarts, so ``max_minutes`` bounds the whole run.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ConfigError

BUDGET_KEYS = ("max_steps", "max_minutes", "max_epochs", "max_target_tokens", "checkpoint_minutes", "eval_every",
               "threads")
"""Config keys a resumed run may change: how long it trains and how often it reports, not what it trains."""
STATE_FILE = "state.pt"

if TYPE_CHECKING:
    import torch


def fixed(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in BUDGET_KEYS}


@dataclass(frozen=True)
class Budget:
    max_steps: int
    max_minutes: float
    eval_every: int
    checkpoint_minutes: float = 10.0


class Checkpoint:
    """``<out>/checkpoint``: ``state.pt`` with every ``objects`` entry's ``state_dict``, the torch RNG, the loop
    state and ``meta``; ``files(folder)`` may add files (a tokenizer) to it."""

    def __init__(self, out: Path, meta: dict[str, Any], objects: Mapping[str, Any],
                 files: Callable[[Path], object] | None = None):
        self.path = Path(out) / "checkpoint"
        self.meta, self.objects, self.files = meta, objects, files

    def exists(self) -> bool:
        return (self.path / STATE_FILE).is_file()

    def resume(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Load the objects' states and the RNG and return the loop state, or None without a checkpoint. A key
        missing from an older checkpoint's config counts as having its value in ``defaults``."""
        import torch

        if not self.exists():
            return None
        saved = torch.load(self.path / STATE_FILE, weights_only=False)
        config = fixed({**(defaults or {}), **saved["meta"]["config"]})
        if config != fixed(self.meta["config"]) or saved["meta"].get("data_hash") != self.meta.get("data_hash"):
            raise ConfigError(f"{self.path.parent} holds a checkpoint of a different config or data; use another "
                              "output folder")
        for name, obj in self.objects.items():
            obj.load_state_dict(saved[name])
        torch.set_rng_state(saved["torch_rng"])
        state: dict[str, Any] = saved["state"]
        return state

    def save(self, state: dict[str, Any]) -> None:
        import torch

        tmp = self.path.with_name("checkpoint.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.files is not None:
            self.files(tmp)
        torch.save({**{name: obj.state_dict() for name, obj in self.objects.items()},
                    "torch_rng": torch.get_rng_state(), "state": state, "meta": self.meta}, tmp / STATE_FILE)
        shutil.rmtree(self.path, ignore_errors=True)
        tmp.rename(self.path)


class EpochBatches:
    """Length-bucketed batches (``batch_size x longest <= max_tokens``), reshuffled per epoch by the seed; ``next``
    takes the state's next batch, moving ``state["epoch"]`` / ``state["batch_in_epoch"]`` on."""

    def __init__(self, lengths: Sequence[int], max_tokens: int, seed: int):
        self.lengths, self.max_tokens, self.seed = lengths, max_tokens, seed
        self._cached: tuple[int, list[list[int]]] | None = None

    def of_epoch(self, epoch: int) -> list[list[int]]:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, _batches(self.lengths, self.max_tokens, random.Random(self.seed * 1000 + epoch)))
        return self._cached[1]

    def next(self, state: dict[str, Any]) -> list[int]:
        if state["batch_in_epoch"] >= len(self.of_epoch(state["epoch"])):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
        state["batch_in_epoch"] += 1
        return self.of_epoch(state["epoch"])[state["batch_in_epoch"] - 1]

    def epochs(self, state: dict[str, Any]) -> float:
        """Epochs done, fractional."""
        return float(state["epoch"] + state["batch_in_epoch"] / len(self.of_epoch(state["epoch"])))


def _batches(lengths: Sequence[int], max_tokens: int, rng: random.Random) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        longest = max(longest, lengths[i])
        if cur and longest * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, longest = [], lengths[i]
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def fresh_state(**extra: Any) -> dict[str, Any]:
    return {"step": 0, "elapsed": 0.0, "curve": [], "running": None, **extra}


def run(loss: Callable[[dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]],
        evaluate: Callable[[], dict[str, float]], state: dict[str, Any], budget: Budget, checkpoint: Checkpoint, *,
        optimizer: torch.optim.Optimizer, scheduler: Any, params: Sequence[torch.nn.Parameter], desc: str,
        loss_key: str = "train_loss", smoothing: float = 0.98,
        stop: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train until ``budget`` (or ``stop(state)``) ends it: each step ``loss(state)`` returns the batch loss and
    what the progress bar shows; AdamW-style step with gradients clipped to norm 1 and ``scheduler.step()``. Every
    ``eval_every`` steps, and at the end, a learning-curve row (step, epoch if kept, training time, the smoothed
    loss as ``loss_key``, ``evaluate()``); a checkpoint every ``checkpoint_minutes`` and at the end. Returns the
    state."""
    import torch
    from tqdm import tqdm

    def row() -> dict[str, Any]:
        return {"step": state["step"], **({"epoch": state["epoch"]} if "epoch" in state else {}),
                "elapsed_s": round(state["elapsed"], 1), loss_key: state["running"], **evaluate()}

    started, last_save = time.monotonic() - state["elapsed"], time.monotonic()
    bar = tqdm(total=budget.max_steps, initial=state["step"], unit="step", desc=desc)
    while (state["step"] < budget.max_steps and state["elapsed"] < budget.max_minutes * 60
           and not (stop is not None and stop(state))):
        value, shown = loss(state)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        v = value.item()
        state["running"] = v if state["running"] is None else smoothing * state["running"] + (1 - smoothing) * v
        state["elapsed"] = time.monotonic() - started
        bar.update(1)
        bar.set_postfix(**shown, loss=f"{state['running']:.3f}")
        if state["step"] % budget.eval_every == 0:
            state["curve"].append(row())
            bar.write(json.dumps(state["curve"][-1]))
        if time.monotonic() - last_save > budget.checkpoint_minutes * 60:
            checkpoint.save(state)
            last_save = time.monotonic()
    bar.close()
    if not state["curve"] or state["curve"][-1]["step"] != state["step"]:
        state["curve"].append(row())
    checkpoint.save(state)
    return state
