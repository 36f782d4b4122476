"""A real JupyterLab server and headless Chromium (driven by Playwright) for end-to-end tests of lessons.

Chromium comes from the system (Debian: `apt-get install -y chromium`; .ci/run installs it); Playwright never
downloads a browser here. Without Chromium the browser tests skip locally, and fail under CI=true.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "Chromium not found (Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/chrome)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab_server(root_dir: Path, home: Path, cwd: Path | None = None):
    """Start `jupyter lab` on a free port with its own config, runtime and settings folders; yields the base
    URL and token. The settings silence the news toast and keep every cell in the DOM. ``cwd``: where the server
    runs (nbgrader's formgrader and validate read nbgrader_config.py from there); default: ``root_dir``."""
    settings = home / "lab-user-settings"
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                           "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        target = settings / plugin
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root_dir}", "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or root_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError as error:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("jupyter lab did not start:\n"
                                       + (home / "lab.log").read_text()[-3000:]) from error
                time.sleep(0.3)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextlib.contextmanager
def chromium_page(executable: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page
        finally:
            browser.close()


def open_notebook_and_run_all(page, base: str, token: str, relative_path: str, timeout_s: float = 600) -> None:
    """Open a notebook in JupyterLab, wait for its kernel to be idle, run every cell and wait until the
    kernel is idle again with every code cell executed. The timeout is generous: a lesson runs in about a minute
    on a quiet 2-core machine, several on a busy one (how long each takes is tests/test_solutions_execute.py's
    business, not this test's)."""
    page.goto(f"{base}/lab/tree/{relative_path}?token={token}&reset", timeout=timeout_s * 1000)
    page.wait_for_function(
        """() => {
            const k = document.querySelector('.jp-Toolbar-kernelName');
            const s = document.querySelector('#jp-main-statusbar');
            return k && k.textContent.includes('Python 3') && s && s.textContent.includes('Idle');
        }""", timeout=timeout_s * 1000)
    page.evaluate("() => { jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            const s = document.querySelector('#jp-main-statusbar');
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent))
                && s && s.textContent.includes('Idle');
        }""", timeout=timeout_s * 1000, polling=250)


SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"


@contextlib.contextmanager
def presenter_server(folder: Path, timeout_s: float = 180):
    """`python -m lessonlib.dashboards.presenter` (what `make demo` runs) on a free port, its pages written to
    ``folder``; yields the index URL it prints."""
    import re

    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               JUPYTER_CONFIG_DIR=str(folder / "config"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
               IPYTHONDIR=str(folder / "ipython"))
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder.parent / f"{folder.name}-presenter.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "lessonlib.dashboards.presenter", "--port", "0", "--folder",
                               str(folder)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + timeout_s
        while True:
            log.seek(0)
            found = re.search(r"open (http://127\.0\.0\.1:\d+/\S+)", log.read())
            if found:
                yield found.group(1)
                break
            if server.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError("presenter mode did not start:\n" + log.read()[-3000:])
            time.sleep(0.3)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def screenshot_scrolled(page, scroller: str, path: Path, width: int = 1280) -> Path:
    """A screenshot of a page whose content scrolls inside ``scroller`` (Voila: #rendered_cells; Lab: the notebook
    panel): make the window as tall as the content, then shoot the whole window."""
    height = page.evaluate(f"() => {{ const s = document.querySelector({json.dumps(scroller)}); "
                           "return s ? s.scrollHeight + s.getBoundingClientRect().top + 20 : 1000; }")
    page.set_viewport_size({"width": width, "height": int(min(max(height, 600), 16000))})
    page.wait_for_timeout(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
