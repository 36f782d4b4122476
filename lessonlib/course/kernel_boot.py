"""The first code that runs in a submission's sandbox: it sets the stage, then becomes the IPython kernel.

    python -m lessonlib.course.kernel_boot --limits JSON --runtime DIR --home DIR --input DIR [--uid N]
        [--processes-already N] -- ARGS

In order, before any student code runs:
1. reads the grading guard's settings and secret from the runtime folder and deletes the secret file, and the
   connection file jupyter_client wrote for the grading user;
2. sets the resource limits (memory, processes, file size, CPU time, open files, no core dumps);
3. when started as root inside bubblewrap, drops to the sandbox uid: no groups, no capabilities, no_new_privs;
4. copies the student's files from the read-only input folder into the kernel's home folder (so they belong to
   the kernel's uid) and writes a private copy of the connection file;
5. pre-imports what the test cells import, so a student's file named like a module cannot shadow it;
6. starts ipykernel with ARGS and installs the guard (:mod:`.guard`) in its shell.

It imports only the standard library until step 5, and never the course's grading code outside this package.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from .limits import MB, Limits

GUARD_SETTINGS = "guard.json"     # in the runtime folder: what the guard protects
GUARD_SECRET = "guard.key"        # in the runtime folder: deleted as soon as it is read


def copy_input(source: str, home: str) -> None:
    """Copy the student's files into the kernel's home, owned by the kernel's own uid (run after dropping
    privileges), without copying folder modes onto the home folder itself."""
    os.makedirs(home, exist_ok=True)
    if not os.path.isdir(source):
        return
    for folder, _subfolders, files in os.walk(source):
        target = os.path.join(home, os.path.relpath(folder, source))
        os.makedirs(target, exist_ok=True)
        for name in files:
            shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))


def read_guard_settings(runtime: str) -> tuple[dict, bytes]:
    with open(os.path.join(runtime, GUARD_SETTINGS)) as f:
        settings = json.load(f)
    secret_path = os.path.join(runtime, GUARD_SECRET)
    with open(secret_path, "rb") as f:
        secret = f.read()
    os.unlink(secret_path)
    return settings, secret


def read_connection_file(kernel_args: list[str]) -> bytes | None:
    """The connection file jupyter_client wrote (private to the grading user), read before dropping privileges."""
    if "-f" not in kernel_args:
        return None
    with open(kernel_args[kernel_args.index("-f") + 1], "rb") as f:
        return f.read()


def write_connection_file(kernel_args: list[str], content: bytes | None) -> list[str]:
    """A private copy of the connection file the kernel's own uid can read; the arguments pointing to it."""
    if content is None:
        return kernel_args
    folder = os.environ.get("TMPDIR", "/tmp")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "kernel-connection.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    args = list(kernel_args)
    args[args.index("-f") + 1] = path
    return args


def seed_matplotlib_cache(runtime: str) -> None:
    """matplotlib's font list, built once by the grading side: without it every kernel rebuilds it (~0.5 s)."""
    cache = os.environ.get("MPLCONFIGDIR")
    names = [n for n in os.listdir(runtime) if n.startswith("fontlist-") and n.endswith(".json")]
    if cache and names:
        os.makedirs(cache, exist_ok=True)
        shutil.copyfile(os.path.join(runtime, names[0]), os.path.join(cache, names[0]))


def set_limits(limits: Limits, processes_already: int = 0) -> None:
    """``processes_already``: processes (Linux: threads) the kernel's uid runs outside the sandbox, which the
    process limit counts too (0 when the kernel has a uid or a user namespace of its own)."""
    import resource

    wanted = {
        "RLIMIT_AS": limits.memory_mb * MB,
        "RLIMIT_NPROC": limits.processes + processes_already,
        "RLIMIT_FSIZE": limits.file_mb * MB,
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    for name, value in wanted.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            # macOS refuses some limits (e.g. RLIMIT_AS above what it enforces); keep the others
            pass


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"kernel_boot: could not switch to uid {uid}")
    no_new_privs()


def no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: no setuid binary or file capability can raise this process's privileges again."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise SystemExit("kernel_boot: prctl(PR_SET_NO_NEW_PRIVS) failed")


def preimport(modules: list[str]) -> None:
    """Import what the test cells import while sys.path holds only the installation (not the student's folder)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a module that fails here fails the same way in the test cell, where it is reported
            pass


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="kernel_boot")
    parser.add_argument("--limits", required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--processes-already", type=int, default=0)
    args = parser.parse_args(argv[:split])
    kernel_args = argv[split + 1:]

    settings, secret = read_guard_settings(args.runtime)
    connection = read_connection_file(kernel_args)
    set_limits(Limits.from_json(args.limits), args.processes_already)
    if args.uid is not None:
        drop_privileges(args.uid)
    else:
        no_new_privs()
    copy_input(args.input, args.home)
    os.chdir(args.home)
    seed_matplotlib_cache(args.runtime)
    kernel_args = write_connection_file(kernel_args, connection)
    if os.getpid() <= 2:
        # pid 1 or 2 of its own PID namespace: ipykernel would take the namespace's init (its parent, pid 1) for a
        # dead parent and exit; bubblewrap's --die-with-parent ties the kernel to the grading process instead
        os.environ.pop("JPY_PARENT_PID", None)
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd(), args.home)]
    preimport(settings.get("preimport", []))

    from ipykernel.kernelapp import IPKernelApp

    from . import guard

    app = IPKernelApp.instance()
    app.initialize(kernel_args)
    guard.install(app, settings, secret)
    app.start()


if __name__ == "__main__":
    main()
