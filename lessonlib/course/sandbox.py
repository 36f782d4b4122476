"""Where a submission's code runs: a throwaway sandbox per submission, confined with what the platform gives.

Design
------
Only the student's kernel is confined; the grading process (nbgrader, the gradebook, the hidden tests' source)
stays outside it and talks to the kernel over two Unix-socket folders it shares with the sandbox.

On Linux with bubblewrap (Debian/Ubuntu package ``bubblewrap``), each kernel starts in fresh mount, PID, network,
IPC and UTS namespaces (:func:`probe` checks that they work here):

* Files: a root made of read-only binds of ``/usr``, a few files of ``/etc``, the Python installation, the
  virtual environment and the ``lessonlib`` package, nothing else. The course folder (``solutions/``,
  ``gradebook.db``, ``submitted/``, other students' folders) is not mounted, so it cannot be read or written.
  The student's files are copied into ``/home/student`` (a size-limited tmpfs, also its working directory);
  ``/tmp`` is another. Nothing the kernel writes outlives it.
* Network: a network namespace with no interface but a downed loopback: every connection fails at once.
* User: when grading runs as root (CI, containers), the kernel drops to a dedicated unprivileged uid
  (``uid_base + worker slot``, not in ``/etc/passwd``), with no capabilities and ``no_new_privs``. As an ordinary
  user, bubblewrap's user namespace maps the kernel to the instructor's own uid; it still sees only the binds.
* Processes: the PID namespace dies with the kernel: a fork bomb's leftovers, background threads and daemons are
  all killed when the kernel is.

Everywhere (Linux and macOS), :mod:`.kernel_boot` sets resource limits before any student code runs (memory,
processes, file size, CPU time, open files), and :mod:`.executor` enforces the wall-clock and output limits.
Without bubblewrap, the kernel runs in a throwaway folder with those limits only: it could read any file the
instructor can, write the instructor's files and use the network. :meth:`Isolation.describe` says which case
holds, and the class commands print it.
"""
from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .limits import MB, Limits

HOME = "/home/student"          # the kernel's home and working folder inside the sandbox
INPUT = "/input"                # the student's files, read-only, copied into HOME at start
DEFAULT_UID_BASE = 64000        # kernels of worker slot k run as uid DEFAULT_UID_BASE + k when grading as root
# The kernel's sockets are <runtime>/k<N>-<port>: a Unix socket's path must fit in 108 bytes on Linux and 104 on
# macOS (whose temporary folder alone is ~50 characters). A runtime folder longer than this goes to /tmp instead.
RUNTIME_PATH_MAX = 80
ETC_FILES = ("ld.so.cache", "localtime", "nsswitch.conf", "passwd", "group", "hosts", "mime.types")


@dataclass(frozen=True)
class Isolation:
    """What confines a kernel on this machine, decided once by :func:`probe`."""
    bubblewrap: str | None          # path of a working bwrap, or None
    as_root: bool                   # grading runs as root: kernels drop to a dedicated uid
    rlimits: bool                   # the resource module works (Linux, macOS)
    reason: str = ""                # why bubblewrap is not used, and what to do about it

    @property
    def confined(self) -> bool:
        return self.bubblewrap is not None

    def describe(self) -> list[str]:
        """What holds for every submission, one line each, in words an instructor can act on."""
        lines = []
        if self.confined:
            user = ("a dedicated unprivileged uid, no capabilities" if self.as_root
                    else "your uid in a user namespace")
            lines += ["bubblewrap: the kernel sees only read-only system and Python files and its own folder; "
                      "solutions/, the gradebook and other students' folders are not there",
                      "no network (an empty network namespace)",
                      f"runs as {user}; its processes die with it (PID namespace)"]
        else:
            lines += [f"NOT CONFINED: {self.reason}",
                      "the kernel runs in a throwaway folder, but it could read any file you can (solutions/, "
                      "gradebook.db), change your files and use the network"]
        if self.rlimits:
            lines.append("resource limits: memory, processes, file size, CPU time, open files")
        lines.append("wall-clock limits per cell and per notebook, output limits, tamper checks around every "
                     "test cell")
        return lines


@functools.cache
def probe() -> Isolation:
    """Find out what confines a kernel here: a bubblewrap that can create the namespaces this module uses."""
    try:
        import resource  # noqa: F401  (POSIX only)
        rlimits = True
    except ImportError:
        rlimits = False
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not sys.platform.startswith("linux"):
        return Isolation(None, as_root, rlimits, f"bubblewrap needs Linux namespaces; this is {sys.platform}")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation(None, as_root, rlimits, "bubblewrap is not installed (Debian/Ubuntu: "
                                                 "`sudo apt-get install bubblewrap`; Fedora: `sudo dnf install "
                                                 "bubblewrap`)")
    # the options the sandbox uses beyond namespaces too (--size, --chmod): an old bubblewrap lacks them
    trial = [bwrap, *_namespace_args(as_root), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
             "--size", str(MB), "--tmpfs", "/tmp", "--chmod", "1777", "/tmp", "--", "true"]
    try:
        result = subprocess.run(trial, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Isolation(None, as_root, rlimits, f"bubblewrap failed to start: {error}")
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        if "nknown option" in detail:
            return Isolation(None, as_root, rlimits, f"this bubblewrap is too old for the sandbox ({detail}); "
                                                     "bubblewrap 0.8 (Debian 12) or newer works")
        return Isolation(None, as_root, rlimits,
                         f"bubblewrap cannot create namespaces here ({detail}); unprivileged user namespaces may "
                         "be disabled (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04 the "
                         "AppArmor profile shipped with the bubblewrap package)")
    return Isolation(bwrap, as_root, rlimits)


def _namespace_args(as_root: bool) -> list[str]:
    args = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]
    if not as_root:
        args.append("--unshare-user")   # unprivileged bubblewrap needs a user namespace to do the rest
    return args


def sandbox_uid(slot: int, base: int = DEFAULT_UID_BASE) -> int:
    """A uid no account uses, for the kernels of one worker slot (root only). Distinct slots get distinct uids,
    so the process limit counts each submission's processes alone."""
    uid = base + slot
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 100


def python_roots() -> list[Path]:
    """Folders the kernel's Python needs, read-only: the interpreter's installation, the virtual environment and
    the lessonlib package (an editable install lives in the course folder; only the package itself is bound)."""
    import lessonlib

    roots = [Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent,
             Path(lessonlib.__file__).resolve().parent]
    unique: list[Path] = []
    for root in sorted({r.resolve() for r in roots}, key=lambda p: len(p.parts)):
        if not any(root.is_relative_to(kept) for kept in unique):
            unique.append(root)
    return unique


class Sandbox:
    """One submission's sandbox: a private folder on the grading side holding the student's files (``input/``)
    and the kernel's sockets and start-up secrets (``runtime/``), and the command that starts a kernel confined
    to them. Delete it with :meth:`cleanup`."""

    def __init__(self, isolation: Isolation, limits: Limits, slot: int = 0, uid_base: int = DEFAULT_UID_BASE,
                 parent: Path | None = None, threads: int = 1):
        self.isolation = isolation
        self.limits = limits
        self.threads = threads
        self.folder = Path(tempfile.mkdtemp(prefix="coursegrade-sandbox-", dir=parent))
        self.folder.chmod(0o711)
        self.input = self.folder / "input"
        self.input.mkdir()
        self.runtime = self.folder / "runtime"
        if len(str(self.runtime)) <= RUNTIME_PATH_MAX:
            self.runtime.mkdir()
        else:     # a long temporary folder (macOS, pytest's): every kernel would fail to bind its sockets
            self.runtime = Path(tempfile.mkdtemp(prefix="coursegrade-", dir=_short_folder()))
        self.runtime.chmod(0o777)   # the kernel, possibly another uid, creates its sockets here
        self.uid = sandbox_uid(slot, uid_base) if isolation.confined and isolation.as_root else None
        self.home = HOME if isolation.confined else str(self.folder / "home")

    def add_files(self, source: Path, skip: tuple[str, ...] = (), notebooks: bool = True) -> None:
        """Copy a folder's files (the student's submission, the assignment's data files) into the sandbox;
        ``notebooks=False`` leaves out every ``.ipynb`` (the source folder's hold the solutions and hidden tests)."""
        for path in sorted(Path(source).rglob("*")):
            relative = path.relative_to(source)
            if path.is_symlink() or any(part in skip for part in relative.parts):
                continue
            if not notebooks and path.suffix == ".ipynb":
                continue
            target = self.input / relative
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        for path in self.input.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def kernel_command(self, kernel_args: list[str]) -> list[str]:
        """The command that starts an IPython kernel in this sandbox; ``kernel_args`` go to ipykernel."""
        boot = [sys.executable, "-m", "lessonlib.course.kernel_boot", "--limits", self.limits.to_json(),
                "--runtime", str(self.runtime), "--home", self.home,
                "--input", INPUT if self.isolation.confined else str(self.input)]
        if self.uid is not None:
            boot += ["--uid", str(self.uid)]
        if not self.isolation.confined and not self.isolation.as_root:
            # the kernel keeps your uid, whose every process (Linux: thread) the process limit counts: a desktop
            # session often runs more than the limit, and the kernel could not start a thread
            boot += ["--processes-already", str(user_tasks(os.getuid()))]
        boot += ["--", *kernel_args]
        if not self.isolation.confined:
            return boot
        return [self.isolation.bubblewrap, *self._bwrap_args(), "--", *boot]

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment: nothing of the instructor's (tokens, paths, config) leaks in."""
        threads = str(max(1, self.threads))
        tmp = "/tmp" if self.isolation.confined else str(self.folder / "tmp")
        env = {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": self.home, "TMPDIR": tmp, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline", "MPLCONFIGDIR": f"{tmp}/matplotlib",
            "IPYTHONDIR": f"{tmp}/ipython", "JUPYTER_CONFIG_DIR": f"{tmp}/jupyter",
            "JUPYTER_DATA_DIR": f"{tmp}/jupyter-data", "JUPYTER_RUNTIME_DIR": f"{tmp}/jupyter-runtime",
            "JUPYTER_PLATFORM_DIRS": "1", "NBGRADER_EXECUTION": "autograde",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        }
        return env

    def _bwrap_args(self) -> list[str]:
        limits = self.limits
        args = [*_namespace_args(self.isolation.as_root), "--hostname", "grading"]
        for name in ("usr", "bin", "lib", "lib32", "lib64", "sbin"):
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        # bubblewrap mounts in the order given: the empty /tmp and home first, so that a course (and its Python)
        # checked out below /tmp is bound on top of them instead of hidden under them
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(limits.disk_mb * MB), "--tmpfs", "/tmp", "--chmod", "1777", "/tmp",
                 "--size", str(limits.disk_mb * MB), "--tmpfs", HOME, "--chmod", "1777", HOME]
        roots = python_roots()
        for root in roots:
            args += ["--ro-bind", str(root), str(root)]
        args += ["--ro-bind", str(self.input), INPUT,
                 "--bind", str(self.runtime), str(self.runtime),
                 "--chdir", HOME]
        # bubblewrap creates the folders above a bind (/root above /root/.pyenv/...) private to root: open them
        # so the sandbox uid can reach what is bound below them
        binds = [*roots, self.runtime]
        parents = {p for bound in binds for p in bound.parents if p != Path("/")}
        for parent in sorted(parents, key=lambda p: len(p.parts)):
            if not any(parent.is_relative_to(bound) for bound in binds) and str(parent) not in ("/tmp", HOME):
                args += ["--chmod", "0755", str(parent)]
        if self.isolation.as_root:
            # kernel_boot needs these two to drop to the sandbox uid; it gives them up before any student code.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.runtime, ignore_errors=True)


def user_tasks(uid: int) -> int:
    """How many processes ``uid`` runs now, as RLIMIT_NPROC counts them (threads too on Linux); 0 if unknown."""
    if sys.platform.startswith("linux") and os.path.isdir("/proc"):
        count = 0
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
        return count
    try:
        listed = subprocess.run(["ps", "-U", str(uid), "-o", "pid="], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(listed.stdout.split())


def _short_folder() -> str:
    """A folder with a short path for the kernel's sockets: /tmp where there is one (Linux, macOS)."""
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


def sandbox_processes(launcher_pid: int) -> list[tuple[int, int]]:
    """(host pid, pid inside) of every process in the PID namespace of the bubblewrap sandbox ``launcher_pid``
    started; empty when it has none of its own. Linux only (it reads /proc)."""
    try:
        children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
        namespace = os.readlink(f"/proc/{children[0]}/ns/pid") if children else None
    except OSError:
        return []
    if namespace is None or namespace == os.readlink("/proc/self/ns/pid"):
        return []     # not a sandbox of its own: never touch processes outside one
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != namespace:
                continue
            status = (entry / "status").read_text()
            inner = int(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1])
            found.append((int(entry.name), inner))
        except (OSError, StopIteration, ValueError):
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far, with their reaped children (0 where /proc is
    not there)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(v) for v in fields[11:15]) / ticks     # utime, stime, cutime, cstime
    return total


def kill_strays(launcher_pid: int) -> int:
    """Kill every process of a bubblewrap sandbox except its init (pid 1 inside) and the kernel (pid 2): what a
    fork bomb or a background job left behind. Returns how many were killed."""
    import signal

    killed = 0
    for host_pid, inner in sandbox_processes(launcher_pid):
        if inner > 2:
            try:
                os.kill(host_pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed
