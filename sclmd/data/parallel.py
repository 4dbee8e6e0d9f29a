"""Rendering and synthesis jobs over local processes, in order, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_in_processes(
    fn: Callable[[Job], Result],
    jobs: Iterable[Job],
    workers: int,
    desc: str,
    unit: str,
    progress: bool = True,
    initializer: Callable[[], None] | None = None,
    chunks_per_worker: int = 8,
) -> list[Result]:
    """`fn` over `jobs` in `workers` processes (0: one per core; 1: in this process), results in job order.

    Small chunks keep the bar moving while amortising the pickling."""
    jobs = list(jobs)
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=initializer) as pool:
                for result in pool.map(fn, jobs, chunksize=max(1, len(jobs) // (workers * chunks_per_worker))):
                    results.append(result)
                    bar.update()
    return results
