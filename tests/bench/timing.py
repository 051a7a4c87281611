"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    """Milliseconds of `repeat` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
