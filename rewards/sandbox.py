"""Run untrusted Python programs (model output) in isolated, resource-limited processes.

Each program gets its own process tree, started through :mod:`rewards.sandbox_launcher`, with:

- wall-clock timeout (the whole process group and everything of its uid is SIGKILLed when it passes) and a
  CPU-time limit per process;
- limits on address space (memory), number of processes/threads, size of any file it writes (stdout and
  stderr go to files, so this also caps output), open files, and no core dumps;
- a fresh temporary working directory (also its ``HOME`` and ``TMPDIR``), deleted afterwards;
- an empty environment apart from a fixed ``PATH``/``LANG``/thread-count set — nothing of the caller's;
- stdin from the test (or ``/dev/null``);
- when the caller is root: an unprivileged uid/gid of its own (one per concurrent slot, from
  :data:`SANDBOX_UID_BASE`, so that ``RLIMIT_NPROC`` binds and leftovers can be found by uid and killed), with
  no-new-privileges; the working directory is the only place that uid may write.

Network isolation is decided once per process by :func:`isolation`, which tries the strongest option:

- ``"namespaces"``: new network, mount and PID namespaces (root with CAP_SYS_ADMIN, e.g. a VM or a privileged
  container). No network interface but a downed loopback; every mount read-only except the working directory;
  the program is PID 1 of its namespace, so anything it leaves behind is killed by the kernel when it exits.
- ``"audit-hook"``: where namespaces are refused, a Python audit hook installed before the program runs
  refuses sockets, ctypes, and starting other executables (best effort: it cannot stop native code).

On this project's CPU box (root in a Firecracker VM) the sandbox runs in ``"namespaces"`` mode.

    result = run_program("print(input()[::-1])", stdin="abc", limits=SandboxLimits(timeout=5))
    result.stdout  # 'cba\\n'
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LAUNCHER = str(Path(__file__).resolve().with_name("sandbox_launcher.py"))
# Unprivileged uids used for sandboxed programs when running as root, one per concurrent program. They need no
# /etc/passwd entry; pick a range no real user has.
SANDBOX_UID_BASE = 61000
SANDBOX_UID_COUNT = 64
_SLOT_LOCK_DIR = Path(tempfile.gettempdir()) / "posttrain-sandbox-slots"

# The program's whole environment. Thread counts pinned to 1 so numeric libraries do not fan out.
_PROGRAM_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Used only in "audit-hook" mode, prepended to the program. Audit hooks cannot be removed once added.
_AUDIT_HOOK_PRELUDE = """\
import sys as _sandbox_sys
def _sandbox_deny(event, args, _blocked=("socket.", "ctypes.", "subprocess.", "os.exec", "os.posix_spawn",
                                        "os.spawn", "os.system", "os.startfile")):
    if event.startswith(_blocked):
        raise PermissionError(f"sandbox: {event} is not allowed")
_sandbox_sys.addaudithook(_sandbox_deny)
del _sandbox_sys, _sandbox_deny
"""


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (never raised because of what a program does)."""


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one program run.

    >>> SandboxLimits(timeout=2.0, memory_mb=256).cpu_seconds
    3
    """

    timeout: float = 10.0  # wall-clock seconds for the whole run
    memory_mb: int = 512  # address space per process
    max_processes: int = 8  # processes + threads the sandbox uid may have (binds only when root)
    file_size_mb: int = 16  # largest file it may write; stdout/stderr included
    output_bytes: int = 1 << 20  # how much of stdout/stderr is read back
    open_files: int = 256

    @property
    def cpu_seconds(self) -> int:
        return math.ceil(self.timeout) + 1

    def rlimits(self) -> dict[str, tuple[int, int]]:
        memory = self.memory_mb * 1024 * 1024
        file_size = self.file_size_mb * 1024 * 1024
        return {
            "RLIMIT_CPU": (self.cpu_seconds, self.cpu_seconds + 1),
            "RLIMIT_AS": (memory, memory),
            "RLIMIT_NPROC": (self.max_processes, self.max_processes),
            "RLIMIT_FSIZE": (file_size, file_size),
            "RLIMIT_NOFILE": (self.open_files, self.open_files),
            "RLIMIT_CORE": (0, 0),
            "RLIMIT_MEMLOCK": (0, 0),
        }


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a program did: exit code (128 + N when killed by signal N; None on timeout) and its output."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# ------------------------------------------------------------ isolation mode

_ISOLATION: str | None = None
_ISOLATION_LOCK = threading.Lock()


def isolation() -> str:
    """Return the isolation this process uses: ``"namespaces"`` or ``"audit-hook"`` (decided once, by trying).

    >>> isolation() in ("namespaces", "audit-hook")
    True
    """
    global _ISOLATION
    with _ISOLATION_LOCK:
        if _ISOLATION is None:
            _ISOLATION = "audit-hook"
            if os.geteuid() == 0:
                with _uid_slot() as uid:
                    probe = _run("pass", None, SandboxLimits(timeout=30.0), uid, namespaces=True, probe=True)
                if probe is not None and probe.ok:
                    _ISOLATION = "namespaces"
        return _ISOLATION


# ------------------------------------------------------------ uid slots

_SLOTS_HELD: dict[int, int] = {}  # uid -> fd of its lock file, for slots held by this process
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _uid_slot() -> Iterator[int | None]:
    """Hold an unprivileged uid for one run (None when not root: no privileges to drop).

    A file lock per uid keeps two processes on the same machine (e.g. two trainer ranks) from sharing one —
    they would otherwise kill each other's programs when cleaning up by uid.
    """
    if os.geteuid() != 0:
        yield None
        return
    _SLOT_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    uid = None
    while uid is None:
        with _SLOTS_LOCK:
            for candidate in range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UID_COUNT):
                if candidate in _SLOTS_HELD:
                    continue
                fd = os.open(_SLOT_LOCK_DIR / f"{candidate}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                _SLOTS_HELD[candidate] = fd
                uid = candidate
                break
        if uid is None:
            time.sleep(0.01)
    try:
        kill_uid_processes(uid)  # whatever a crashed earlier holder left behind
        yield uid
    finally:
        kill_uid_processes(uid)
        with _SLOTS_LOCK:
            fd = _SLOTS_HELD.pop(uid)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def uid_processes(uid: int) -> list[int]:
    """PIDs of live (non-zombie) processes owned by ``uid``.

    >>> uid_processes(SANDBOX_UID_BASE + SANDBOX_UID_COUNT - 1)
    []
    """
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # it exited while we looked
        if state not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def kill_uid_processes(uid: int) -> None:
    """SIGKILL every process of ``uid`` until none is left (a fork bomb may still be forking)."""
    for _ in range(1000):
        pids = uid_processes(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)
    raise SandboxError(f"processes of sandbox uid {uid} survive SIGKILL: {uid_processes(uid)[:10]}")


# ------------------------------------------------------------ running


def run_program(source: str, stdin: str | None = None, limits: SandboxLimits | None = None) -> RunResult:
    """Run Python ``source`` in the sandbox and return its exit code and output.

    >>> run_program("import sys; print(sum(map(int, sys.stdin.read().split())))", stdin="1 2 3").stdout
    '6\\n'
    >>> run_program("while True: pass", limits=SandboxLimits(timeout=1)).timed_out
    True
    """
    limits = limits or SandboxLimits()
    namespaces = isolation() == "namespaces"
    if not namespaces:
        source = _AUDIT_HOOK_PRELUDE + source
    with _uid_slot() as uid:
        result = _run(source, stdin, limits, uid, namespaces)
    if result is None:
        raise SandboxError("sandbox setup failed after the isolation probe succeeded")
    return result


def run_programs(
    jobs: list[tuple[str, str | None]], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[RunResult]:
    """Run many ``(source, stdin)`` programs, up to ``workers`` at a time (default: the usable CPUs).

    >>> [r.stdout for r in run_programs([("print(1)", None), ("print(2)", None)], workers=2)]
    ['1\\n', '2\\n']
    """
    workers = workers or len(os.sched_getaffinity(0))
    isolation()  # probe once before the threads start
    if workers == 1 or len(jobs) <= 1:
        return [run_program(source, stdin, limits) for source, stdin in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, SANDBOX_UID_COUNT)) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits), jobs))


def _run(
    source: str,
    stdin: str | None,
    limits: SandboxLimits,
    uid: int | None,
    namespaces: bool,
    probe: bool = False,
) -> RunResult | None:
    """One run in a fresh directory; for a ``probe``, None if isolation could not be set up."""
    staging = Path(os.path.realpath(tempfile.mkdtemp(prefix="posttrain-sandbox-")))
    try:
        workdir = staging / "work"
        workdir.mkdir(mode=0o700)
        program = workdir / "main.py"
        program.write_text(source)
        stdout_path, stderr_path = staging / "stdout", staging / "stderr"
        if uid is not None:
            # Only the working directory belongs to the sandbox uid; staging (0711) lets it reach its cwd but
            # not list or open our stdout/stderr/stdin files (0600, root).
            os.chown(workdir, uid, uid)
            os.chown(program, uid, uid)
            os.chmod(staging, 0o711)
        if stdin is not None:
            (staging / "stdin").write_text(stdin)
        env = dict(_PROGRAM_ENV, HOME=str(workdir), TMPDIR=str(workdir))
        error_read, error_write = os.pipe()
        config = {
            "namespaces": namespaces,
            "workdir": str(workdir),
            "uid": uid,
            "gid": uid,
            "rlimits": limits.rlimits(),
            "argv": [sys.executable, "-I", "main.py"],
            "env": env,
            "error_fd": error_write,
            "expose": _hidden_interpreter_dirs() if uid is not None else [],
        }
        try:
            stdin_file = open(staging / "stdin", "rb") if stdin is not None else subprocess.DEVNULL
            with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
                try:
                    process = subprocess.Popen(
                        [sys.executable, "-I", "-S", LAUNCHER, json.dumps(config)],
                        stdin=stdin_file,
                        stdout=out,
                        stderr=err,
                        env={},
                        cwd="/",
                        pass_fds=(error_write,),
                        start_new_session=True,
                    )
                finally:
                    os.close(error_write)
                    if stdin is not None:
                        stdin_file.close()
            try:
                timed_out = not _wait(process, limits.timeout)
            finally:
                # Kill the group while its leader is unreaped, so its id cannot have been reused. What left
                # the group dies with the PID namespace, and by uid when the slot is released.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
            setup_error = os.read(error_read, 4096)
        finally:
            os.close(error_read)
        if setup_error:
            if probe:
                return None
            raise SandboxError(f"sandbox setup failed: {setup_error.decode(errors='replace')}")
        return RunResult(
            returncode=None if timed_out else returncode,
            stdout=_read_capped(stdout_path, limits.output_bytes),
            stderr=_read_capped(stderr_path, limits.output_bytes),
            timed_out=timed_out,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=False)


def _hidden_interpreter_dirs() -> list[tuple[str, list[str]]]:
    """Python installation directories the sandbox uid could not reach, grouped under their highest ancestor
    that others may not enter, e.g. ``("/root", ["/root/.pyenv/versions/3.11.7"])`` for pyenv as root."""
    hidden: dict[str, list[str]] = {}
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        for ancestor in [str(parent) for parent in reversed(Path(prefix).parents)] + [prefix]:
            if not os.stat(ancestor).st_mode & 0o001:
                hidden.setdefault(ancestor, []).append(prefix)
                break
    return sorted(hidden.items())


def _wait(process: subprocess.Popen, timeout: float) -> bool:
    """Wait for ``process`` to exit without reaping it; False on timeout."""
    pidfd = os.pidfd_open(process.pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return bool(readable)


def _read_capped(path: Path, limit: int) -> str:
    with open(path, "rb") as stream:
        return stream.read(limit).decode("utf-8", errors="replace")
