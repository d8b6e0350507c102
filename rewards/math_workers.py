"""A small pool of math-verify worker processes with a hard per-answer timeout.

Why processes: sympy can run for hours (or exhaust memory) on a hostile answer such as ``10^{10^{10}}``, and
math-verify's built-in timeout uses ``signal.alarm``, which only works on the main thread — TRL may call
rewards from a worker thread. So each answer is judged in a long-lived worker process; one that overruns its
timeout is killed (SIGKILL) and replaced, and that answer scores 0. Workers are plain ``python -m`` children
talking JSON lines over pipes, not ``multiprocessing`` children, so they work whatever the caller's start
method, threads or ``__main__`` guard are.

    pool = MathVerifyPool(workers=2, timeout=5.0)
    pool.judge([("\\frac{1}{2}", "0.5"), ("3", "4")])  # -> [True, False]
    pool.close()
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

# A worker imports sympy and math-verify before it reports ready; on a loaded machine that can take a while,
# and it is not the answer's fault, so it does not count against the per-answer timeout.
_STARTUP_TIMEOUT_S = 120.0
_READY = b"ready"


class _Worker:
    """One worker process plus the bytes read from it that do not yet form a whole line."""

    def __init__(self, memory_limit_mb: int) -> None:
        env = dict(os.environ)
        package_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewards.math_workers", str(memory_limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=package_parent,
        )
        self.fd = self.process.stdout.fileno()
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()
        self.job: int | None = None  # index of the pair it is judging
        self.deadline = 0.0

    def send(self, job: int, gold: str, predicted: str, timeout: float) -> bool:
        """Send one pair; False if the worker has died."""
        try:
            self.process.stdin.write(json.dumps([job, gold, predicted]).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        self.job, self.deadline = job, time.monotonic() + timeout
        return True

    def read_lines(self) -> list[bytes] | None:
        """Read what is available; return the complete lines, or None at end of file (worker died)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass  # closing stdin flushes; the reader is already gone


class MathVerifyPool:
    """Judge (gold, predicted) answer pairs with math-verify in parallel worker processes.

    ``timeout`` (seconds) bounds each pair; a pair that overruns it, or whose worker crashes, is judged
    False and its worker is replaced. ``memory_limit_mb`` caps each worker's address space so that a memory
    bomb fails fast with MemoryError (which math-verify turns into "not equal").

    >>> pool = MathVerifyPool(workers=1, timeout=5.0)
    >>> pool.judge([("x+1", "1+x")])
    [True]
    >>> pool.close()
    """

    def __init__(self, workers: int = 2, timeout: float = 5.0, memory_limit_mb: int = 2048) -> None:
        if workers < 1:
            raise ValueError(f"math-verify pool needs at least 1 worker, got {workers}")
        if timeout <= 0:
            raise ValueError(f"math-verify timeout must be positive, got {timeout}")
        self.size = workers
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def judge(self, pairs: list[tuple[str, str]]) -> list[bool | None]:
        """Return math-verify's verdict for each (gold, predicted) pair, in order.

        None = the gold could not be parsed; False also covers timeouts and crashed workers.
        """
        if not pairs:
            return []
        with self._lock:
            return self._judge(pairs)

    def _judge(self, pairs: list[tuple[str, str]]) -> list[bool | None]:
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self.memory_limit_mb))
        results: list[bool | None] = [False] * len(pairs)
        pending = collections.deque(range(len(pairs)))
        unfinished = len(pairs)
        while unfinished:
            for worker in self._workers:
                while worker.ready and worker.job is None and pending:
                    job = pending.popleft()
                    if not worker.send(job, *pairs[job], self.timeout):
                        pending.appendleft(job)
                        self._replace(worker)
                        break
            now = time.monotonic()
            waits = [w.deadline - now for w in self._workers if w.job is not None]
            waits += [w.started + _STARTUP_TIMEOUT_S - now for w in self._workers if not w.ready]
            readable, _, _ = select.select([w.fd for w in self._workers], [], [], max(0.0, min(waits)))
            for worker in [w for w in self._workers if w.fd in readable]:
                lines = worker.read_lines()
                if lines is None:
                    if not worker.ready:
                        raise RuntimeError(
                            "math-verify worker exited while starting (exit code "
                            f"{worker.process.wait()}); see its error output above"
                        )
                    if worker.job is not None:  # crashed on this answer: not equal
                        unfinished -= 1
                    self._replace(worker)
                    continue
                for line in lines:
                    if line == _READY:
                        worker.ready = True
                        continue
                    job, verdict = json.loads(line)
                    if job == worker.job:
                        results[job] = verdict
                        worker.job = None
                        unfinished -= 1
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.job is not None and now > worker.deadline:
                    unfinished -= 1  # timed out: results[job] stays False
                    self._replace(worker)
                elif not worker.ready and now > worker.started + _STARTUP_TIMEOUT_S:
                    self.close()
                    raise RuntimeError(f"math-verify worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        return results

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for measuring their CPU time)."""
        return [worker.process.pid for worker in self._workers]

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.memory_limit_mb)

    def close(self) -> None:
        """Stop all workers (they also exit on their own when this process goes away)."""
        for worker in self._workers:
            worker.kill()
        self._workers = []


_POOLS: dict[tuple[int, int, float], MathVerifyPool] = {}
_POOLS_LOCK = threading.Lock()


def default_workers() -> int:
    """Pool size when none is given: the CPUs this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def shared_pool(workers: int | None = None, timeout: float = 5.0) -> MathVerifyPool:
    """Return this process's pool for these settings, starting it on first use.

    Keyed by process id too: a forked child must not talk to its parent's workers.
    """
    key = (os.getpid(), workers or default_workers(), float(timeout))
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = MathVerifyPool(workers=key[1], timeout=key[2])
        return _POOLS[key]


@atexit.register
def _close_pools() -> None:
    for (pid, _, _), pool in _POOLS.items():
        if pid == os.getpid():
            pool.close()


# ------------------------------------------------------------ worker side


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, even if it is stuck inside sympy."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return  # not glibc/Linux: the worker still exits when it reads end-of-file
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _serve(memory_limit_mb: int) -> None:
    import logging
    import resource

    _die_with_parent()
    limit = memory_limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # math-verify warns once that its own timeout is off (we enforce ours) and on every parse failure.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    from rewards.math import math_verify_verdict

    math_verify_verdict("1", "1")  # import sympy and the LaTeX parser before reporting ready
    out = sys.stdout.buffer
    out.write(_READY + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        job, gold, predicted = json.loads(line)
        out.write(json.dumps([job, math_verify_verdict(gold, predicted)]).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
