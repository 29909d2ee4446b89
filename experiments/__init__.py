"""Experiments (one module each, ``main(...) -> run dir``), corpora, configs and the ``lq`` command line."""
