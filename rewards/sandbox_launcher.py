"""The first process of a sandbox: sets up isolation, then runs the untrusted program as its child.

Started by :mod:`rewards.sandbox` as ``python -I -S sandbox_launcher.py CONFIG_JSON`` (isolated mode, no site:
only the standard library, nothing of the caller's environment). It must not import from this package.

With ``namespaces`` on (the caller is root and the kernel allows it), the launcher:

1. ``unshare``s a new network namespace (only a loopback that is down: no network at all), a new mount
   namespace and a new PID namespace;
2. makes every mount read-only in that mount namespace, except the program's working directory, after making
   the Python installation reachable when it lives in a directory the sandbox uid cannot enter (``expose``);
3. forks the program, which becomes PID 1 of the new PID namespace — when it exits, the kernel kills every
   process it left behind, so a daemonised child cannot outlive it — and mounts a fresh ``/proc`` showing
   only the sandbox's own processes.

In both modes the child then sets its resource limits, drops to the unprivileged ``uid``/``gid`` (when
given), sets no-new-privileges and a parent-death signal, and execs the program with the given environment.
The launcher stays behind as root to wait for it and exits with its status (128 + N for a signal N).

A setup failure is written to ``error_fd`` (close-on-exec, so the program itself can never write there) and
the launcher exits 125; the caller then refuses to run anything rather than run it unprotected.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED = 125

# Flags a remount must keep, or the kernel refuses it (and they are worth keeping anyway).
_KEPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """Isolation could not be set up; the program must not run."""


def _call(what, rc):
    if rc != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)} (errno {errno})")


def _mount(what, source, target, fstype, flags):
    def encode(value):
        return None if value is None else value.encode()

    _call(what, _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), None))


def _mounts():
    """(mount point, flags to keep) for every mount, from /proc/self/mountinfo."""
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            # Field 5 is the mount point (octal-escaped), field 6 the per-mount options.
            target = fields[4].encode().decode("unicode_escape")
            options = fields[5].split(",")
            mounts.append((target, sum(_KEPT_FLAGS.get(option, 0) for option in options)))
    return mounts


def _expose(hidden_ancestor, paths, workdir):
    """Make ``paths`` reachable by the sandbox uid although ``hidden_ancestor`` (e.g. /root, mode 0700) is
    not: cover the ancestor with an empty tmpfs (which also hides everything else in it) and mount each path
    back at its own place inside it. Used for the Python installation when it lives under /root (pyenv)."""
    holds = []
    for i, path in enumerate(paths):
        hold = os.path.join(workdir, f".expose{i}")
        os.mkdir(hold, 0o700)
        _mount(f"hold {path}", path, hold, None, MS_BIND | MS_REC)
        holds.append(hold)
    _mount(f"cover {hidden_ancestor}", "tmpfs", hidden_ancestor, "tmpfs", MS_NOSUID | MS_NODEV)
    os.chmod(hidden_ancestor, 0o755)
    old_umask = os.umask(0o022)
    for path, hold in zip(paths, holds, strict=True):
        os.makedirs(path, exist_ok=True)
        _mount(f"move {path} back", hold, path, None, MS_MOVE)
        os.rmdir(hold)
    os.umask(old_umask)


def _isolate_filesystem(workdir, expose):
    _mount("make mounts private", None, "/", None, MS_REC | MS_PRIVATE)
    for hidden_ancestor, paths in expose:
        _expose(hidden_ancestor, paths, workdir)
    _mount("bind working directory", workdir, workdir, None, MS_BIND)
    for target, kept in _mounts():
        if target == workdir or target.startswith(("/proc", "/sys")):
            continue
        try:
            _mount(f"remount {target} read-only", None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except SetupError:
            if target == "/":
                raise
            # Other mounts (a stacked or special one) may refuse. The sandbox uid can write none of our files
            # anyway; the root file system, holding the world-writable /tmp and /var/tmp, is what matters.


def _run_child(config):
    """In the forked child: limits, privileges, exec. Never returns."""
    if config["namespaces"]:
        _mount("mount /proc", "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name, value in config["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value[0], value[1]))
    os.chdir(config["workdir"])
    uid, gid = config["uid"], config["gid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
            raise SetupError(f"could not drop privileges to uid {uid}")
    os.umask(0o077)
    _call("no_new_privs", _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    # Set after setuid, which clears it: the program dies with the launcher, e.g. when the caller kills it.
    _call("pdeathsig", _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    if os.getppid() != config["launcher_pid"] and not config["namespaces"]:
        os._exit(SETUP_FAILED)  # the launcher died before the death signal was armed
    os.execve(config["argv"][0], config["argv"], config["env"])


def main():
    config = json.loads(sys.argv[1])
    error_fd = config["error_fd"]
    os.set_inheritable(error_fd, False)
    config["launcher_pid"] = os.getpid()
    try:
        if config["namespaces"]:
            _call("unshare", _libc.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID))
            _isolate_filesystem(config["workdir"], config["expose"])
        child = os.fork()
        if child == 0:
            try:
                _run_child(config)
            except (OSError, SetupError) as error:
                os.write(error_fd, f"{type(error).__name__}: {error}".encode())
                os._exit(SETUP_FAILED)
    except (OSError, SetupError) as error:
        os.write(error_fd, f"{type(error).__name__}: {error}".encode())
        os._exit(SETUP_FAILED)
    os.close(error_fd)
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
