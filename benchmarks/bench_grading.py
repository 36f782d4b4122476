"""Class grading speed: seconds per submission for every lesson, and what a second worker buys.

    python benchmarks/bench_grading.py                      # or: make bench-grading
    python benchmarks/bench_grading.py --submissions 8 --baseline 2 --lessons 01_inference_costs

For each lesson, a class of N copies of the answered release (the solution's answers) is graded with
``coursegrade``'s machinery (lessonlib.course.classroom), in a fresh copy of the course each time:

* per submission: the worker's wall time from job start to executed notebook -- sandbox set-up, kernel start
  and every cell that runs -- median over the class, with one worker (the target: <= 4 s, kernel start
  included); also the whole command divided by N (registration, pool start and gradebook writes included);
* CPU seconds per submission (worker, its sandboxed kernel and the gradebook write in the grading process): a
  busy machine stretches wall-clock time, hardly CPU time, so this column says what a quiet machine would see;
* baseline: the same submissions with ``--run-everything`` (no demonstration skipped), for ``--baseline``
  submissions of each lesson;
* parallel: the lesson with the most work graded with 1 worker and with 2, same submissions; the ratio of their
  grading phases (first dispatch to last gradebook write) is the speed-up (target: >= 1.7x on 2 cores).

Results are printed and written to reports/bench-grading.json. Timing on a shared machine is noisy: the load
average is recorded with the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lessonlib.course.classroom import ClassGrader  # noqa: E402
from tests.submissions import answered_release  # noqa: E402

TARGET_SECONDS = 4.0
TARGET_SPEEDUP = 1.7


def make_class(folder: Path, assignment: str, n: int) -> Path:
    root = folder / "course"
    root.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    for sub in ("solutions", "notebooks"):
        shutil.copytree(REPO / sub / assignment, root / sub / assignment)
    name = f"{assignment}.ipynb"
    solution = nbformat.read(REPO / "solutions" / assignment / name, as_version=4)
    release = nbformat.read(REPO / "notebooks" / assignment / name, as_version=4)
    answered = answered_release(release, solution, {})
    for i in range(n):
        target = root / "submitted" / f"s{i:02d}" / assignment
        target.mkdir(parents=True)
        nbformat.write(answered, target / name)
    return root


def grade(assignment: str, n: int, workers: int, skip: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        root = make_class(Path(folder), assignment, n)
        started = time.monotonic()
        report = ClassGrader(root, workers=workers, skip_demonstrations=skip, progress=False).autograde(assignment)
        total = time.monotonic() - started
    failed = [r.student for r in report.results if r.status != "graded"]
    per = [r.seconds for r in report.results]
    cpu = [sum(v for k, v in r.phases.items() if k.startswith("cpu: ")) for r in report.results]
    phases = sorted({k for r in report.results for k in r.phases})
    return {"assignment": assignment, "submissions": n, "workers": workers, "skip_demonstrations": skip,
            "median_seconds": statistics.median(per), "max_seconds": max(per),
            "median_cpu_seconds": statistics.median(cpu),
            "median_kernel_start_seconds": statistics.median(r.kernel_seconds for r in report.results),
            "median_phases": {k: statistics.median(r.phases.get(k, 0.0) for r in report.results) for k in phases},
            "command_seconds": total, "grading_seconds": report.grading_seconds,
            "command_seconds_per_submission": total / n, "cells_skipped": report.results[0].cells_skipped,
            "not_graded": failed, "scores": sorted({r.score for r in report.results}),
            "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lessons", nargs="*", help="assignments (default: every lesson)")
    parser.add_argument("--submissions", type=int, default=6, help="class size per lesson (default 6)")
    parser.add_argument("--baseline", type=int, default=1,
                        help="submissions per lesson graded with every cell run (default 1; 0 to skip)")
    parser.add_argument("--parallel-submissions", type=int, default=12,
                        help="class size for the 1-vs-2-workers comparison (default 12)")
    args = parser.parse_args(argv)
    lessons = args.lessons or sorted(p.name for p in (REPO / "solutions").iterdir() if any(p.glob("*.ipynb")))
    results = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count(), "lessons": {}, "parallel": {}}

    print(f"{'lesson':27} {'skip':>5} {'n':>3} {'median s':>9} {'max s':>7} {'cpu s':>6} {'kernel s':>8} "
          f"{'cmd s/sub':>9} {'skipped':>7} {'load':>5}")
    for lesson in lessons:
        rows = [grade(lesson, args.submissions, 1, True)]
        if args.baseline:
            rows.append(grade(lesson, args.baseline, 1, False))
        results["lessons"][lesson] = rows
        for row in rows:
            print(f"{lesson:27} {'yes' if row['skip_demonstrations'] else 'no':>5} {row['submissions']:>3} "
                  f"{row['median_seconds']:9.2f} {row['max_seconds']:7.2f} {row['median_cpu_seconds']:6.2f} "
                  f"{row['median_kernel_start_seconds']:8.2f} {row['command_seconds_per_submission']:9.2f} "
                  f"{row['cells_skipped']:>7} {row['load_average'][0]:5.1f}")
            if row["not_graded"] or len(row["scores"]) != 1:
                print(f"  WARNING: not graded {row['not_graded']}, scores {row['scores']} (all should be equal)")

    heaviest = max(lessons, key=lambda a: results["lessons"][a][0]["median_seconds"])
    one = grade(heaviest, args.parallel_submissions, 1, True)
    two = grade(heaviest, args.parallel_submissions, 2, True)
    speedup = one["grading_seconds"] / two["grading_seconds"]
    results["parallel"] = {"assignment": heaviest, "one_worker": one, "two_workers": two, "speedup": speedup,
                           "speedup_whole_command": one["command_seconds"] / two["command_seconds"]}
    results["load_average_after"] = os.getloadavg()
    print(f"\nparallel ({heaviest}, {args.parallel_submissions} submissions): 1 worker {one['grading_seconds']:.1f} s, "
          f"2 workers {two['grading_seconds']:.1f} s: {speedup:.2f}x (whole command "
          f"{results['parallel']['speedup_whole_command']:.2f}x)")
    worst = max(results["lessons"][a][0]["median_seconds"] for a in lessons)
    print(f"targets: median <= {TARGET_SECONDS} s per submission for every lesson: "
          f"{'met' if worst <= TARGET_SECONDS else 'NOT met'} (worst {worst:.2f} s); "
          f"2 workers >= {TARGET_SPEEDUP}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")
    print(f"load average before {results['load_average_before']}, after {results['load_average_after']}")
    out = REPO / "reports" / "bench-grading.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
