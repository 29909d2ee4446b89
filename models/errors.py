"""The errors that describe bad input from the user rather than a fault of the toolkit.

``lq`` shows an ``InputError`` (and a search's ``decoding.SearchInputError``) as a one-line message ``lq: error:
...`` with exit status 1, never as a traceback; nothing else turns errors into messages. Torch-free, so configs
raise them cheaply.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError"]


class InputError(Exception):
    """Bad input: an unknown model or corpus, a missing install, a bad config."""


class ConfigError(InputError, ValueError):
    """A config (or a ``--set`` override, or a run directory's config) has an unknown key or a bad value."""
