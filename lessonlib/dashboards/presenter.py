"""Presenter mode: the course's dashboards without code, for a projector. ``make demo`` runs

    python -m lessonlib.dashboards.presenter [--port 8866] [--no-preheat]

which writes an index page and one page per lesson (from :mod:`lessonlib.dashboards.registry`) as small
notebooks into a scratch folder, serves them with Voila on this machine only (127.0.0.1, no internet needed),
and prints the address to open. Each page shows its lesson's dashboards, a title and a line of context above
each, in large type with high contrast (``PRESENTER_CSS``) and the course's colour-blind-safe palette. A page
that fails to build shows a sentence saying so, never a traceback.

Kernels: every page load starts one (Voila runs the page's notebook in it). With preheating (the default) Voila
keeps one kernel per page already run, so a page opens at once. A page's kernel outlives the page: one without a
page is shut down after 10 idle minutes, and all of them when the server stops.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..display.palette import BAD, BLUE
from .registry import Demo, lesson_number, lesson_title, pages

PRESENTER_CSS = f"""
:root {{
  --jp-widgets-font-size: 20px; --jp-widgets-inline-height: 40px; --jp-widgets-inline-label-width: 10em;
  --jp-widgets-slider-handle-size: 24px; --jp-widgets-slider-track-thickness: 6px;
  --jp-widgets-slider-handle-border-color: #000; --jp-widgets-slider-active-handle-color: {BLUE};
  --jp-widgets-color: #000; --jp-widgets-label-color: #000; --jp-widgets-readout-color: #000;
  --jp-widgets-input-color: #000; --jp-widgets-input-border-color: #000;
  --jp-content-font-size1: 20px; --jp-ui-font-size1: 18px; --jp-content-font-color1: #000;
  --jp-ui-font-color1: #000; --jp-content-font-color2: #111; --jp-layout-color0: #fff; --jp-layout-color1: #fff;
}}
body, .jp-RenderedHTMLCommon, .jp-RenderedMarkdown {{ font-size: 20px; color: #000; background: #fff; }}
.jp-RenderedMarkdown h1 {{ font-size: 2.1em; }}
.jp-RenderedMarkdown h2 {{ font-size: 1.6em; margin-top: 1.6em; border-top: 3px solid #000; padding-top: 0.4em; }}
.jp-RenderedMarkdown p {{ font-size: 1.1em; max-width: 60em; }}
.lessonlib-demo .widget-html-content {{ font-size: 20px; line-height: 1.35; }}
.lessonlib-demo .widget-toggle-button {{ font-size: 18px; height: 40px; width: auto; min-width: 5em;
  padding: 0 0.6em; border: 2px solid #000; background: #fff; color: #000; }}
.lessonlib-demo .widget-toggle-button.mod-active {{ background: {BLUE}; color: #fff; }}
.lessonlib-demo .widget-dropdown select, .lessonlib-demo .widget-text input, .lessonlib-demo textarea {{
  font-size: 18px; border: 2px solid #000; color: #000; }}
.lessonlib-demo .widget-readout {{ font-weight: bold; min-width: 5em; }}
.lessonlib-demo .noUi-handle {{ border: 2px solid #000; }}
.lessonlib-demo .lessonlib-chart {{ max-width: 760px !important; }}
.lessonlib-nav a {{ margin-right: 1.2em; font-weight: bold; color: {BLUE}; }}
.lessonlib-demo-error {{ color: {BAD}; font-weight: bold; }}
"""


def style() -> None:
    """Presenter mode's large type and high contrast, for the page this runs in."""
    from IPython.display import HTML, display

    display(HTML(f"<style>{PRESENTER_CSS}</style>"))


def _page_name(lesson: str) -> str:
    return f"{lesson}.ipynb"


def header(lesson: str | None = None) -> None:
    """The page's style and its navigation: the index and every lesson page."""
    from IPython.display import HTML, display

    style()
    links = ['<a href="index.ipynb">all lessons</a>'] + [
        f'<a href="{_page_name(other)}">{html.escape(lesson_number(other))}</a>' if other != lesson else
        f'<span style="margin-right:1.2em">{html.escape(lesson_number(other))}</span>' for other in pages()]
    display(HTML(f'<div class="lessonlib-nav">{"".join(links)}</div>'))


def show(lesson: str, index: int):
    """Build one dashboard of a lesson's page, marked for the browser test (``lessonlib-demo``). A dashboard
    that cannot be built (a checkpoint missing, say) shows what went wrong in a sentence."""
    import ipywidgets as widgets

    demo = pages()[lesson][index]
    try:
        widget = demo.build()
    except Exception as error:   # noqa: BLE001 - on a projector a sentence beats a traceback
        widget = widgets.HTML(f'<p class="lessonlib-demo-error">This dashboard could not be built: '
                              f'{html.escape(type(error).__name__)}: {html.escape(str(error))}</p>')
        widget.add_class("lessonlib-demo-error")
    box = widgets.VBox([widget])
    box.add_class("lessonlib-demo")
    box.add_class(f"lessonlib-demo-{index}")
    return box


# -- the pages ----------------------------------------------------------------------------------------------
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
          "language_info": {"name": "python"}}


def _notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": KERNEL, "nbformat": 4, "nbformat_minor": 5}


def _markdown(text: str, n: int) -> dict:
    return {"cell_type": "markdown", "id": f"md{n}", "metadata": {}, "source": text}


def _code(text: str, n: int) -> dict:
    return {"cell_type": "code", "id": f"code{n}", "metadata": {}, "execution_count": None, "outputs": [],
            "source": text}


def lesson_page(lesson: str, demos: list[Demo]) -> dict:
    cells = [_code(f"from lessonlib.dashboards.presenter import header, show\nheader({lesson!r})", 0),
             _markdown(f"# {lesson_number(lesson)} · {lesson_title(lesson)}", 0)]
    for i, demo in enumerate(demos):
        cells += [_markdown(f"## {demo.title}\n\n{demo.context}", i + 1), _code(f"show({lesson!r}, {i})", i + 1)]
    return _notebook(cells)


def index_page() -> dict:
    lines = ["# Efficient LLM Inference · live demos", "",
             "One page per lesson. Click a slider's handle, then use the arrow keys; Ctrl + and Ctrl − zoom the "
             "page.", ""]
    for lesson, demos in pages().items():
        lines.append(f"## [{lesson_number(lesson)} · {lesson_title(lesson)}]({_page_name(lesson)})")
        lines += [f"- **{demo.title}**: {demo.context}" for demo in demos]
        lines.append("")
    return _notebook([_code("from lessonlib.dashboards.presenter import header\nheader()", 0),
                      _markdown("\n".join(lines), 0)])


def write_pages(folder: Path) -> list[str]:
    """Write index.ipynb and one notebook per lesson with dashboards into ``folder``; returns the page names."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {"index.ipynb": index_page()}
    written.update({_page_name(lesson): lesson_page(lesson, demos) for lesson, demos in pages().items()})
    for name, notebook in written.items():
        (folder / name).write_text(json.dumps(notebook, indent=1) + "\n")
    return list(written)


# -- the server ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CULL_AFTER_S = 600


def voila_command(folder: Path, port: int, preheat: bool) -> list[str]:
    command = [sys.executable, "-m", "voila", str(folder), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--theme=light",
               "--VoilaConfiguration.show_tracebacks=False",
               # Every page load runs its own kernel, and one stays after its page closes: shut down the kernels
               # without a page after 10 idle minutes (Voila never culls a preheated kernel still waiting).
               f"--MappingKernelManager.cull_idle_timeout={CULL_AFTER_S}",
               "--MappingKernelManager.cull_interval=60"]
    if preheat:
        command += ["--VoilaConfiguration.preheat_kernel=True", "--VoilaConfiguration.default_pool_size=1"]
    return command


def serve(folder: Path, port: int, preheat: bool = True, timeout: float = 60.0) -> subprocess.Popen:
    """Start Voila on ``folder``; return once it answers (its page listing: no kernel needed), or raise with the
    end of its log."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               PYTHONUNBUFFERED="1")
    log = open(folder / "voila.log", "w")
    server = subprocess.Popen(voila_command(folder, port, preheat), env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=folder)
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
            return server
        except OSError as error:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise RuntimeError("Voila did not start:\n" + (folder / "voila.log").read_text()[-3000:]) from error
            time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lessonlib.dashboards.presenter",
                                     description="Serve the course's dashboards without code, for a projector.")
    parser.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--folder", type=Path, help="where to write the pages (default: a scratch folder)")
    parser.add_argument("--no-preheat", action="store_true",
                        help="start a page's kernel when the page opens, not ahead of time (uses less memory)")
    args = parser.parse_args(argv)
    port = args.port or _free_port()
    scratch = args.folder is None
    folder = Path(tempfile.mkdtemp(prefix="lessonlib-presenter-")) if scratch else args.folder
    names = write_pages(folder)
    start = time.perf_counter()
    try:
        server = serve(folder, port, preheat=not args.no_preheat)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}/voila/render/index.ipynb"
    print(f"Presenter mode is up in {time.perf_counter() - start:.1f} s: open {url}", flush=True)
    print(f"  {len(names) - 1} lesson pages: " + ", ".join(n.removesuffix(".ipynb") for n in names[1:]), flush=True)
    print("  Ctrl-C stops it.", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while server.poll() is None and not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        if scratch:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
