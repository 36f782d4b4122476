"""The class commands' settings, read from the course's nbgrader_config.py like nbgrader's own:

    c.ClassGrading.cell_seconds = 120
    c.ClassGrading.memory_mb = 4096

Command-line options (``coursegrade autograde --memory-mb 4096``) override them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from traitlets import Float, Int
from traitlets.config import Configurable
from traitlets.config.loader import PyFileConfigLoader

from .limits import Limits

_DEFAULTS = Limits()


class ClassGrading(Configurable):
    cell_seconds = Float(_DEFAULTS.cell_seconds, help="Wall-clock seconds per cell").tag(config=True)
    notebook_seconds = Float(_DEFAULTS.notebook_seconds, help="Wall-clock seconds per notebook").tag(config=True)
    memory_mb = Int(_DEFAULTS.memory_mb, help="Memory (address space) per submission, MB").tag(config=True)
    processes = Int(_DEFAULTS.processes, help="Processes and threads per submission").tag(config=True)
    file_mb = Int(_DEFAULTS.file_mb, help="Largest file a submission may write, MB").tag(config=True)
    disk_mb = Int(_DEFAULTS.disk_mb, help="Size of a submission's home and /tmp, MB each").tag(config=True)
    output_kb_per_cell = Int(_DEFAULTS.output_kb_per_cell, help="Output kept per cell, KB").tag(config=True)
    output_mb_per_notebook = Int(_DEFAULTS.output_mb_per_notebook, help="Output kept per notebook, MB").tag(
        config=True)
    open_files = Int(_DEFAULTS.open_files, help="Open files per process").tag(config=True)


def configured_limits(course_root: Path) -> Limits:
    """The limits nbgrader_config.py sets (the defaults of :class:`.limits.Limits` for the rest)."""
    config_file = Path(course_root) / "nbgrader_config.py"
    config = PyFileConfigLoader(config_file.name, path=str(course_root)).load_config() if config_file.is_file() \
        else None
    settings = ClassGrading(config=config)
    return Limits(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(Limits)})
