"""JupyterHub for a class taking the course on one Linux machine (README: "A class on JupyterHub").

Run as root by `make hub` (or `jupyterhub -f hub/jupyterhub_config.py` with COURSE_HUB_ROOT set). Everything the
hub keeps lives in COURSE_HUB_ROOT (default /srv/efficient-llm-inference), which `make hub-setup` prepares
(hub/setup_hub.py):

    env/         the course environment, installed (not editable) with the hub: every user's server and kernel
    exchange/    nbgrader's exchange, shared by everyone (mode 1777, as nbgrader documents, plus the sticky bit)
    etc/student/ Jupyter configuration only students' servers read: no formgrader, no course list
    state/       the hub's database, cookie secret and pid file (root only)
    roster.json  who is an instructor and who a student (hub/setup_hub.py add-instructor / add-student)

Users are local Linux accounts, logged in with their password (PAM); each one's server runs as that user, in
their home folder, with the course environment's Python as its only kernel. Instructors are the hub's admins and
run formgrader and `coursegrade` in their own copy of the course (~/efficient-llm-inference).
"""
import json
import os
import resource
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner

c = get_config()  # noqa: F821 (injected by traitlets)

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("COURSE_HUB_ROOT", "/srv/efficient-llm-inference"))
ENV, STATE = ROOT / "env", ROOT / "state"
ROSTER = json.loads((ROOT / "roster.json").read_text()) if (ROOT / "roster.json").exists() else {}
INSTRUCTORS, STUDENTS = set(ROSTER.get("instructors", [])), set(ROSTER.get("students", []))

# ---- where the hub listens -------------------------------------------------------------------------------------
# The public port (the proxy), and two ports on localhost only: the hub's API and the proxy's API.
PORT = int(os.environ.get("COURSE_HUB_PORT", "8000"))
c.JupyterHub.bind_url = f"http://{os.environ.get('COURSE_HUB_IP', '')}:{PORT}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{PORT + 1}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
# configurable-http-proxy from npm, installed into hub/node_modules by `make hub-setup` (hub/package-lock.json).
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.should_start = True

c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True   # stopping the hub stops every user's server
c.JupyterHub.cleanup_proxy = True

# ---- who may log in --------------------------------------------------------------------------------------------
# Local Linux accounts and their passwords (PAM). For a real class, an institution's single sign-on is usually
# better (README): oauthenticator's GenericOAuthenticator / ltiauthenticator, with the same roster.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False    # no login session per server (fails in containers, adds nothing here)
c.Authenticator.allowed_users = INSTRUCTORS | STUDENTS
c.Authenticator.admin_users = INSTRUCTORS

# Scripts that drive the hub (the end-to-end test, benchmarks/bench_hub.py) use a service token given in the
# environment; without COURSE_HUB_SERVICE_TOKEN there is no such service.
if os.environ.get("COURSE_HUB_SERVICE_TOKEN"):
    c.JupyterHub.services = [{"name": "course-driver", "api_token": os.environ["COURSE_HUB_SERVICE_TOKEN"]}]
    c.JupyterHub.load_roles = [{
        "name": "course-driver",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "read:users"],
        "services": ["course-driver"],
    }]


# ---- every user's server ---------------------------------------------------------------------------------------
class CourseSpawner(LocalProcessSpawner):
    """A local process per user, as that user, with per-user limits the kernel enforces (rlimits). Memory and
    CPU shares need cgroups: SystemdSpawner on one machine, Kubernetes in Zero to JupyterHub (README)."""

    max_processes = 512          # processes and threads of the user's server and kernels together
    max_file_mb = 1024           # largest file the user's processes may write

    def make_preexec_fn(self, name):
        become_user = super().make_preexec_fn(name)
        max_processes, max_file = self.max_processes, self.max_file_mb * 1024 * 1024

        def preexec():
            # Not for instructors: `coursegrade autograde` sets each submission's own process limit above what
            # the instructor's uid already runs, which a hard limit here would forbid.
            if name not in INSTRUCTORS:
                resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file, max_file))
            become_user()

        return preexec


c.JupyterHub.spawner_class = CourseSpawner
c.Spawner.cmd = [str(ENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab"
# The course environment first on PATH: the kernel spec runs `python`, nbgrader runs `alembic`.
c.Spawner.environment = {"PATH": f"{ENV / 'bin'}:/usr/local/bin:/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
# Shown to the user (MEM_LIMIT, CPU_LIMIT in the server's environment); LocalProcessSpawner does not enforce them.
c.Spawner.mem_limit = os.environ.get("COURSE_HUB_MEM_LIMIT", "4G")
c.Spawner.cpu_limit = float(os.environ.get("COURSE_HUB_CPU_LIMIT", "2"))


def per_role(spawner):
    """Students' servers read etc/student/ too: formgrader and the course list are off for them."""
    if spawner.user.name not in INSTRUCTORS:
        spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_PATH": str(ROOT / "etc" / "student")}


c.Spawner.pre_spawn_hook = per_role
