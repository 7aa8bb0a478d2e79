"""torch.distributed, as the commands use it: who am I, share the results, fail together.

A command started by ``torchrun --nproc_per_node N -m spurious_diag ...`` (or across nodes
that share a filesystem) finds ``WORLD_SIZE``, ``RANK`` and the rendezvous address in its
environment; :func:`process_group_from_env` joins the group and leaves it at the end. Without
``torchrun`` nothing is initialised and every helper here is the one-process identity.

The ranks exchange Python objects only (rows of results, errors), never tensors, so the
group is always ``gloo``: it runs on CPU-only nodes and beside CUDA work alike.
"""

from __future__ import annotations

import logging
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

__all__ = ["World", "current_world", "process_group_from_env", "all_gather", "fail_together", "raise_if_any_failed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the group: ``rank`` in ``0 .. size-1`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the outputs."""
        return self.rank == 0


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def current_world() -> World:
    """The initialised default group's rank and size, or the one-process :class:`World`."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


@contextmanager
def process_group_from_env(timeout_s: float = 1800.0) -> Iterator[World]:
    """Join the ``gloo`` group that ``torchrun`` describes in the environment, for the span of a
    command; a no-op (the one-process world) when ``WORLD_SIZE`` is unset or 1, or when a group is
    already initialised (the caller owns it).

    Args:
        timeout_s: how long a collective waits for the slowest rank, in seconds.
    """
    dist = _dist()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current_world()
        return
    from datetime import timedelta

    dist.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    world = current_world()
    logger.debug("joined the process group as rank %d of %d", world.rank, world.size)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in one process."""
    world = current_world()
    if world.size == 1:
        return [obj]
    gathered: list[Any] = [None] * world.size
    _dist().all_gather_object(gathered, obj)
    return gathered


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (the package's errors do), else a ``RuntimeError`` with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def raise_if_any_failed(error: Optional[BaseException]) -> None:
    """Collective: every rank passes its error (or None). If any rank failed, every rank raises
    the error of the lowest failed rank, so all of them print the same line and exit with the
    same code; otherwise it returns on all ranks.

    Raises:
        The lowest failed rank's error (the same type, message and exit code on every rank).
    """
    errors = all_gather(None if error is None else _portable(error))
    failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
    if not failed:
        return
    rank, first = failed[0]
    if error is not None and rank == current_world().rank:
        raise error  # this rank's own error, with its traceback
    raise first


@contextmanager
def fail_together() -> Iterator[None]:
    """Run a block on every rank; if it raised on any rank, raise on all (:func:`raise_if_any_failed`).

    A rank that fails alone would otherwise leave the others waiting in their next collective.
    ``KeyboardInterrupt`` and ``SystemExit`` are not shared: they end this process at once.
    """
    error: Optional[BaseException] = None
    try:
        yield
    except Exception as exc:
        error = exc
    raise_if_any_failed(error)
