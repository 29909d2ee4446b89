"""A user message in a model's chat template, and back: the prompt ids that instruction-tuned models answer, and
the message text an answer must not copy (``decoding.NotDegenerate(source_text=...)``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["prompt_ids", "user_message"]

_SENTINEL = "\x00"


def prompt_ids(tokenizer: Any, message: str) -> list[int]:
    """``message`` as the user turn of the tokenizer's chat template with the assistant's turn opened; a model
    without a template gets the message alone."""
    if not getattr(tokenizer, "chat_template", None):
        return list(tokenizer(message)["input_ids"])
    ids = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                        tokenize=True)
    return [int(i) for i in (ids["input_ids"] if hasattr(ids, "keys") else ids)]


def user_message(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """ids made by ``prompt_ids`` -> the user's message: the decoded prompt without the template's text before and
    after the message (found by rendering the template around a sentinel). Ids that are not such a prompt decode
    whole."""
    if not getattr(tokenizer, "chat_template", None):
        return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True,
                                             tokenize=False)
    before, after = rendered.split(_SENTINEL)

    def message(ids: Sequence[int]) -> str:
        text = tokenizer.decode(list(ids))
        if text.startswith(before) and text.endswith(after):
            return text[len(before):len(text) - len(after)]
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    return message
