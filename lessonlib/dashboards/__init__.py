"""Live dashboards for lectures and self-study. Each one is a plain, tested callback (inputs -> HTML) wrapped
in ipywidgets; the callback is what the tests time and what never raises on an extreme slider value."""
from .decode_step import decode_step_dashboard, decode_step_report

__all__ = ["decode_step_dashboard", "decode_step_report"]
