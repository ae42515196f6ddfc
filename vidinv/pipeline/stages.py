"""Threaded streaming stages joined by bounded queues.

A :class:`StagePipeline` runs a source iterator and a chain of stages, each in its own thread; stage
``i`` reads the items stage ``i - 1`` put into a :class:`queue.Queue` of at most ``maxsize`` items,
so at most ``maxsize`` items wait between two stages whatever the length of the stream (memory does
not grow with the video). The caller iterates over the last stage's outputs in its own thread (the
main thread, which therefore receives SIGINT / SIGTERM).

A stage is ``(name, fn)`` with ``fn(inputs: Iterator) -> Iterator``: a generator that may hold a few
items (batching, look-ahead) and must yield its outputs in the order it wants them downstream.

Errors and cancellation: the first exception raised in any stage (or in the caller while iterating,
e.g. KeyboardInterrupt) sets a stop event; every blocked ``get``/``put`` wakes up within 0.1 s and
raises :class:`Cancelled` in its thread, so each stage's ``finally``/``with`` blocks run (the video
writer deletes its temporary file). The first stage exception is re-raised in the caller.

Timings: :attr:`StagePipeline.stats` gives per stage the busy time (wall time in the stage thread
minus the time blocked on its input and output queues) and the items it produced.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Cancelled", "StageStats", "StagePipeline"]

_END = object()
_POLL_S = 0.1


class Cancelled(Exception):
    """Raised inside a stage thread when the pipeline is stopped (another stage failed, or the caller
    stopped iterating / was interrupted)."""


@dataclass
class StageStats:
    """Per-stage counters: ``busy_s`` seconds of work (queue waits excluded), ``items`` produced."""

    name: str
    busy_s: float = 0.0
    items: int = 0
    wait_s: float = 0.0

    @property
    def items_per_s(self) -> float:
        return self.items / self.busy_s if self.busy_s > 0 else float("inf")


class _Error:
    def __init__(self, exc: BaseException):
        self.exc = exc


class StagePipeline:
    """Run ``source`` and ``stages`` in threads with bounded queues (see the module doc).

    Args:
        source: iterable producing the first items (run in its own thread, named ``source_name``).
        stages: ``[(name, fn), ...]``; ``fn`` maps an iterator of inputs to an iterator of outputs.
        maxsize: queue capacity between two stages (>= 1).
        source_name: name of the source stage in :attr:`stats`.

    Iterate over the pipeline (once) to get the last stage's outputs; leaving the loop early or an
    exception in the loop body cancels the stages (use it in a ``with`` block or call :meth:`close`).
    """

    def __init__(self, source: Iterable, stages: Sequence[tuple[str, Callable[[Iterator], Iterator]]], *,
                 maxsize: int = 4, source_name: str = "decode"):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.source = source
        self.stages = list(stages)
        self.maxsize = int(maxsize)
        self.stop = threading.Event()
        self.stats = [StageStats(source_name)] + [StageStats(n) for n, _ in self.stages]
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=self.maxsize) for _ in range(len(self.stages) + 1)]
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._started = False
        self.wall_s = 0.0
        self._t0 = 0.0

    # ------------------------------------------------------------ queue helpers
    def _put(self, q: queue.Queue, item, st: StageStats) -> None:
        t = time.perf_counter()
        try:
            while True:
                if self.stop.is_set():
                    raise Cancelled()
                try:
                    q.put(item, timeout=_POLL_S)
                    return
                except queue.Full:
                    continue
        finally:
            st.wait_s += time.perf_counter() - t

    def _inputs(self, q: queue.Queue, st: StageStats) -> Iterator:
        while True:
            t = time.perf_counter()
            try:
                while True:
                    if self.stop.is_set():
                        raise Cancelled()
                    try:
                        item = q.get(timeout=_POLL_S)
                        break
                    except queue.Empty:
                        continue
            finally:
                st.wait_s += time.perf_counter() - t
            if item is _END:
                return
            if isinstance(item, _Error):  # an upstream stage failed: stop here too
                raise Cancelled()
            yield item

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None and not isinstance(exc, Cancelled):
                self._error = exc
        self.stop.set()

    # ------------------------------------------------------------ threads
    def _run(self, st: StageStats, produce: Callable[[], Iterator], out: queue.Queue) -> None:
        t0 = time.perf_counter()
        try:
            for item in produce():
                st.items += 1
                self._put(out, item, st)
            self._put(out, _END, st)
        except BaseException as exc:
            self._fail(exc)
            try:
                out.put_nowait(_Error(exc))
            except queue.Full:
                pass
        finally:
            st.busy_s = max(0.0, time.perf_counter() - t0 - st.wait_s)

    def start(self) -> None:
        """Start the threads (done by the first iteration)."""
        if self._started:
            return
        self._started = True
        self._t0 = time.perf_counter()
        self._threads.append(threading.Thread(
            target=self._run, args=(self.stats[0], lambda: iter(self.source), self._queues[0]),
            name=f"vidinv-{self.stats[0].name}", daemon=True))
        for i, (_, fn) in enumerate(self.stages):
            st = self.stats[i + 1]
            q_in = self._queues[i]
            self._threads.append(threading.Thread(
                target=self._run, args=(st, (lambda fn=fn, q_in=q_in, st=st: fn(self._inputs(q_in, st))),
                                        self._queues[i + 1]),
                name=f"vidinv-{st.name}", daemon=True))
        for t in self._threads:
            t.start()

    def __iter__(self) -> Iterator:
        self.start()
        q = self._queues[-1]
        try:
            while True:
                try:
                    item = q.get(timeout=_POLL_S)
                except queue.Empty:
                    if self.stop.is_set() and not any(t.is_alive() for t in self._threads):
                        break
                    continue
                if item is _END:
                    break
                if isinstance(item, _Error):
                    break
                yield item
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self, timeout: float = 60.0) -> None:
        """Stop every stage (if still running) and wait for the threads to finish their cleanup."""
        if not self._started:
            return
        if any(t.is_alive() for t in self._threads):
            self.stop.set()  # after a normal end the threads are exiting anyway
        for t in self._threads:
            t.join(timeout)
        self.wall_s = time.perf_counter() - self._t0

    @property
    def error(self) -> BaseException | None:
        """The first exception raised in a stage, or None."""
        return self._error

    def __enter__(self) -> StagePipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
