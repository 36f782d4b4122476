"""``coursegrade``: the course's grading commands, one per step, run from the course root.

    coursegrade collect ASSIGNMENT DOWNLOAD      LMS zip or folder -> submitted/
    coursegrade autograde ASSIGNMENT             every submission, isolated, in parallel -> the gradebook
    coursegrade feedback ASSIGNMENT              feedback/<student>/<assignment>/*.html
    coursegrade export                           grades/grades.csv, one row per student
    coursegrade selfgrade NOTEBOOK               a learner grades their own notebook (also: make grade)
    coursegrade isolation                        what confines a submission on this machine

Every command is a thin layer over nbgrader's own apps (zip_collect, autograde, generate_feedback, export) with
the course's configuration; see the README's instructor guide.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .autograde import assignments, find_course_root
from .limits import Limits


def _course_root() -> Path:
    try:
        return find_course_root(Path.cwd())
    except FileNotFoundError as error:
        raise SystemExit(f"coursegrade: {error}") from None


def _assignment(root: Path, name: str) -> str:
    known = assignments(root)
    if name not in known:
        raise SystemExit(f"coursegrade: {name!r} is not an assignment of this course (one of: {', '.join(known)})")
    return name


def cmd_collect(args) -> int:
    from .collect import collect

    root = _course_root()
    report = collect(root, _assignment(root, args.assignment), Path(args.download))
    print(report.summary())
    return 0


def cmd_autograde(args) -> int:
    from .classroom import ClassGrader
    from .config import configured_limits

    root = _course_root()
    limits = configured_limits(root).replace(
        cell_seconds=args.cell_timeout, notebook_seconds=args.notebook_timeout, memory_mb=args.memory_mb,
        processes=args.processes)
    grader = ClassGrader(root, limits=limits, workers=args.workers, skip_demonstrations=not args.run_everything,
                         progress=not args.quiet)
    if not grader.isolation.confined:
        print("WARNING: submissions will NOT be confined on this machine:\n  "
              + "\n  ".join(grader.isolation.describe()), file=sys.stderr)
    report = grader.autograde(_assignment(root, args.assignment), args.student or None, force=args.force)
    print(report.summary())
    print(f"(also in {Path('reports') / 'grading' / (report.assignment + '.txt')})")
    return 1 if report.failed else 0


def cmd_feedback(args) -> int:
    from .feedback import generate

    root = _course_root()
    pages = generate(root, _assignment(root, args.assignment), args.student)
    print(f"{len(pages)} feedback page(s) in feedback/*/{args.assignment}/")
    return 0


def cmd_export(args) -> int:
    from .export import export

    path = export(_course_root(), args.to)
    print(f"grades written to {path}")
    return 0


def cmd_selfgrade(args) -> int:
    from .selfgrade import main as selfgrade_main

    return selfgrade_main(args.targets)


def cmd_isolation(args) -> int:
    from .config import configured_limits
    from .sandbox import probe

    print("\n".join(probe().describe()))
    try:
        limits, where = configured_limits(find_course_root(Path.cwd())), "this course's nbgrader_config.py"
    except FileNotFoundError:
        limits, where = Limits(), "the defaults: run it from the course root to see the course's own"
    print(f"limits ({where}): " + limits.describe())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="coursegrade", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="import an LMS download (zip or folder) into submitted/")
    p.add_argument("assignment")
    p.add_argument("download", help="the zip or folder the LMS exported")
    p.set_defaults(run=cmd_collect)

    p = sub.add_parser("autograde", help="grade every submission of an assignment, isolated and in parallel")
    p.add_argument("assignment")
    p.add_argument("--student", action="append", help="grade only this student (repeat for several)")
    p.add_argument("--workers", type=int,
                   help="submissions graded at once (default: one per CPU core, fewer if memory is short)")
    p.add_argument("--force", action="store_true", help="grade again submissions already graded")
    p.add_argument("--run-everything", action="store_true",
                   help="run every cell, demonstrations included (slower; the scores are the same)")
    p.add_argument("--cell-timeout", type=float, help="seconds per cell")
    p.add_argument("--notebook-timeout", type=float, help="seconds per notebook")
    p.add_argument("--memory-mb", type=int, help="memory per submission")
    p.add_argument("--processes", type=int, help="processes and threads per submission")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_autograde)

    p = sub.add_parser("feedback", help="write per-student HTML feedback (hidden tests' code never shown)")
    p.add_argument("assignment")
    p.add_argument("--student")
    p.set_defaults(run=cmd_feedback)

    p = sub.add_parser("export", help="grades to CSV: one row per student, per assignment and total")
    p.add_argument("--to", help="destination (default: the course's grades/grades.csv)")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("selfgrade", help="grade your own notebook against the hidden tests")
    p.add_argument("targets", nargs="*", help="notebook paths or assignment ids (default: every lesson)")
    p.set_defaults(run=cmd_selfgrade)

    p = sub.add_parser("isolation", help="say what confines a submission on this machine")
    p.set_defaults(run=cmd_isolation)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
