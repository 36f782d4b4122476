"""Drive the class's JupyterHub (hub/) from a test or a benchmark: Linux users, the hub process, its REST API and
each user's server behind it, with the standard library only. Runs as root."""
from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
COURSE_ID = "efficient-llm-inference"


def why_not_here() -> str | None:
    """Why the hub cannot run on this machine, or None."""
    if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
        return "the class's hub runs on Linux (local users, PAM)"
    if os.geteuid() != 0:
        return "the hub test needs root: it creates Linux users and the hub starts each user's server as that user"
    for tool in ("useradd", "userdel", "runuser", "chpasswd", "npm", "node"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (Debian: apt-get install passwd util-linux nodejs npm)"
    return None


def free_ports(count: int) -> int:
    """A base port with `count` consecutive free ports above it (the hub uses port, port+1, port+2)."""
    for base in range(18000, 30000, 7):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def create_user(name: str, password: str) -> None:
    remove_user(name)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)


def processes_of(user: str) -> list[int]:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except FileNotFoundError:
                pass
    return found


def remove_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    for pid in processes_of(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["userdel", "--remove", name], capture_output=True)


def as_user(user: str, *command: str) -> subprocess.CompletedProcess:
    """A command as that Linux user (what the user could do from a terminal in their own server)."""
    return subprocess.run(["runuser", "-u", user, "--", *command], capture_output=True, text=True, cwd="/")


def processes_matching(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line contains text."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if text in cmdline:
                found.append((int(entry.name), cmdline.strip()))
    return found


class HubError(RuntimeError):
    pass


@dataclass
class Hub:
    root: Path                       # COURSE_HUB_ROOT
    port: int
    token: str = field(default_factory=lambda: secrets.token_hex(32))   # the course-driver service's token
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- setup and lifetime ------------------------------------------------------------------------------------
    def setup(self, instructors: list[str], students: list[str]) -> None:
        """`make hub-setup` into root (the course environment is built once and reused), with a fresh exchange,
        state and roster."""
        for leftover in ("exchange", "state", "etc", "roster.json"):
            path = self.root / leftover
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        # The make running the tests hands its variables down (`make test TORCH_INDEX=cpu`): the hub's environment
        # takes PyTorch from the same index.
        result = subprocess.run(["make", "-C", str(REPO), "hub-setup", f"HUB_ROOT={self.root}"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise HubError(f"make hub-setup failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        setup = [str(self.root / "env" / "bin" / "python"), str(REPO / "hub" / "setup_hub.py"), "--root",
                 str(self.root)]
        for name in instructors:
            subprocess.run(setup + ["add-instructor", name], check=True, capture_output=True)
        for name in students:
            subprocess.run(setup + ["add-student", name], check=True, capture_output=True)

    def start(self, timeout: float = 60) -> None:
        self.log_path = self.root / "state" / "hub-test.log"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))},
               "COURSE_HUB_ROOT": str(self.root), "COURSE_HUB_PORT": str(self.port), "COURSE_HUB_IP": "127.0.0.1",
               "COURSE_HUB_SERVICE_TOKEN": self.token}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.root / "env" / "bin" / "jupyterhub"), "-f", str(REPO / "hub" / "jupyterhub_config.py")],
                cwd=self.root / "state", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubError(f"the hub exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.api("GET", "/hub/api/")
                return
            except (OSError, HubError):
                time.sleep(0.3)
        raise HubError(f"the hub did not answer within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM, as systemd would: the hub stops every user's server and its proxy (cleanup_servers)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise HubError(f"the hub did not stop within {timeout} s on SIGTERM") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    # ---- HTTP --------------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, token: str | None = None, body=None, form: dict | None = None,
                opener=None, timeout: float = 120) -> tuple[int, bytes, dict]:
        data, headers = None, {}
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = f"token {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with (opener or urllib.request.build_opener(NoRedirect)).open(req, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def api(self, method: str, path: str, token: str | None = None, body=None, form=None, expect=(200, 201, 202, 204),
            timeout: float = 120):
        status, content, _ = self.request(method, path, token or self.token, body, form, timeout=timeout)
        if status not in expect:
            raise HubError(f"{method} {path}: HTTP {status}: {content[:2000]!r}")
        return json.loads(content) if content.strip() else None

    # ---- users and their servers -------------------------------------------------------------------------------
    def user_token(self, name: str) -> str:
        """A token of that user, made through the hub's API (what the user gets from the hub's token page)."""
        return self.api("POST", f"/hub/api/users/{name}/tokens", body={"note": "hub test", "expires_in": 7200})["token"]

    def start_server(self, name: str) -> None:
        self.api("POST", f"/hub/api/users/{name}/server")

    def wait_ready(self, name: str, timeout: float = 180) -> float:
        deadline, started = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            server = self.api("GET", f"/hub/api/users/{name}")["servers"].get("", {})
            if server.get("ready"):
                return time.monotonic() - started
            if not server.get("pending") and not server:
                raise HubError(f"{name}'s server stopped while starting:\n{self.log()}")
            time.sleep(0.3)
        raise HubError(f"{name}'s server was not ready within {timeout} s:\n{self.log()}")

    def start_all(self, names: list[str], timeout: float = 300) -> dict[str, float]:
        """Start these users' servers at once (one request each, as many browsers would); the seconds until each
        one is ready."""
        def start_one(name: str) -> float:
            started = time.monotonic()
            self.start_server(name)     # the hub answers when the server is up, or after 10 s with 202
            self.wait_ready(name, timeout)
            return time.monotonic() - started

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return dict(zip(names, pool.map(start_one, names), strict=True))

    def stop_server(self, name: str) -> None:
        self.api("DELETE", f"/hub/api/users/{name}/server")

    def login(self, name: str, password: str) -> int:
        """The login form (PAM), as a browser: the status of the POST (302 = logged in)."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        self.request("GET", "/hub/login", opener=opener)
        xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
        status, _, _ = self.request("POST", "/hub/login", form={"username": name, "password": password,
                                                                "_xsrf": xsrf}, opener=opener)
        return status


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass
class UserServer:
    """One user's single-user server, reached through the hub's proxy with that user's own token."""
    hub: Hub
    name: str
    token: str

    def call(self, method: str, path: str, body=None, form=None, expect=(200, 201, 204), timeout: float = 300):
        return self.hub.api(method, f"/user/{self.name}{path}", token=self.token, body=body, form=form,
                            expect=expect, timeout=timeout)

    def status(self, method: str, path: str, body=None) -> int:
        return self.hub.request(method, f"/user/{self.name}{path}", self.token, body)[0]

    # Jupyter's contents API: what JupyterLab does when the user opens or saves a file.
    def read_notebook(self, path: str) -> dict:
        return self.call("GET", f"/api/contents/{quote(path)}?content=1&type=notebook")["content"]

    def save_notebook(self, path: str, notebook: dict) -> None:
        body = {"type": "notebook", "format": "json", "content": notebook}
        self.call("PUT", f"/api/contents/{quote(path)}", body=body)

    def listing(self, path: str) -> list[str]:
        return [item["name"] for item in self.call("GET", f"/api/contents/{quote(path)}?content=1")["content"]]

    def read_text(self, path: str) -> str:
        return self.call("GET", f"/api/contents/{quote(path)}?content=1&type=file&format=text")["content"]

    # nbgrader's assignment list extension: what its Assignments tab does.
    def assignments(self) -> list[dict]:
        return self.call("GET", f"/assignments?course_id={COURSE_ID}")

    def assignment_action(self, action: str, assignment: str):
        return self.call("POST", f"/assignments/{action}", form={"course_id": COURSE_ID, "assignment_id": assignment})

    # formgrader's REST API: what its buttons do (instructors only).
    def formgrader(self, method: str, path: str):
        return self.call(method, f"/formgrader/api/{path}")
