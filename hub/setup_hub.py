"""Prepare the class's JupyterHub and its users (run as root; `make hub-setup`, `make hub-instructor`,
`make hub-student` call it). Standard library only.

    python hub/setup_hub.py --root /srv/efficient-llm-inference prepare
    python hub/setup_hub.py --root ... add-instructor NAME [--create]
    python hub/setup_hub.py --root ... add-student NAME [--create]
    python hub/setup_hub.py --root ... remove NAME
    python hub/setup_hub.py instructor-home --source CHECKOUT [--exchange PATH]   (as the instructor, no root)

prepare         the shared folders of COURSE_HUB_ROOT (hub/jupyterhub_config.py lists them) and the nbgrader
                configuration every server reads: the exchange's path and the course id
add-instructor  a Linux user (created with --create) gets their own copy of the course in ~/efficient-llm-inference
                (solutions/, notebooks/, nbgrader_config.py pointed at the shared exchange), formgrader on it, and
                becomes a hub admin
add-student     a Linux user (created with --create) may log in; their home is made private (0700)
remove          takes a user off the roster (their account and files stay)
instructor-home what add-instructor does in the instructor's home, run as the instructor (a Zero to JupyterHub pod)

A user created here has no password: set one (`passwd NAME`) for the hub's PAM login, or use another
authenticator (README).
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COURSE_ID = "efficient-llm-inference"
COURSE_FOLDER = "efficient-llm-inference"          # the instructor's copy, in their home
COURSE_FILES = ("solutions", "notebooks", "nbgrader_config.py")


def roster_path(root: Path) -> Path:
    return root / "roster.json"


def read_roster(root: Path) -> dict[str, list[str]]:
    path = roster_path(root)
    roster = json.loads(path.read_text()) if path.exists() else {}
    return {"instructors": roster.get("instructors", []), "students": roster.get("students", [])}


def write_roster(root: Path, roster: dict[str, list[str]]) -> None:
    path = roster_path(root)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: sorted(set(v)) for k, v in roster.items()}, indent=2) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)


def prepare(root: Path) -> None:
    """The folders and configuration the hub needs (idempotent)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    # nbgrader's exchange: everyone creates folders in it (nbgrader documents `chmod ugo+rw`); the sticky bit
    # keeps a student from renaming or deleting the course's folder in it. nbgrader makes the course's inbound
    # folder write-only (0733) and its feedback folder traverse-only (0711): nobody lists others' files there.
    exchange = root / "exchange"
    exchange.mkdir(exist_ok=True)
    exchange.chmod(0o1777)
    state = root / "state"
    state.mkdir(exist_ok=True)
    state.chmod(0o700)
    # Every server (instructor's and students') reads the environment's etc/jupyter: where the exchange is, and
    # which course the assignment list shows.
    env_config = root / "env" / "etc" / "jupyter"
    if (root / "env").is_dir():
        env_config.mkdir(parents=True, exist_ok=True)
        (env_config / "nbgrader_config.py").write_text(
            "# Written by hub/setup_hub.py: the class's shared nbgrader exchange.\n"
            "c = get_config()  # noqa: F821\n"
            f"c.Exchange.root = {str(exchange)!r}\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\n")
    # Only students' servers read etc/student (jupyterhub_config.py puts it on their JUPYTER_CONFIG_PATH): a copy of
    # hub/student/, readable by everyone (this checkout may not be).
    student = root / "etc" / "student"
    if student.exists():
        shutil.rmtree(student)
    shutil.copytree(REPO / "hub" / "student", student)
    for folder, _, files in os.walk(root / "etc"):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    if not roster_path(root).exists():
        write_roster(root, {"instructors": [], "students": []})
    print(f"prepared {root}: exchange {exchange}")
    warn_if_solutions_are_readable()


def warn_if_solutions_are_readable() -> None:
    """Students get a shell on this machine (JupyterLab's terminal): this checkout's solutions/ (the hidden tests)
    must not be readable by them. The hub never needs it (its environment is installed, not editable)."""
    notebook = next((REPO / "solutions").glob("*/*.ipynb"), None)
    if notebook is None or shutil.which("runuser") is None:
        return
    probe = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(notebook)], capture_output=True)
    if probe.returncode == 0:
        print(f"WARNING: every user of this machine can read {REPO / 'solutions'} (the hidden tests): keep this "
              f"checkout private, e.g. chmod 700 {REPO}, or move it into a private folder", file=sys.stderr)


def ensure_user(name: str, create: bool) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if not create:
            raise SystemExit(f"no Linux user {name!r}: create it (useradd -m {name}) or pass --create") from None
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    return pwd.getpwnam(name)


def private_home(user: pwd.struct_passwd) -> Path:
    home = Path(user.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, user.pw_uid, user.pw_gid)
    home.chmod(0o700)
    return home


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, d) for d in dirs), *(os.path.join(folder, f) for f in files)]:
            os.lchown(name, user.pw_uid, user.pw_gid)


def instructor_home(home: Path, exchange: Path, source: Path = REPO) -> Path:
    """The instructor's own copy of the course in home (never overwriting their edits), pointed at the exchange,
    with formgrader on it and formgrader's autograde running coursegrade. Returns the course folder."""
    course = home / COURSE_FOLDER
    course.mkdir(exist_ok=True)
    for item in COURSE_FILES:
        origin, target = source / item, course / item
        if target.exists():
            continue
        if origin.is_dir():
            shutil.copytree(origin, target)
        else:
            shutil.copy2(origin, target)
            if item == "nbgrader_config.py":
                with target.open("a") as config:
                    config.write("\n# ---- this course on the class's JupyterHub (written by hub/setup_hub.py) ----\n"
                                 f"c.Exchange.root = {str(exchange)!r}\n"
                                 "# A submission counts for the user who made it, whatever its folder is named.\n"
                                 'c.ExchangeFactory.collect = "lessonlib.course.exchange.OwnerCollect"\n')
    # formgrader reads ~/.jupyter/nbgrader_config.py: which folder is the course.
    jupyter = home / ".jupyter"
    jupyter.mkdir(exist_ok=True)
    (jupyter / "nbgrader_config.py").write_text(
        "# Written by hub/setup_hub.py: formgrader's course, in this home folder.\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n")
    # formgrader's autograde button runs coursegrade (sandboxed, limited), not plain nbgrader.
    (jupyter / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
        "lessonlib.course.formgrader": True}}}, indent=2) + "\n")
    return course


def add_instructor(root: Path, name: str, create: bool) -> None:
    user = ensure_user(name, create)
    home = private_home(user)
    course = instructor_home(home, root / "exchange")
    chown_tree(course, user)
    chown_tree(home / ".jupyter", user)
    roster = read_roster(root)
    roster["instructors"].append(name)
    roster["students"] = [s for s in roster["students"] if s != name]
    write_roster(root, roster)
    print(f"instructor {name}: course in {course}")


def add_student(root: Path, name: str, create: bool) -> None:
    user = ensure_user(name, create)
    private_home(user)
    roster = read_roster(root)
    if name in roster["instructors"]:
        raise SystemExit(f"{name} is an instructor; remove them first")
    roster["students"].append(name)
    write_roster(root, roster)
    print(f"student {name}")


def remove(root: Path, name: str) -> None:
    roster = read_roster(root)
    write_roster(root, {k: [n for n in v if n != name] for k, v in roster.items()})
    print(f"removed {name} from the roster (restart the hub)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("COURSE_HUB_ROOT",
                                                                         "/srv/efficient-llm-inference")))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare")
    for command in ("add-instructor", "add-student"):
        p = commands.add_parser(command)
        p.add_argument("name")
        p.add_argument("--create", action="store_true", help="create the Linux user if it does not exist")
    commands.add_parser("remove").add_argument("name")
    home = commands.add_parser("instructor-home", help="as the instructor, without root (a Kubernetes pod): the "
                               "course copy and formgrader's configuration in $HOME")
    home.add_argument("--source", type=Path, required=True, help="a checkout of the course")
    home.add_argument("--exchange", type=Path, default=Path("/srv/nbgrader/exchange"))
    args = parser.parse_args(argv)
    if args.command == "instructor-home":
        print(f"course in {instructor_home(Path.home(), args.exchange, args.source)}")
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run this as root (it creates users, sets ownership and the exchange's permissions)")
    root = args.root.resolve()
    if args.command == "prepare":
        prepare(root)
    elif args.command == "add-instructor":
        add_instructor(root, args.name, args.create)
    elif args.command == "add-student":
        add_student(root, args.name, args.create)
    else:
        remove(root, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
