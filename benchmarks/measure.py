"""What every benchmark measures the same way: wall time and peak resident memory of the process tree."""
from __future__ import annotations

import threading
import time

import psutil


HOROVOD_RANK = "horovod.spark.task.gloo_exec_fn"  # the module a Horovod rank process runs (PeakMemory workers)


class PeakMemory:
    """Peak resident memory (bytes), sampled in a thread: of this process and all its descendants (the Spark JVM
    and its Python workers) together (`peak`), of this process alone (`peak_self`), and per worker (`worker_peaks`,
    pid -> bytes; `peak_worker` the largest): a Spark Python worker (what one task holds) by default, or the
    processes whose command line holds one of `workers` as an argument (a Horovod rank's module)."""

    def __init__(self, interval: float = 0.2, workers: tuple[str, ...] = ("pyspark.daemon", "pyspark.worker")):
        self.interval, self.workers, self.peak, self.peak_self = interval, workers, 0, 0
        self.worker_peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_worker(self) -> int:
        return max(self.worker_peaks.values(), default=0)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                    if any(m in p.cmdline() for m in self.workers):
                        self.worker_peaks[p.pid] = max(self.worker_peaks.get(p.pid, 0), rss)
                except psutil.NoSuchProcess:
                    continue
                total += rss
            self.peak, self.peak_self = max(self.peak, total), max(self.peak_self, me.memory_info().rss)
            self._stop.wait(self.interval)


def timed(fn) -> tuple[float, int, object]:
    """(seconds, peak bytes of the process tree, fn's result)."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return seconds, memory.peak, out
