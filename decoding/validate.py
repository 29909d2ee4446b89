"""Validation of search arguments and token ids, in one place (DESIGN.md §4).

Every search hands its arguments, by name, to ``search_inputs`` before it calls the model: each name has one rule
here, so an argument means the same and is checked the same in every search. Adapters, toy models and constraints
check the token ids and sizes they are built with by the same rules (``integer``, ``real``, ``token_id``,
``token_ids``). A violation raises ``SearchInputError`` naming the argument and the value.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection
from numbers import Real
from typing import TYPE_CHECKING, Any

from torch import Tensor

from decoding.types import SearchInputError

if TYPE_CHECKING:
    from decoding.protocol import LanguageModel


def integer(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int, if it is an integer (a bool or a float is not) in [minimum, maximum]."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        span = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SearchInputError(f"{name} must be an integer {span}, got {value!r}")
    return number


def real(name: str, value: Any, *, above: float | None = None, at_most: float | None = None) -> float:
    """``value`` as a float, if it is a finite real number (not a bool) with ``above < value <= at_most``."""
    try:
        number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and (above is None or number > above) and (at_most is None or number <= at_most)):
        bounds = ([f"> {above}"] if above is not None else []) + ([f"<= {at_most}"] if at_most is not None else [])
        requirement = f"a finite number {' and '.join(bounds)}".strip()
        raise SearchInputError(f"{name} must be {requirement}, got {value!r}")
    return number


def token_id(name: str, value: Any, vocab_size: int) -> int:
    """``value`` as an int, if it is a token id of a vocabulary of ``vocab_size`` tokens."""
    return integer(name, value, minimum=0, maximum=vocab_size - 1)


def token_ids(name: str, ids: Any, vocab_size: int | None = None) -> tuple[int, ...]:
    """``ids`` (a sequence or 1-D tensor of integers) as a tuple of ints; with ``vocab_size``, each a token id of
    that vocabulary, otherwise each >= 0."""
    if isinstance(ids, Tensor):
        if ids.dim() != 1:
            raise SearchInputError(f"{name} must be one sequence of token ids, got a tensor of shape "
                                   f"{tuple(ids.shape)}")
        ids = ids.tolist()
    _collection(name, ids)
    maximum = None if vocab_size is None else vocab_size - 1
    return tuple(integer(f"{name}[{i}]", t, minimum=0, maximum=maximum) for i, t in enumerate(ids))


def search_inputs(lm: LanguageModel, source_ids: Any, **arguments: Any) -> tuple[int, ...]:
    """Check every named search argument by its rule, and that ``min_len <= max_len`` and the classifier predicts
    the attribute where given; return the source as a tuple of token ids of ``lm``'s vocabulary."""
    for name, value in arguments.items():
        _RULES[name](name, value)
    if "min_len" in arguments and arguments["min_len"] > arguments["max_len"]:
        raise SearchInputError(f"max_len ({arguments['max_len']}) < min_len ({arguments['min_len']}): no output "
                               "length is allowed")
    if "classifier" in arguments and arguments["classifier"].attribute.name != arguments["attribute"].name:
        raise SearchInputError(f"the classifier predicts {arguments['classifier'].attribute.name!r}, not "
                               f"{arguments['attribute'].name!r}")
    return token_ids("source_ids", source_ids, lm.vocab_size)


def _collection(name: str, value: Any) -> None:
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise SearchInputError(f"{name} must be a collection (a list, tuple, ...), got {value!r}")


def _objects(what: str, *methods: str) -> Callable[[str, Any], None]:
    """The rule of a collection of instances (not classes) with the given callable methods."""

    def rule(name: str, value: Any) -> None:
        _collection(name, value)
        for i, item in enumerate(value):
            _instance(f"{name}[{i}]", item, what, *methods)

    return rule


def _instance(name: str, value: Any, what: str, *methods: str) -> None:
    if isinstance(value, type) or not all(callable(getattr(value, m, None)) for m in methods):
        raise SearchInputError(f"{name} must be {what}, got {value!r}")


def _lengths(name: str, value: Any) -> None:
    _collection(name, value)
    for i, n in enumerate(value):
        integer(f"{name}[{i}]", n, minimum=0)
    if not value:
        raise SearchInputError(f"{name} must be a non-empty collection of non-negative integers, got {value!r}")


def _optional(rule: Callable[[str, Any], object]) -> Callable[[str, Any], object]:
    return lambda name, value: None if value is None else rule(name, value)


def _count(minimum: int) -> Callable[[str, Any], int]:
    return lambda name, value: integer(name, value, minimum=minimum)


_RULES: dict[str, Callable[[str, Any], object]] = {
    "max_len": _count(0),
    "min_len": _count(0),
    "beam_size": _count(1),
    "n": _count(1),
    "batch_size": _count(1),
    "seed_beam_size": _count(0),
    "max_nodes": _optional(_count(1)),
    "candidates": _optional(_count(1)),
    "top_k": _optional(_count(1)),
    "seed": lambda name, value: integer(name, value, minimum=0, maximum=2 ** 64 - 1),
    "max_seconds": _optional(lambda name, value: real(name, value, above=0.0)),
    "max_memory_mb": _optional(lambda name, value: real(name, value, above=0.0)),
    "temperature": lambda name, value: real(name, value, above=0.0),
    "top_p": _optional(lambda name, value: real(name, value, above=0.0, at_most=1.0)),
    "lower_bound": _optional(lambda name, value: real(name, value, at_most=0.0)),
    "lengths": _lengths,
    "constraints": _objects("a Constraint", "restrict", "accepts"),
    "scorers": _objects("a Scorer (a callable)", "__call__"),
    "attribute": lambda name, value: _instance(name, value, "an Attribute", "__call__", "accepts"),
    "classifier": lambda name, value: _instance(name, value, "a Classifier", "log_q"),
}
