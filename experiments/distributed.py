"""Scale-out on Ray (DESIGN.md §9): the pending units of an experiment, sharded over Ray actors.

The driver (``lq run ... --ray``) never loads a model. Each actor calls the experiment's *recipe* (a picklable
``Callable[[], experiments.loop.Work]``: a module-level function of the experiment and its config) once, which loads
the model on the worker's device and builds the examples and methods, and reports the work's units. The driver keeps
the units its run directory lacks, splits them into shards of consecutive units and gives each actor the next shard
as soon as it has fewer than ``IN_FLIGHT`` (so an actor never waits for the driver); the actor returns each unit's
rows, built by the same row builder as the in-process loop, and the driver appends them unit by unit as shards
arrive. Only the driver writes the run directory (its lock held), so a run on Ray resumes exactly like an in-process
one, and either resumes the other.

Faults: an actor that dies (killed, out of memory, its node lost) has its shards handed to the other actors and is
replaced by a fresh one (at most ``workers`` replacements in a run); a shard that has killed ``RETRIES`` actors
fails the run. An error raised inside a search (bad input, non-finite log-probs) is raised in the driver as it is
in-process, not retried.

Ray is the optional extra ``[dist]`` (``pip install -e '.[dist]'``); it is imported only when a run asks for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from experiments.config import RUN_KEYS, build_config, check
from experiments.loop import Example, Method, UnitRows, Work
from experiments.rundir import RunDir
from models.errors import InputError

__all__ = ["RayOptions", "Worker", "search_on_ray"]

IN_FLIGHT = 2  # shards queued per actor
RETRIES = 3  # actors a shard may outlive before the run fails


@dataclass(frozen=True)
class RayOptions:
    """Where and how a run executes on Ray (config keys ``ray``, ``ray_workers``, ``ray_threads``, ``ray_gpus``,
    ``ray_shard``; ``lq run --ray [ADDRESS]``).

    ``address``: ``"local"`` starts a Ray instance for this run (unless this process is connected to one already);
    ``"auto"`` connects to the cluster ``ray start`` made on this machine; ``host:port`` or ``ray://host:port`` to
    that cluster; ``""`` lets Ray choose (``RAY_ADDRESS``, else the latest ``ray start`` cluster, else local).
    ``workers``: actors, each loading the model once (default: as many as the cluster's CPUs, or GPUs, hold);
    ``threads``: torch threads and Ray CPUs per actor; ``gpus``: GPUs per actor (set ``device`` in the experiment's
    config to match); ``shard``: units per shard."""

    address: str = "local"
    workers: int | None = None
    threads: int = 1
    gpus: float = 0.0
    shard: int = 1

    def __post_init__(self) -> None:
        check("ray_*", {
            "workers must be >= 1 or None": self.workers is None or self.workers >= 1,
            "threads must be >= 1": self.threads >= 1,
            "gpus must be >= 0": self.gpus >= 0,
            "shard must be >= 1": self.shard >= 1,
        })

    @classmethod
    def from_keys(cls, keys: dict[str, Any]) -> RayOptions | None:
        """The options the ``RUN_KEYS`` of a config ask for; None (in-process) without ``ray``."""
        if keys.get("ray") is None:
            return None
        return build_config(cls, "ray_*", {k.removeprefix("ray_") if k != "ray" else "address": v
                                         for k, v in keys.items() if k in RUN_KEYS})


class Worker:
    """A Ray actor's state: the work of one recipe, built once, and the rows of the units asked for."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.units: dict[str, tuple[Example, Method]] = {}
        self.rows: UnitRows | None = None

    def load(self, recipe: Callable[[], Work]) -> tuple[str, list[str]]:
        """Build the work; its model name and every unit, in order."""
        work = recipe()
        self.units, self.rows = work.units(), work.row_builder()
        return work.model, list(self.units)

    def search(self, units: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
        assert self.rows is not None, "Worker.search before Worker.load"
        return [(unit, self.rows(*self.units[unit])) for unit in units]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: install the toolkit's extra with `pip install -e '.[dist]'` (or "
                         "`LQ_EXTRAS=dist bash setup.sh`)") from None
    return ray


def _connect(ray: Any, options: RayOptions) -> bool:
    """Connect to (or start) Ray; whether this call started the connection (and so should end it)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if options.address == "local":
        kwargs["address"] = "local"
        if options.workers:
            kwargs["num_cpus"] = options.workers * options.threads
    elif options.address:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise InputError(f"cannot connect to the Ray cluster {options.address or '(default)'}: {err}") from err
    return True


def _workers(ray: Any, options: RayOptions) -> int:
    if options.workers:
        return options.workers
    resources = ray.cluster_resources()
    n = int(resources.get("CPU", 1) // options.threads)
    if options.gpus:
        n = min(n, int(resources.get("GPU", 0) // options.gpus))
    if n < 1:
        raise InputError(f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs) "
                         f"holds no worker of {options.threads} CPUs and {options.gpus:g} GPUs")
    return n


@dataclass
class _Shard:
    units: list[str]
    attempts: int = 0


class _Pool:
    """The actors of one recipe: spawned, loading, ready; replaced when they die."""

    def __init__(self, ray: Any, recipe: Callable[[], Work], options: RayOptions, n: int):
        self.ray, self.recipe, self.options = ray, recipe, options
        self.actor_class = ray.remote(Worker).options(num_cpus=options.threads, num_gpus=options.gpus)
        self.loading: dict[Any, Any] = {}  # load() ref -> actor
        self.ready: list[Any] = []
        self.replacements = n
        for _ in range(n):
            self.spawn()

    def spawn(self) -> None:
        actor = self.actor_class.remote(self.options.threads)
        self.loading[actor.load.remote(self.recipe)] = actor

    def replace(self, actor: Any) -> None:
        """Drop a dead actor and start another while replacements remain."""
        if actor in self.ready:
            self.ready.remove(actor)
        self.ray.kill(actor, no_restart=True)
        if self.replacements > 0:
            self.replacements -= 1
            self.spawn()

    def close(self) -> None:
        for actor in [*self.ready, *self.loading.values()]:
            self.ray.kill(actor, no_restart=True)


def search_on_ray(run: RunDir, recipe: Callable[[], Work], options: RayOptions) -> None:
    """``experiments.loop.execute`` on Ray: every unit of ``recipe()`` that ``run`` lacks, searched by Ray actors
    and appended to ``run`` as each shard arrives (see the module docstring)."""
    ray = _ray()
    started = _connect(ray, options)
    pool = _Pool(ray, recipe, options, _workers(ray, options))
    try:
        _drive(ray, run, pool, options)
    finally:
        pool.close()
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get``; an error a worker raised is raised as itself (one line from ``lq``), its worker's traceback
    chained."""
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as err:
        if isinstance(err.cause, Exception):
            raise err.cause from err
        raise


def _drive(ray: Any, run: RunDir, pool: _Pool, options: RayOptions) -> None:
    from ray.exceptions import RayActorError

    units: list[str] | None = None
    queue: deque[_Shard] = deque()
    in_flight: dict[Any, tuple[Any, _Shard]] = {}  # search() ref -> (actor, shard)
    done = run.done
    bar: tqdm[Any] | None = None

    def requeue(actor: Any) -> None:
        """The actor died: its shards go back to the front of the queue, it is replaced."""
        for ref, (owner, shard) in list(in_flight.items()):
            if owner == actor:
                del in_flight[ref]
                shard.attempts += 1
                if shard.attempts >= RETRIES:
                    raise RuntimeError(f"Ray workers died {shard.attempts} times on the units {shard.units}")
                queue.appendleft(shard)
        pool.replace(actor)

    try:
        while units is None or queue or in_flight:
            if not pool.loading and not pool.ready:
                raise RuntimeError("every Ray worker died (see the Ray logs: out of memory?); the run directory "
                                   "holds what they finished: re-run to resume")
            for actor in pool.ready:
                while queue and sum(owner == actor for owner, _ in in_flight.values()) < IN_FLIGHT:
                    shard = queue.popleft()
                    in_flight[actor.search.remote(shard.units)] = (actor, shard)
            [ref], _ = ray.wait([*pool.loading, *in_flight], num_returns=1)
            if ref in pool.loading:
                actor = pool.loading.pop(ref)
                try:
                    model, listed = _get(ray, ref)
                except RayActorError:
                    pool.replace(actor)
                    continue
                if units is None:
                    units = listed
                    todo = [u for u in units if u not in done]
                    queue.extend(_Shard(todo[i:i + options.shard]) for i in range(0, len(todo), options.shard))
                    bar = tqdm(total=len(todo), desc=f"searching {model} on Ray", unit="search", disable=not todo)
                elif listed != units:
                    raise RuntimeError("Ray workers built different units from one recipe: are all machines on the "
                                       "same commit, with the same data and models?")
                pool.ready.append(actor)
                continue
            actor, shard = in_flight.pop(ref)
            try:
                results = _get(ray, ref)
            except RayActorError:
                in_flight[ref] = (actor, shard)
                requeue(actor)
                continue
            for unit, rows in results:
                if unit not in done:  # a shard is only ever received once; this guards the run directory anyway
                    run.append(unit, rows)
                    done.add(unit)
            assert bar is not None
            bar.update(len(results))
    finally:
        if bar is not None:
            bar.close()

