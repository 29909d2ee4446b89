"""Peak resident memory of one call, for the benchmarks: measured in a fresh process, because a process's resident
memory never shrinks back to a level a later measurement could start from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rise_mb(call: Callable[[], Any]) -> float:
    """How far this process's resident memory rises above its level before ``call`` while it runs (MB; sampled
    every 2 ms)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = resident(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            done.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        call()
    finally:
        done.set()
        thread.join()
    return max(peak[0] - base, 0) / 2**20


def in_fresh_process(script: str, function: str, *args: Any) -> Any:
    """``function(*args)`` of the benchmark ``script`` (a file of this folder) run in a new Python process; its
    result, which must be JSON."""
    module = Path(script).stem
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import {module}; "
            f"print(json.dumps({module}.{function}(*{list(args)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
