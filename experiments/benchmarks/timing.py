"""Timing for the benchmarks: medians, and runners timed in alternation.

A machine whose load changes during a benchmark slows whatever runs at that moment; timing
the contestants in turn (repetition r of each, then r + 1) slows them alike, so their ratio
stays meaningful even when the absolute figures do not.
"""

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Median wall seconds of fn() over `repeats` calls."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def alternate(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
  """{name: median seconds of one call}, each runner warmed up once, then called in turn."""
  for run in runners.values():
    run()  # compile, warm up
  times = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      times[name].append(median_seconds(run, 1))
  return {name: statistics.median(t) for name, t in times.items()}
