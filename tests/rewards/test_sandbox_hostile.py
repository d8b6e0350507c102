"""The code sandbox as a security boundary: hostile programs fail, and nothing outside the sandbox changes.

Run: .venv/bin/python -m pytest -q tests/rewards/test_sandbox_hostile.py

Every hostile program runs with tight limits (2 s, 256 MB, 8 processes, 4 MB files) so that a fork or
memory bomb cannot disturb the machine. After each one we check that a canary file outside is intact, a
sentinel process of ours is alive, no process of any sandbox uid is left, no sandbox temp dir is left, and the
next program runs normally.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from rewards import sandbox
from rewards.sandbox import SandboxLimits, isolation, run_program, run_programs

LIMITS = SandboxLimits(timeout=2.0, memory_mb=256, max_processes=8, file_size_mb=4, output_bytes=64 * 1024)
SECRET = "posttrain-test-secret-7f3a"
REPO = Path(__file__).resolve().parents[2]


def _sandbox_uid_processes() -> list[tuple[int, int]]:
    """(pid, uid) of live processes owned by any sandbox uid."""
    uids = range(sandbox.SANDBOX_UID_BASE, sandbox.SANDBOX_UID_BASE + sandbox.SANDBOX_UID_COUNT)
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                if uid in uids and b") Z" not in Path(f"/proc/{entry.name}/stat").read_bytes():
                    found.append((int(entry.name), uid))
            except FileNotFoundError:
                continue
    return found


def _sandbox_temp_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("posttrain-sandbox-")} - {
        "posttrain-sandbox-slots"
    }


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A canary file and a listening socket outside the sandbox, a sentinel process, a secret in our env."""
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    canary.chmod(0o644)
    monkeypatch.setenv("POSTTRAIN_SECRET", SECRET)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    sentinel = subprocess.Popen(["sleep", "300"])
    temp_dirs_before = _sandbox_temp_dirs()
    yield {
        "canary": str(canary),
        "port": listener.getsockname()[1],
        "sentinel": sentinel.pid,
        "caller": os.getpid(),
        "repo": str(REPO),
    }
    try:
        assert canary.read_text() == "intact"
        assert sentinel.poll() is None, "the sandbox killed a process of ours"
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody got through to our socket
        assert _sandbox_uid_processes() == []
        assert _sandbox_temp_dirs() <= temp_dirs_before
        assert not list(tmp_path.glob("*pwned*")) and not list(REPO.glob("*pwned*"))
        assert run_program("print(6 * 7)", limits=LIMITS).stdout == "42\n"  # the next program runs normally
    finally:
        sentinel.kill()
        sentinel.wait()
        listener.close()


# (name, program, what its result must show). Programs get the `world` values by str.format.
HOSTILE = [
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
    ("memory bomb, one allocation", "x = bytearray(16 * 1024**3)\nprint('ESCAPED')"),
    ("memory bomb, growing", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024**2))"),
    ("infinite loop", "while True:\n    pass"),
    ("sleeps past the timeout", "import time\ntime.sleep(60)\nprint('ESCAPED')"),
    ("ignores SIGTERM", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"),
    (
        "leaves a stopped child",
        "import os, signal\nif os.fork() == 0:\n    os.kill(os.getpid(), signal.SIGSTOP)\n"
        "else:\n    os.wait()",
    ),
    (
        "thread bomb",
        "import threading, time\nfor _ in range(1000):\n"
        "    threading.Thread(target=time.sleep, args=(60,)).start()",
    ),
    ("fills its disk", "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)"),
    (
        "floods stdout",
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    ),
    ("floods stderr", "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)"),
    (
        "connects to our socket",
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('ESCAPED')",
    ),
    (
        "reaches the internet",
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nprint('ESCAPED')",
    ),
    ("resolves a name", "import socket\nsocket.getaddrinfo('example.com', 80)\nprint('ESCAPED')"),
    (
        "reads our secrets",
        "import os\nprint(dict(os.environ))\n"
        "for pid in ({caller}, 1, os.getppid()):\n"
        "    try:\n        print(open(f'/proc/{{pid}}/environ').read())\n"
        "    except OSError as e:\n        print(e)\n"
        "raise SystemExit(1)",
    ),
    ("overwrites a file outside", "open({canary!r}, 'w').write('pwned')\nprint('ESCAPED')"),
    ("deletes a file outside", "import os\nos.remove({canary!r})\nprint('ESCAPED')"),
    ("writes into the repo", "open({repo!r} + '/pwned.txt', 'w').write('x')\nprint('ESCAPED')"),
    (
        "writes to /tmp and /dev/shm",
        "open('/tmp/pwned', 'w').write('x')\nopen('/dev/shm/pwned', 'w')\nprint('ESCAPED')",
    ),
    (
        "kills its parent and our processes",
        "import os, signal\n"
        "for target in ({caller}, {sentinel}, -1):\n"
        "    try:\n        os.kill(target, signal.SIGKILL)\n    except OSError as e:\n        print(e)\n"
        "raise SystemExit(1)",
    ),
    ("becomes root", "import os\nos.setuid(0)\nprint('ESCAPED')"),
    (
        "leaves a daemon behind",
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(4)\n"
        "        open({canary!r}, 'w').write('pwned')\n"
        "    os._exit(0)\n"
        "raise SystemExit(1)",
    ),
    (
        "leaves a detached subprocess",
        "import subprocess\nsubprocess.Popen(['sleep', '100'], start_new_session=True)\nraise SystemExit(1)",
    ),
    (
        "symlinks a file outside for our cleanup to follow",
        "import os\nos.symlink({canary!r}, 'link')\nos.symlink('/', 'root')\nos.link({canary!r}, 'hard')\n",
    ),
    ("crashes the interpreter", "import ctypes\nctypes.string_at(0)"),
    (
        "recurses until the stack overflows",
        "import sys\nsys.setrecursionlimit(10**7)\ndef f():\n    f()\nf()",
    ),
    ("mounts over something", "import os\nrc = os.system('mount -t tmpfs none /mnt')\nraise SystemExit(1)"),
    ("exhausts file descriptors", "files = [open('/dev/null') for _ in range(100000)]\nprint('ESCAPED')"),
]


@pytest.mark.parametrize(("name", "program"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_program_fails_and_harms_nothing(name: str, program: str, world: dict) -> None:
    result = run_program(textwrap.dedent(program.format(**world)), limits=LIMITS)
    assert not result.ok, f"{name}: {result}"
    assert "ESCAPED" not in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert len(result.stdout) <= LIMITS.output_bytes and len(result.stderr) <= LIMITS.output_bytes


def test_program_runs_unprivileged_in_a_fresh_empty_directory_with_a_scrubbed_environment() -> None:
    program = "import os\nprint(os.getuid(), os.getgid(), os.getgroups(), sorted(os.listdir('.')), "
    program += "sorted(os.environ))"
    result = run_program(program, limits=LIMITS)
    uid, gid, groups, listing, env = result.stdout.split(" ", 4)
    if os.geteuid() == 0:
        assert sandbox.SANDBOX_UID_BASE <= int(uid) < sandbox.SANDBOX_UID_BASE + sandbox.SANDBOX_UID_COUNT
        assert int(gid) == int(uid) and groups == "[]"
    assert listing == "['main.py']"
    assert "POSTTRAIN" not in env and "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env


def test_network_isolation_mode_is_detected() -> None:
    # On the project's CPU box (root in a VM) we get namespaces; elsewhere the audit-hook fallback.
    expected = "namespaces" if os.geteuid() == 0 and sys.platform == "linux" else "audit-hook"
    assert isolation() == expected


def test_wall_clock_timeout_kills_a_sleeping_program_on_time() -> None:
    result = run_program("import time\ntime.sleep(30)", limits=SandboxLimits(timeout=1.0))
    assert result.timed_out and result.returncode is None


def test_stdin_is_fed_from_the_test_or_empty() -> None:
    assert run_program("print(input().upper())", stdin="abc\n", limits=LIMITS).stdout == "ABC\n"
    assert run_program("import sys\nprint(repr(sys.stdin.read()))", limits=LIMITS).stdout == "''\n"


def test_programs_run_in_parallel_and_hostile_neighbours_do_not_disturb_others() -> None:
    jobs = [("while True:\n    pass", None), ("print(sum(range(10)))", None)] * 2
    results = run_programs(jobs, LIMITS, workers=2)
    assert [r.stdout for r in results] == ["", "45\n", "", "45\n"]
    assert [r.timed_out for r in results] == [True, False, True, False]
