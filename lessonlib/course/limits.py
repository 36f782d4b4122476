"""The limits every graded submission runs under, in one place.

Wall-clock limits are enforced by the grading process (:mod:`.executor`); the others are kernel resource limits
set inside the sandbox before any student code runs (:mod:`.kernel_boot`). Instructors change them in
``nbgrader_config.py`` (``c.ClassGrading.memory_mb = 4096``) or on the command line
(``coursegrade autograde 03b_pruning_and_the_edge --memory-mb 4096``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

MB = 2**20


@dataclass(frozen=True)
class Limits:
    cell_seconds: float = 120.0       # one cell; the kernel is interrupted, then killed if it does not stop
    notebook_seconds: float = 600.0   # the whole notebook; the kernel is killed and the rest does not run
    memory_mb: int = 3072             # address space of every process of the submission (RLIMIT_AS)
    processes: int = 256              # processes and threads of the sandbox user (RLIMIT_NPROC)
    file_mb: int = 64                 # largest file it may write (RLIMIT_FSIZE)
    disk_mb: int = 256                # its home folder and its /tmp, each (tmpfs size)
    output_kb_per_cell: int = 1024    # output kept per cell; the rest is dropped with a note
    output_mb_per_notebook: int = 16  # output kept per notebook
    open_files: int = 1024            # RLIMIT_NOFILE

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limit {field.name} must be a positive number, got {value!r}")

    @property
    def cpu_seconds(self) -> int:
        """A CPU-time backstop for the kernel (RLIMIT_CPU): the notebook's wall-clock budget on every core of a
        generous machine. The wall-clock limits normally act first."""
        return int(self.notebook_seconds * 4) + 60

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Limits:
        return cls(**json.loads(text))

    def replace(self, **changes) -> Limits:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        return (f"{self.cell_seconds:g} s per cell, {self.notebook_seconds:g} s per notebook, "
                f"{self.memory_mb} MB of memory, {self.processes} processes, files up to {self.file_mb} MB, "
                f"{self.disk_mb} MB of disk, {self.output_kb_per_cell} KB of output per cell")
