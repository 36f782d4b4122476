"""A class of students for lesson 01, good and hostile, as an LMS download, with the score each deserves.

Every submission starts from the student release with the solution's answers (or none: the blank release; or
some wrong and one missing: the partial one, with wrong answers from tests/wrong_answers/01_inference_costs.py)
and then does one thing: loops forever, exhausts memory, forks, exits or
crashes its kernel, edits/deletes/moves test cells, corrupts its JSON, fakes equality, patches the grading
helper, reads solutions/ or another student's folder, writes the gradebook, reaches for the network, floods its
output or its disk, or changes grading metadata and cell ids. ``expect`` is the score of every autograded test
cell (``FULL`` for the rest); ``notes`` are words the class report must say about it.
"""
from __future__ import annotations

import copy
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .submissions import answered_release, load_variants

ASSIGNMENT = "01_inference_costs"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
POINTS = {"q1_tests": 5, "q2_kv_tests": 2, "q2_batch_tests": 2, "q3_tests": 4, "q4_latency_tests": 2,
          "q4_devices_tests": 2}
ZERO = {gid: 0 for gid in POINTS}


@dataclass
class Student:
    id: str
    path: str                         # its file's path inside the LMS download
    content: bytes
    expect: dict[str, float] = field(default_factory=dict)   # test cells that do not score full marks
    notes: list[str] = field(default_factory=list)           # words its entry in the report must contain
    status: str = "graded"

    def expected_scores(self) -> dict[str, float]:
        return {gid: self.expect.get(gid, points) for gid, points in POINTS.items()}


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def insert_after(nb, grade_id: str, source: str):
    nb = copy.deepcopy(nb)
    nb.cells.insert(_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return nb


def build(repo: Path, course_root: Path) -> list[Student]:
    """The class. ``course_root`` is where it will be graded (hostile cells aim at its real paths)."""
    solution = nbformat.read(repo / "solutions" / ASSIGNMENT / NOTEBOOK, as_version=4)
    release = nbformat.read(repo / "notebooks" / ASSIGNMENT / NOTEBOOK, as_version=4)
    variants = {v.name: v for v in load_variants(repo, ASSIGNMENT)}
    good = answered_release(release, solution, {})

    def answered(**replace):
        return answered_release(release, solution, replace)

    def flat(student_id, nb):
        return Student(student_id, f"{student_id}_{NOTEBOOK}", nbformat.writes(nb).encode())

    students: list[Student] = []

    def add(student: Student, expect=None, notes=(), status="graded"):
        student.expect, student.notes, student.status = dict(expect or {}), list(notes), status
        students.append(student)

    # -- good submissions ----------------------------------------------------------------------------------
    add(flat("good_solution", good))
    add(Student("good_in_a_folder", f"good_in_a_folder/{NOTEBOOK}", nbformat.writes(good).encode()))
    add(flat("good_written_differently", answered(**variants["written_differently"].replace)))
    noisy = answered(q1_answer='''
import logging
import sys
import warnings

logging.basicConfig()


def count_params(config):
    print("debug: counting", config.get("hidden_size"))
    print("debug: to stderr", file=sys.stderr)
    warnings.warn("this function is slow", UserWarning)
    logging.warning("counting parameters for %s layers", config.get("num_hidden_layers"))
    d = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or d // heads
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mlp = 3 * d * config["intermediate_size"]
    head = 0 if config.get("tie_word_embeddings", False) else config["vocab_size"] * d
    return config["vocab_size"] * d + config["num_hidden_layers"] * (attention + mlp + 2 * d) + d + head
''')
    add(flat("good_noisy", noisy))      # the grading helper reports its stderr on stdout: nothing to note
    add(flat("good_megabytes", insert_after(good, "q1_tests", "print('x' * 5_000_000)")), notes=["printed more than"])
    renamed = Student("renamed", "renamed_my attempt.ipynb", nbformat.writes(good).encode())
    add(renamed)
    add(flat("blank", release), expect=ZERO)
    unanswered = next(c.source for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                      == "q4_numbers_answer")
    partial = {**variants["q1_always_counts_the_lm_head"].replace, **variants["q2_batch_rounds_to_nearest"].replace,
               "q4_numbers_answer": unanswered}
    add(flat("partial", answered(**partial)),
        expect={**variants["q1_always_counts_the_lm_head"].expect, **variants["q2_batch_rounds_to_nearest"].expect,
                "q4_devices_tests": 0})

    # -- runaway code ----------------------------------------------------------------------------------------
    add(flat("infinite_loop", insert_after(good, "q1_tests", "while True:\n    pass")), notes=["interrupted"])
    add(flat("stubborn_loop", insert_after(good, "q2_batch_tests", """
import time
while True:
    try:
        time.sleep(0.1)
    except KeyboardInterrupt:
        pass""")), notes=["did not stop when interrupted", "run again without that cell"])
    bomb = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**8))"
    add(flat("memory_bomb", insert_after(good, "q1_tests", bomb)),
        notes=["MemoryError", "hit the memory limit (2048 MB); the notebook was run again without that cell"])
    add(flat("fork_bomb", insert_after(good, "q2_kv_tests", "import os\nwhile True:\n    os.fork()")),
        notes=["fork bomb"])
    add(flat("exits_mid_notebook", insert_after(good, "q2_batch_tests", "import os\nos._exit(3)")),
        notes=["exited", "run again without that cell"])
    add(flat("crashes_kernel", insert_after(good, "q3_tests", "import ctypes\nctypes.string_at(0)")),
        notes=["segmentation fault"])
    add(flat("disk_filler", insert_after(good, "q1_tests", """
with open("big.bin", "wb") as f:
    for _ in range(4096):
        f.write(b"x" * 2**20)""")), notes=["File too large"])

    # -- test cells changed ----------------------------------------------------------------------------------
    edited = answered(**variants["q1_ignores_grouped_query_attention"].replace)
    edited.cells[_index(edited, "q1_tests")].source = 'print("PASS  everything")\n5'
    add(flat("edited_test_cell", edited), expect={"q1_tests": 2}, notes=["q1_tests was edited"])
    deleted = copy.deepcopy(good)
    del deleted.cells[_index(deleted, "q2_kv_tests")]
    add(flat("deleted_test_cell", deleted), notes=["q2_kv_tests was missing"])
    moved = copy.deepcopy(good)
    test = moved.cells.pop(_index(moved, "q1_tests"))
    moved.cells.insert(_index(moved, "q1_answer"), test)           # the test above its answer
    block = [moved.cells.pop(_index(moved, gid)) for gid in ("q4_latency_answer", "q4_latency_tests")]
    moved.cells[0:0] = block                                         # exercise 4a first
    add(flat("cells_reordered", moved), notes=["out of the lesson's order"])
    # grading metadata and cell ids changed (as a JSON editor would): nbgrader restores its own, and says so
    retagged = copy.deepcopy(good)
    meta = retagged.cells[_index(retagged, "q2_kv_tests")].metadata.nbgrader
    meta["grade"], meta["points"] = False, 100                       # a test cell no longer graded
    meta = retagged.cells[_index(retagged, "q2_batch_answer")].metadata.nbgrader
    meta.update(grade=True, solution=False, locked=True, points=50)  # an answer cell turned into a test
    retagged.cells[_index(retagged, "q3_tests")].cell_type = "markdown"
    for cell in retagged.cells:
        cell["id"] = "same"                                          # duplicated cell ids
    add(Student("changed_metadata", f"changed_metadata_{NOTEBOOK}", json.dumps(retagged).encode()),
        notes=["grading metadata", "q2_kv_tests", "q2_batch_answer", "q3_tests"])
    bonus = copy.deepcopy(release)
    for grade_id in POINTS:
        cell = bonus.cells[_index(bonus, grade_id)]
        cell.source = str(POINTS[grade_id])                          # every test replaced by its full points
        cell.metadata.nbgrader["points"] = 1000
    made_up = nbformat.v4.new_code_cell("50")
    made_up.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "bonus",
                                    "points": 50, "schema_version": 3}
    copied = copy.deepcopy(bonus.cells[_index(bonus, "q1_tests")])  # a second copy of a test cell
    no_id = nbformat.v4.new_code_cell("5")
    no_id.metadata["nbgrader"] = {"grade": True, "points": 5}       # grading metadata without a grade_id
    bonus.cells += [made_up, copied, no_id]
    add(flat("awards_itself_points", bonus), expect=ZERO,
        notes=["bonus", "score nothing", "q1_tests appeared more than once", "q1_tests was edited"])
    broken = nbformat.writes(good).encode()[:5000]
    add(Student("invalid_json", f"invalid_json_{NOTEBOOK}", broken), expect=ZERO,
        notes=["not a readable notebook"], status="unreadable")

    # -- cheating --------------------------------------------------------------------------------------------
    add(flat("always_equal", answered(q1_answer='''
class Count:
    def __eq__(self, other):
        return True

    def __float__(self):
        return 6_738_415_616.0


def count_params(config):
    return Count()
''')), expect={"q1_tests": 1})
    add(flat("patches_the_grader", answered(q1_answer='''
import builtins
import math

import lessonlib.course.grading as grading

grading.Grader.score = lambda self: self.points
grading.assert_close = lambda *args, **kwargs: True
grading.is_close = lambda *args, **kwargs: True
math.isclose = lambda *args, **kwargs: True
builtins.all = lambda *args: True


def count_params(config):
    return 0
''')), expect={"q1_tests": 0}, notes=["put back what the notebook had changed", "Grader.score"])
    add(flat("patches_during_the_test", answered(q1_answer='''
def count_params(config):
    import lessonlib.course.grading as grading
    grading.is_close = lambda *args, **kwargs: True
    grading.assert_close = lambda *args, **kwargs: True
    return 0
''')), expect={"q1_tests": 0}, notes=["changed while the test ran"])
    add(flat("calls_the_reference", answered(**variants["q1_calls_the_reference_cost_model"].replace)),
        expect={"q1_tests": 0})
    solutions = course_root / "solutions" / ASSIGNMENT / NOTEBOOK
    neighbour = course_root / "submitted" / "good_solution" / ASSIGNMENT / NOTEBOOK
    add(flat("reads_solutions", insert_after(release, "q1_answer", f'''
import json
import os
print("uid", os.getuid(), "sees", sorted(os.listdir("/")), "and", os.listdir("."))
for path in ({str(solutions)!r}, {str(neighbour)!r}, {str(course_root / "gradebook.db")!r}):
    try:
        open(path, "rb").read(1)
        print("READ", path)
    except OSError as error:
        print("cannot read", path, type(error).__name__)
import glob
for path in glob.glob("**/*.ipynb", recursive=True) + glob.glob("/tmp/**/*.ipynb", recursive=True):
    if "BEGIN HIDDEN" + " TESTS" in open(path).read():     # a copy of the source notebook within reach
        print("READ", path)
source = json.load(open({str(solutions)!r}))
for cell in source["cells"]:
    if cell["metadata"].get("nbgrader", {{}}).get("solution"):
        exec("".join(cell["source"]))
''')), expect=ZERO, notes=["FileNotFoundError"])
    add(flat("writes_the_gradebook", insert_after(good, "q1_answer", f'''
import glob
for path in [{str(course_root / "gradebook.db")!r}, {str(neighbour)!r}, "../gradebook.db", "../../gradebook.db",
             "../../../gradebook.db", *glob.glob("/tmp/**/*.db", recursive=True),
             *glob.glob("/tmp/**/*.ipynb", recursive=True)]:
    try:
        with open(path, "wb") as f:
            f.write(b"overwritten")
        print("WROTE", path)
    except OSError as error:
        print("cannot write", path, type(error).__name__)
open({str(course_root / "gradebook.db")!r}, "wb").write(b"overwritten")
''')), notes=["FileNotFoundError"])
    add(flat("reaches_the_network", insert_after(good, "q1_tests", '''
import socket
socket.create_connection(("pypi.org", 443), timeout=5)
''')), notes=["no network"])
    add(flat("reaches_by_address", insert_after(good, "q1_tests", '''
import socket
socket.create_connection(("1.1.1.1", 80), timeout=5)
''')), notes=["Network is unreachable"])
    return students


def download(students: list[Student]) -> bytes:
    """The class as a zip, as an LMS exports it, with a stray file that belongs to no one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for student in students:
            archive.writestr(student.path, student.content)
        archive.writestr("README.txt", "exported by the LMS")
    return buffer.getvalue()


def class_walkthrough(readme: str) -> list[str]:
    """The commands of the README's class walk-through (the fenced block after its marker), in order."""
    marker = "<!-- class-walkthrough -->"
    if marker not in readme:
        raise AssertionError(f"README.md has no {marker} block")
    block = readme.split(marker, 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines()[1:] if line.strip() and not line.strip().startswith("#")]


def load_report(course_root: Path) -> dict:
    return json.loads((course_root / "reports" / "grading" / f"{ASSIGNMENT}.json").read_text())
