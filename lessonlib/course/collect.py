"""Import an LMS download into ``submitted/`` with nbgrader's zip_collect, and say what was found.

    coursegrade collect 00_orientation ~/Downloads/submissions.zip      # a zip, or a folder

The download is copied into ``downloaded/<assignment>/archive/`` and nbgrader's ``ZipCollectApp`` extracts it
(zips inside zips included) and files each notebook as ``submitted/<student>/<assignment>/<notebook>.ipynb``.

File names. Which student a file belongs to is read from its path inside the download, by the first of
:attr:`LmsFileCollector.named_regexps` that matches (an instructor can set their own in nbgrader_config.py):

* a folder per student: ``alice/00_orientation.ipynb`` (any depth below ``alice/``);
* a prefix: ``alice_00_orientation.ipynb`` -- the student id is what comes before ``_<the lesson's notebook
  name>`` (so ``alice_smith_00_orientation.ipynb`` is ``alice_smith``), and for any other name everything before
  the first ``_``, so Canvas-style names (``smithjane_12345_67890_00_orientation.ipynb``) give ``smithjane``.

A notebook whose name is not the lesson's (``my attempt.ipynb``, Canvas' numbered copies) is filed under the
lesson's name when it is that student's only notebook in the download; the report says so. Everything else that
does not match is listed, not guessed at.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.plugins import FileNameCollectorPlugin
from traitlets import List, Unicode

from .nbgrader_steps import in_folder, nbgrader_app

DEFAULT_REGEXPS = [
    r"^(?P<student_id>[A-Za-z0-9][\w.@-]*)/(?:.+/)?(?P<file_id>[^/]+)$",
    r"^(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*)_(?P<file_id>[^/]+)$",
]


class LmsFileCollector(FileNameCollectorPlugin):
    """nbgrader's file name collector with the course's naming rules and matching of renamed notebooks."""

    named_regexps = List(Unicode(), DEFAULT_REGEXPS, help="Regular expressions tried in order on each file's "
                         "path relative to the extracted download (with / separators); each provides "
                         "(?P<student_id>...) and (?P<file_id>...).").tag(config=True)
    wrapper = Unicode("", help="A folder the whole download sits in (the zip's own name): ignored.").tag(
        config=True)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.notes: list[str] = []
        self.unmatched: list[str] = []
        self._notebooks_of: dict[str, list[str]] | None = None

    def _relative(self, path: str) -> str:
        """The file's path inside the download: zip_collect extracts each archive into a folder named after it,
        which says nothing about the student."""
        extracted = self.parent._format_collect_path(self.parent.extracted_directory)
        relative = Path(os.path.relpath(path, extracted)).as_posix()
        for wrapper in self._wrappers():
            if relative.startswith(wrapper + "/"):
                return relative[len(wrapper) + 1:]
        return relative

    def _wrappers(self) -> list[str]:
        if self.wrapper:
            return [self.wrapper]
        archive = Path(self.parent._format_collect_path(self.parent.archive_directory))
        return sorted(p.name.split(".")[0] for p in archive.glob("*") if p.suffix in (".zip", ".gz"))

    def _match(self, filename: str) -> dict | None:
        relative = self._relative(filename)
        if not self.named_regexp and "/" not in relative:
            for released in self._released():       # alice_smith_01_inference_costs.ipynb: the id may hold "_"
                if relative.endswith("_" + released) and len(relative) > len(released) + 1:
                    return {"student_id": relative[:-len(released) - 1], "file_id": released}
        patterns = [self.named_regexp] if self.named_regexp else self.named_regexps
        for pattern in patterns:
            match = re.match(pattern, relative)
            if match and match.groupdict().get("student_id") and match.groupdict().get("file_id"):
                return dict(match.groupdict())
        return None

    def _released(self) -> list[str]:
        coursedir = self.parent.coursedir
        folder = Path(coursedir.format_path(coursedir.release_directory, ".", coursedir.assignment_id))
        return sorted(p.name for p in folder.glob("*.ipynb"))

    def _notebooks_by_student(self) -> dict[str, list[str]]:
        if self._notebooks_of is None:
            extracted = Path(self.parent._format_collect_path(self.parent.extracted_directory))
            self._notebooks_of = {}
            for path in sorted(extracted.rglob("*.ipynb")):
                if ".ipynb_checkpoints" in path.parts:
                    continue
                info = self._match(str(path))
                if info:
                    self._notebooks_of.setdefault(info["student_id"], []).append(str(path))
        return self._notebooks_of

    def collect(self, submitted_file: str) -> dict | None:
        relative = self._relative(submitted_file)
        if ".ipynb_checkpoints" in relative.split("/") or Path(relative).name.startswith("."):
            return None
        if not submitted_file.endswith(tuple(self.valid_ext)):
            self.unmatched.append(f"{relative} (not a notebook)")
            return None
        info = self._match(submitted_file)
        if not info:
            self.unmatched.append(f"{relative} (no student id in its name or folder)")
            return None
        released = self._released()
        name = Path(info["file_id"]).name
        if name not in released:
            own = self._notebooks_by_student().get(info["student_id"], [])
            if len(released) == 1 and len(own) == 1:
                self.notes.append(f"{info['student_id']}: {name} filed as {released[0]} (their only notebook)")
                name = released[0]
            else:
                self.unmatched.append(f"{relative} (not named {' or '.join(released)}, and not "
                                      f"{info['student_id']}'s only notebook)")
                return None
        info["file_id"] = name
        return info


@dataclass
class CollectReport:
    assignment: str
    students: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    without_notebook: list[str] = field(default_factory=list)   # known to the gradebook, nothing collected

    def summary(self) -> str:
        lines = [f"{self.assignment}: collected {len(self.students)} student(s) into submitted/"
                 + (f": {', '.join(self.students)}" if self.students else "")]
        lines += [f"  renamed: {note}" for note in self.renamed]
        if self.unmatched:
            lines.append(f"  NOT COLLECTED ({len(self.unmatched)} file(s); rename them as described in the README's "
                         "instructor guide, then collect again):")
            lines += [f"    {item}" for item in self.unmatched]
        if self.without_notebook:
            lines.append(f"  no notebook from: {', '.join(self.without_notebook)}")
        return "\n".join(lines)


def collect(course_root: Path, assignment: str, download: Path) -> CollectReport:
    """Place ``download`` (a zip or a folder) where zip_collect looks, and run it."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import ZipCollectApp

    download = Path(download).expanduser().resolve()
    if not download.exists():
        raise SystemExit(f"{download}: no such file or folder (give the zip or folder your LMS exported)")
    released = sorted((course_root / "notebooks" / assignment).glob("*.ipynb"))
    if not released:
        raise SystemExit(f"notebooks/{assignment}/ holds no release: is {assignment} an assignment of this course?")
    archive = course_root / "downloaded" / assignment / "archive"
    if archive.exists():
        shutil.rmtree(archive)
    archive.mkdir(parents=True)
    if download.is_dir():
        shutil.copytree(download, archive / download.name)
        wrapper = download.name
    else:
        shutil.copy(download, archive / download.name)
        wrapper = download.stem if download.suffix == ".zip" else ""
    report = CollectReport(assignment)
    before = _submitted(course_root, assignment)
    with in_folder(course_root):
        app = nbgrader_app(ZipCollectApp, course_root, [assignment, "--force", "--strict",
                                                         "--ZipCollectApp.collector_plugin="
                                                         "lessonlib.course.collect.LmsFileCollector",
                                                         f"--LmsFileCollector.wrapper={wrapper}"],
                           log_level=logging.ERROR)
        app.coursedir.assignment_id = assignment
        try:
            app.start()
        except SystemExit:
            raise SystemExit(f"nbgrader zip_collect stopped (see its error above); nothing after it was collected. "
                             f"The download is in downloaded/{assignment}/archive/") from None
        plugin = app.collector_plugin_inst
        report.renamed, report.unmatched = plugin.notes, plugin.unmatched
        with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gradebook:
            known = [s.id for s in gradebook.students]
    after = _submitted(course_root, assignment)
    report.students = sorted(s for s, mtime in after.items() if before.get(s) != mtime)
    report.without_notebook = sorted(set(known) - set(after))
    return report


def _submitted(course_root: Path, assignment: str) -> dict[str, float]:
    """Students with a notebook in submitted/ for the assignment, and the newest notebook's mtime."""
    found = {}
    for folder in (course_root / "submitted").glob(f"*/{assignment}"):
        notebooks = list(folder.glob("*.ipynb"))
        if notebooks:
            found[folder.parent.name] = max(p.stat().st_mtime_ns for p in notebooks)
    return found
