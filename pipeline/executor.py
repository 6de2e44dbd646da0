"""Executors for the shard builder and the evaluation: Ray tasks (the only module of either
importing Ray) or a plain loop in this process (benchmarks, debugging, ``eval.workers: 0``).

Ray is embedded by default (``ray.init()`` on this machine); ``ray.address`` or the
``RAY_ADDRESS`` environment variable connects to a cluster instead. One task per shard,
``shards.cpus_per_task`` CPUs each, at most ``shards.max_in_flight`` tasks submitted at once,
retried ``shards.max_retries`` times when a worker dies or an I/O error escapes the task.
Tasks return small results (stats, result rows); results are handed back in submission order
(or not kept at all, ``keep_results=False``: ``on_done`` consumes them as they finish, so a
long stream of tasks holds only its in-flight window). ``tasks`` may be any iterable (a
generator is consumed lazily, at most ``max_in_flight`` items ahead).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from textboost.config import RayConfig

T = TypeVar("T")
R = TypeVar("R")

# Transient storage errors worth retrying (FileNotFoundError of an input is a reject, not this).
RETRY_EXCEPTIONS: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]


def ensure_ray(ray_cfg: RayConfig, dashboard: bool = False) -> str | None:
    """Start (or join) Ray once per process: embedded unless an address is configured.

    ``dashboard``: start the embedded instance with its dashboard (Ray Train's
    placement-group cleaner polls the state API through it); returns its URL when this call
    started one, else None.
    """
    import ray

    if ray.is_initialized():
        return None
    address = ray_cfg.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, ignore_reinit_error=True)
        return None
    context = ray.init(
        num_cpus=ray_cfg.num_cpus or None,
        include_dashboard=dashboard,
        ignore_reinit_error=True,
    )
    return context.dashboard_url if dashboard else None


def shutdown_ray() -> None:
    """Stop this process's Ray (if started): Ray workers' late output ends here."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@dataclass(frozen=True)
class TaskOptions:
    """How a stream of tasks runs: the Ray resources of each task (``run_ray``), the window
    of tasks in flight, Ray's retries, and whether the results are kept and returned."""

    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_in_flight: int = 8
    max_retries: int = 3
    keep_results: bool = True


def run_local(
    fn: Callable[[T], R], tasks: Iterable[T], on_done: Callable[[R], None], options: TaskOptions
) -> list[R]:
    """The same task function in a plain loop, in this process (only ``keep_results`` of
    ``options`` applies)."""
    results = []
    for task in tasks:
        result = fn(task)
        on_done(result)
        if options.keep_results:
            results.append(result)
    return results


def run_ray(
    fn: Callable[[T], R], tasks: Iterable[T], on_done: Callable[[R], None], options: TaskOptions,
    ray_cfg: RayConfig,
) -> list[R]:  # fmt: skip
    """One Ray task per item, a bounded window of tasks in flight, results in task order."""
    import ray

    ensure_ray(ray_cfg)
    remote = ray.remote(fn).options(
        num_cpus=options.cpus_per_task,
        num_gpus=options.gpus_per_task,
        max_retries=options.max_retries,
        retry_exceptions=RETRY_EXCEPTIONS,
    )
    results: list[Any] = []
    pending: dict[Any, int] = {}
    queue = iter(enumerate(tasks))
    exhausted = False
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < options.max_in_flight:
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                pending[remote.remote(item[1])] = item[0]
                if options.keep_results:
                    results.append(None)
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                result = ray.get(ref)
                if options.keep_results:
                    results[index] = result
                on_done(result)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results


def run_tasks(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    on_done: Callable[[R], None],
    *,
    executor: str,
    ray_cfg: RayConfig,
    keep_results: bool = True,
    **ray_options: float | int,
) -> list[R]:
    """Dispatch to ``run_ray`` (``ray_options``: the ``TaskOptions`` ``cpus_per_task``,
    ``gpus_per_task``, ``max_in_flight``, ``max_retries``) or ``run_local``
    (``shards.executor``, ``eval.workers``)."""
    options = TaskOptions(keep_results=keep_results, **ray_options)
    if executor == "local" or (isinstance(tasks, list | tuple) and not tasks):
        return run_local(fn, tasks, on_done, options)
    return run_ray(fn, tasks, on_done, options, ray_cfg)
