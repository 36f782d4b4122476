"""The class's JupyterHub under load: N students logging in, starting servers, fetching and submitting at once.

    sudo python benchmarks/bench_hub.py                       # 20 students
    sudo python benchmarks/bench_hub.py --students 40 --root /srv/efficient-llm-inference-bench

Runs as root on Linux, like the hub (hub/, README: "A class on JupyterHub"). It creates an instructor and N
students as real Linux users (removed at the end), prepares COURSE_HUB_ROOT with `make hub-setup` (the course
environment is built once and reused), starts the hub on localhost, and measures, through the hub's proxy with
each user's own token:

* server start: N servers requested at once (one thread per student, as N browsers), seconds until each is ready
  (median, p95, max) and the whole wave;
* memory per idle student server: after the wave has settled, the proportional set size (PSS: shared pages
  divided among the processes sharing them) and the resident set size of every process the student's uid runs,
  median over the students; the hub and its proxy too;
* a lesson kernel: the peak RSS of one Python process, as a student, after lesson 00's imports (torch,
  matplotlib, lessonlib), shared libraries counted in full (kernels of many students share those pages, so the
  sum over a class overstates them; the lesson's own work adds to it);
* exchange operations per second: N fetches at once, then N submits at once (nbgrader's exchange behind each
  server's assignment-list API), completed operations over the wave's wall time, and each one's latency;
* the instructor's collect of N submissions.

Prints a report, with what it predicts for a class of 200 on one machine and on Kubernetes (the assumptions are
printed with the numbers), and writes reports/bench-hub.json. Not a test: timing on a shared machine is noisy;
the load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hub_driver import (  # noqa: E402
    Hub,
    UserServer,
    as_user,
    create_user,
    free_ports,
    processes_of,
    remove_user,
    why_not_here,
)

ASSIGNMENT = "00_orientation"
INSTRUCTOR = "ebenchteach"


def memory_of(pids: list[int]) -> tuple[float, float]:
    """(PSS, RSS) in MB of these processes together."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pss / 1024, rss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "p95": percentile(values, 0.95), "max": max(values),
            "min": min(values)}


def wave(names: list[str], action) -> tuple[float, list[float]]:
    """Run action(name) for every name at once; the wave's wall time and each call's latency."""
    def timed(name):
        start = time.monotonic()
        action(name)
        return time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        latencies = list(pool.map(timed, names))
    return time.monotonic() - start, latencies


def kernel_floor(hub: Hub, student: str) -> float:
    """Peak RSS (MB) of a Python process of the course environment after lesson 00's imports, as the student."""
    code = ("import resource, torch, matplotlib.pyplot, lessonlib.lessons.orientation, lessonlib.course.grading; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = as_user(student, str(hub.root / "env" / "bin" / "python"), "-c", code)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return int(result.stdout.split()[-1]) / 1024


def run(students: int, root: Path, settle: float) -> dict:
    names = [f"ebench{i:03d}" for i in range(1, students + 1)]
    users = [INSTRUCTOR, *names]
    load_before = os.getloadavg()
    for user in users:
        create_user(user, os.urandom(9).hex())
    hub = Hub(root, free_ports(3))
    result: dict = {"students": students, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                      "memory_gb": os.sysconf("SC_PHYS_PAGES") *
                                                      os.sysconf("SC_PAGE_SIZE") / 2**30},
                    "load_before": load_before}
    try:
        hub.setup([INSTRUCTOR], names)
        start = time.monotonic()
        hub.start()
        result["hub_start_s"] = time.monotonic() - start
        tokens = dict(zip(users, ThreadPoolExecutor(8).map(hub.user_token, users), strict=True))
        servers = {u: UserServer(hub, u, tokens[u]) for u in users}

        hub.start_all([INSTRUCTOR])
        released = servers[INSTRUCTOR].formgrader("POST", f"assignment/{ASSIGNMENT}/release")
        assert released["success"], released

        start = time.monotonic()
        ready = hub.start_all(names)
        result["server_start_wave_s"] = time.monotonic() - start
        result["server_start_s"] = summary(list(ready.values()))

        time.sleep(settle)
        per_student = [memory_of(processes_of(n)) for n in names]
        result["idle_server_pss_mb"] = summary([p for p, _ in per_student])
        result["idle_server_rss_mb"] = summary([r for _, r in per_student])
        hub_pids = [hub.process.pid] + [int(p) for p in
                                        os.popen(f"pgrep -g {os.getpgid(hub.process.pid)}").read().split()]
        result["hub_and_proxy_pss_mb"] = memory_of(sorted(set(hub_pids)))[0]
        result["kernel_floor_rss_mb"] = kernel_floor(hub, names[0])

        seconds, latencies = wave(names, lambda n: servers[n].assignment_action("fetch", ASSIGNMENT))
        result["fetch"] = {"wave_s": seconds, "ops_per_s": students / seconds, "latency_s": summary(latencies)}
        seconds, latencies = wave(names, lambda n: servers[n].assignment_action("submit", ASSIGNMENT))
        result["submit"] = {"wave_s": seconds, "ops_per_s": students / seconds, "latency_s": summary(latencies)}
        start = time.monotonic()
        collected = servers[INSTRUCTOR].formgrader("POST", f"assignment/{ASSIGNMENT}/collect")
        assert collected["success"], collected
        result["collect_s"] = time.monotonic() - start
        course = Path(os.path.expanduser(f"~{INSTRUCTOR}")) / "efficient-llm-inference" / "submitted"
        result["collected"] = len(list(course.glob(f"*/{ASSIGNMENT}/{ASSIGNMENT}.ipynb")))

        start = time.monotonic()
        hub.stop()
        result["hub_stop_s"] = time.monotonic() - start
        result["left_running"] = {u: len(processes_of(u)) for u in users if processes_of(u)}
    finally:
        hub.stop()
        for user in users:
            remove_user(user)
    result["load_after"] = os.getloadavg()
    return result


def predict(result: dict, class_size: int = 200, machine_gb: int = 128, machine_cpus: int = 32,
            node_gb: int = 32, open_kernels: float = 1.0) -> list[str]:
    """What the measurements say about a class of class_size, each student with open_kernels lesson kernels open."""
    server = result["idle_server_pss_mb"]["median"]
    kernel = result["kernel_floor_rss_mb"]
    per_student = server + open_kernels * kernel
    total_gb = (class_size * per_student + result["hub_and_proxy_pss_mb"]) / 1024
    starts_per_s = result["students"] / result["server_start_wave_s"]
    cpu_scale = machine_cpus / result["machine"]["cpus"]
    lines = [
        f"a class of {class_size}, each with {open_kernels:g} lesson kernel open ({kernel:.0f} MB RSS after the "
        f"imports) and an idle server ({server:.0f} MB PSS): about {total_gb:.0f} GB for the users, before the "
        "lesson's own work (lessons 02-04 train and time small models in the kernel)",
        f"one machine of {machine_gb} GB and {machine_cpus} cores: memory for about "
        f"{int(machine_gb * 1024 * 0.8 / per_student)} such students (80% of memory); everyone logging in at once "
        f"starts at {starts_per_s:.2f} servers/s measured here on {result['machine']['cpus']} cores, about "
        f"{starts_per_s * cpu_scale:.1f}/s if it scales with cores: {class_size / (starts_per_s * cpu_scale):.0f} s "
        f"for all {class_size} (here: {class_size / starts_per_s:.0f} s)",
        f"exchange: {result['submit']['ops_per_s']:.1f} submits/s and {result['fetch']['ops_per_s']:.1f} fetches/s "
        f"here: {class_size} submitting in the same minute is "
        f"{class_size / result['submit']['ops_per_s']:.0f} s of queue at this rate",
        f"Kubernetes (hub/z2jh/values.yaml: 1 GB guaranteed, 3 GB limit per student): {class_size} GB guaranteed, "
        f"{-(-class_size // (node_gb - 2))} nodes of {node_gb} GB at the guarantee (2 GB per node kept for the "
        f"system); each node starts its own pods, so the start wave scales with nodes, and the exchange is the "
        "shared volume's file operations",
    ]
    return lines


def report(result: dict) -> str:
    s = result["server_start_s"]
    lines = [
        f"# JupyterHub load: {result['students']} students at once "
        f"({result['machine']['cpus']} CPUs, {result['machine']['memory_gb']:.0f} GB; load "
        f"{result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after)",
        f"hub start: {result['hub_start_s']:.1f} s",
        f"server start, all at once: median {s['median']:.1f} s, p95 {s['p95']:.1f} s, max {s['max']:.1f} s; "
        f"the wave {result['server_start_wave_s']:.1f} s "
        f"({result['students'] / result['server_start_wave_s']:.2f} servers/s)",
        f"idle student server: PSS median {result['idle_server_pss_mb']['median']:.0f} MB "
        f"(RSS {result['idle_server_rss_mb']['median']:.0f} MB); hub and proxy {result['hub_and_proxy_pss_mb']:.0f} "
        "MB PSS",
        f"a lesson kernel after lesson 00's imports: {result['kernel_floor_rss_mb']:.0f} MB RSS (shared libraries "
        "counted in full)",
    ]
    for op in ("fetch", "submit"):
        r = result[op]
        lines.append(f"{op}: {r['ops_per_s']:.1f} ops/s ({result['students']} in {r['wave_s']:.1f} s; latency "
                     f"median {r['latency_s']['median']:.2f} s, max {r['latency_s']['max']:.2f} s)")
    lines.append(f"collect: {result['collected']} submissions in {result['collect_s']:.1f} s")
    lines.append(f"hub stop: {result['hub_stop_s']:.1f} s; processes left running: {result['left_running'] or 'none'}")
    lines.append("prediction:")
    lines += [f"  - {line}" for line in predict(result)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("COURSE_HUB_TEST_ROOT",
                                                                         "/srv/efficient-llm-inference-test")))
    parser.add_argument("--settle", type=float, default=15, help="seconds to wait before measuring idle memory")
    args = parser.parse_args()
    reason = why_not_here()
    if reason:
        raise SystemExit(reason)
    result = run(args.students, args.root, args.settle)
    text = report(result)
    print(text)
    out = REPO / "reports" / "bench-hub.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**result, "report": text}, indent=2))
    print(f"(raw numbers in {out.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
