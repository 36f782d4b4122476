"""Run one sanitized submission in its sandbox and say what happened, in words an instructor can act on.

This is the grading side of :mod:`.sandbox` and :mod:`.guard`. It starts the kernel confined (a jupyter_client
kernel manager whose launch command is the sandbox's, talking over Unix sockets in the sandbox's runtime folder,
so it works without any network), then runs the cells :mod:`.plan` keeps, in the lesson's order, with nbclient:

* every cell has a wall-clock limit: on timeout the kernel is interrupted (a message, since the kernel is in its
  own session and process namespace); if the cell still does not finish, the kernel is killed;
* the notebook has a wall-clock budget: when it runs out the kernel is killed and the remaining cells do not run;
* output is capped per cell and per notebook as it arrives (a cell printing forever cannot fill memory);
* a kernel that dies (``os._exit``, a segfault, a memory or CPU limit, a killed process group) ends the run: the
  cells after it do not run, and their tests score 0;
* around every test cell it asks the guard to restore the pristine world and then checks nothing changed while the
  test ran; a test cell that was tampered with, or that did not end with a number between 0 and its points (the
  Grader's score), is voided with an error output, so nbgrader scores it 0;
* stderr written while a test cell ran is kept but relabelled as stdout: nbgrader would otherwise score the cell 0,
  and the course's rule is that a correct answer's warnings never cost points.
"""
from __future__ import annotations

import asyncio
import json
import math
import secrets
import signal
import time
import uuid
from dataclasses import dataclass, field
from queue import Empty

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import Any as AnyTrait

from . import plan as plans
from .guard import COMM_TARGET, sign
from .kernel_boot import GUARD_SECRET, GUARD_SETTINGS
from .limits import Limits
from .sandbox import Sandbox, cpu_seconds, kill_strays, sandbox_processes

VOID = "GradingIntegrityError"
NOT_RUN = "CellNotRun"
MAX_RESTARTS = 3


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel with the sandbox's command and interrupts it by message."""
    sandbox = AnyTrait()

    def format_kernel_cmd(self, extra_arguments=None):
        return self.sandbox.kernel_command(["-f", self.connection_file, *(extra_arguments or [])])

    async def _async_interrupt_kernel(self):
        if self.has_kernel:
            self._connect_control_socket()
            self.session.send(self._control_socket, self.session.msg("interrupt_request", content={}))

    interrupt_kernel = _async_interrupt_kernel


class GuardLink:
    """The grading side of the guard's comm: requests with a fresh nonce, replies checked with the secret."""

    def __init__(self, kc, secret: bytes, timeout: float = 20.0):
        self.kc, self.secret, self.timeout = kc, secret, timeout
        self.comm_id = uuid.uuid4().hex

    async def open(self) -> bool:
        self.kc.shell_channel.send(self.kc.session.msg("comm_open", {"comm_id": self.comm_id,
                                                                     "target_name": COMM_TARGET, "data": {}}))
        return await self.call("ping") is not None

    async def call(self, op: str, **data) -> dict | None:
        """The guard's verified reply, or None when it gave none (or a forged one) in time."""
        nonce = secrets.token_hex(16)
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": {"op": op, "nonce": nonce,
                                                                                  **data}})
        self.kc.shell_channel.send(msg)
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = await self.kc.iopub_channel.get_msg(timeout=left)
            except Empty:
                break
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"] or reply["msg_type"] != "comm_msg":
                continue
            body = reply["content"].get("data", {})
            payload = body.get("payload")
            if body.get("nonce") == nonce and isinstance(payload, dict) and body.get("mac") == sign(
                    self.secret, nonce, payload) and "error" not in payload:
                return payload
            return None
        return None


@dataclass
class RunReport:
    """What happened while one submission ran."""
    notes: list[str] = field(default_factory=list)
    voided: dict[str, str] = field(default_factory=dict)     # test grade_id -> why it scores 0
    kernel_seconds: float = 0.0                              # start-up of the kernel
    kernel_cpu_seconds: float = 0.0                          # CPU time of the kernels that ran to the end
    run_seconds: float = 0.0                                 # cells
    cells_run: int = 0
    cells_skipped: int = 0
    kernel_died: str | None = None
    output_dropped: int = 0
    restarts: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class SubmissionRun(NotebookClient):
    """nbclient with the sandbox's kernel, the guard around test cells, and the limits above."""

    def __init__(self, nb, cell_plan: plans.NotebookPlan, sandbox: Sandbox, limits: Limits, guard_settings: dict,
                 **kw):
        super().__init__(nb, timeout=int(limits.cell_seconds), interrupt_on_timeout=True,
                         error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                                           "traceback": [f"CellTimeoutError: the cell ran longer than "
                                                         f"{limits.cell_seconds:g} s and was interrupted"]},
                         raise_on_iopub_timeout=True, iopub_timeout=10, allow_errors=True, record_timing=False,
                         shutdown_kernel="immediate", startup_timeout=120, coalesce_streams=True, **kw)
        self.plan, self.sandbox, self.limits, self.guard_settings = cell_plan, sandbox, limits, guard_settings
        self.report = RunReport()
        self.secret = secrets.token_bytes(32)
        self.deadline = math.inf
        self.timed_out = False
        self.cell_bytes = 0
        self.notebook_bytes = 0
        self._dropped_in_cell = False
        self.kernel_log = None
        self.restored: set[str] = set()
        self.kernels_started = 0
        self.timeout_func = self._cell_timeout

    # -- limits ---------------------------------------------------------------------------------------------
    def _cell_timeout(self, cell) -> int:
        # rounded up: a cell cut short by the notebook's budget stops at the deadline, not up to a second before it
        return max(1, math.ceil(min(self.limits.cell_seconds, self.deadline - time.monotonic())))

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out = True
        self._reap()      # a fork bomb's children first, so the interrupt reaches a kernel that can answer
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        content = msg["content"]
        kind = msg["msg_type"]
        size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
        if kind in ("execute_result", "error"):
            return super().output(outs, msg, display_id, cell_index)   # the score and errors are always kept
        if (self.cell_bytes + size > self.limits.output_kb_per_cell * 1024
                or self.notebook_bytes + size > self.limits.output_mb_per_notebook * 2**20):
            self.report.output_dropped += size
            self._dropped_in_cell = True
            return None
        self.cell_bytes += size
        self.notebook_bytes += size
        return super().output(outs, msg, display_id, cell_index)

    # -- the run --------------------------------------------------------------------------------------------
    async def async_run(self) -> nbformat.NotebookNode:
        """Run the notebook. When a cell stops the kernel (a crash, an exit, a cell that would not stop), the
        notebook is run again from the top without that cell, up to MAX_RESTARTS times within the notebook's
        time budget: one hostile or broken cell costs only what depends on it."""
        skip: dict[int, str] = {}
        for attempt in range(MAX_RESTARTS + 1):
            if attempt:
                self._reset_outputs()
            lost = await self._attempt(skip)
            if lost is None:
                break
            index, why = lost
            skip[index] = why
            if attempt == MAX_RESTARTS or self.deadline - time.monotonic() < 5:
                self.report.note("not run again: too many restarts or no time left")
                break
            self.report.restarts += 1
        return self.nb

    async def _attempt(self, skip: dict[int, str]) -> tuple[int, str] | None:
        (self.sandbox.runtime / GUARD_SETTINGS).write_text(json.dumps(self.guard_settings))
        (self.sandbox.runtime / GUARD_SECRET).write_bytes(self.secret)
        # fresh socket paths and connection file for every kernel: a client of the new kernel must never connect to
        # the sockets of an old one that is still dying (its messages are signed with the old key)
        self.kernels_started += 1
        name = f"k{self.kernels_started}"
        km = SandboxedKernelManager(sandbox=self.sandbox, transport="ipc", ip=str(self.sandbox.runtime / name),
                                    connection_file=str(self.sandbox.runtime / f"{name}.json"))
        self.km, self.owns_km, self.kc = km, True, None
        started = time.monotonic()
        try:
            if self.kernel_log is not None:
                self.kernel_log.close()
            self.kernel_log = open(self.sandbox.folder / "kernel.log", "wb")
            await km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"],
                                  env=self.sandbox.environment(), cwd=str(self.sandbox.folder),
                                  stdout=self.kernel_log, stderr=self.kernel_log)
            try:
                await self.async_start_new_kernel_client()
            except RuntimeError as error:
                raise RuntimeError(f"the sandboxed kernel did not start ({error}); its log ends with:\n"
                                   + self.kernel_log_tail()) from None
            guard = GuardLink(self.kc, self.secret)
            if not await guard.open():
                raise RuntimeError("the kernel started but its grading guard did not answer; its log ends with:\n"
                                   + self.kernel_log_tail())
            if self.deadline == math.inf:
                self.report.kernel_seconds = time.monotonic() - started
                self.deadline = time.monotonic() + self.limits.notebook_seconds
            return await self._run_cells(guard, skip)
        finally:
            self.report.run_seconds += time.monotonic() - started
            self._count_kernel_cpu()
            if self.km is not None:
                await self._async_cleanup_kernel()

    def _reset_outputs(self) -> None:
        for cell in self.nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        self.report.voided.clear()
        self.report.cells_skipped = self.report.cells_run = 0
        self.notebook_bytes = 0

    def kernel_log_tail(self, lines: int = 15) -> str:
        path = self.sandbox.folder / "kernel.log"
        if not path.is_file():
            return "(no log)"
        if self.kernel_log is not None:
            self.kernel_log.flush()
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def _run_cells(self, guard: GuardLink, skip: dict[int, str]) -> tuple[int, str] | None:
        """Run the planned cells; (index, why) of the cell that stopped the kernel, or None."""
        trusted = True
        stopped: str | None = None
        lost: tuple[int, str] | None = None
        for cell_plan in self.plan.cells:
            cell = self.nb.cells[cell_plan.index]
            if cell.cell_type != "code":
                continue
            if cell_plan.skip:
                self.report.cells_skipped += 1
                cell.metadata.setdefault("coursegrade", {})["skipped"] = "a demonstration no test depends on"
                continue
            if stopped is not None:
                self._not_run(cell, cell_plan, stopped)
                continue
            if cell_plan.index in skip:
                self._not_run(cell, cell_plan, f"it {skip[cell_plan.index]} in an earlier run; the notebook was run "
                                               "again without it")
                continue
            if time.monotonic() >= self.deadline:
                stopped = f"the notebook used up its {self.limits.notebook_seconds:g} s"
                self.report.note(f"the notebook ran out of time ({self.limits.notebook_seconds:g} s) before "
                                 f"{self._where(cell_plan)}; the rest did not run")
                self._not_run(cell, cell_plan, stopped)
                continue
            is_test = cell_plan.role == plans.TEST
            facts = cell_plan.facts
            if is_test and trusted:
                reply = await guard.call("before", reads=sorted(facts.reads), binds=sorted(facts.binds))
                if reply is None:
                    trusted = False
                    self.report.note(f"the grading guard stopped answering before {cell_plan.grade_id} (the "
                                     "notebook interfered with the kernel); that test and every later one score 0")
                else:
                    new = [item for item in reply["restored"] if item not in self.restored]
                    self.restored.update(new)
                    if new:
                        self.report.note(f"before {cell_plan.grade_id} (and any later test), put back what the "
                                         "notebook had changed: " + ", ".join(new[:8]))
            self.cell_bytes, self._dropped_in_cell, self.timed_out = 0, False, False
            watchdog = asyncio.ensure_future(self._watch_processes(cell_plan))
            try:
                await self.async_execute_cell(cell, cell_plan.index, store_history=not is_test)
                self.report.cells_run += 1
            except (DeadKernelError, CellTimeoutError, asyncio.CancelledError) as error:
                why = await self._kernel_lost(cell, cell_plan, error)
                stopped = f"the kernel stopped at {self._where(cell_plan)}"
                lost = (cell_plan.index, why)
                continue
            except Exception as error:  # noqa: BLE001 - the kernel sent something unusable: treat it as lost
                why = await self._kernel_lost(cell, cell_plan, error, contact_lost=True)
                stopped = f"the grading lost contact with the kernel at {self._where(cell_plan)}"
                lost = (cell_plan.index, why)
                continue
            finally:
                watchdog.cancel()
                if self._dropped_in_cell:
                    cell.outputs.append(nbformat.v4.new_output(
                        "stream", name="stdout", text=f"\n[grading: output beyond "
                                                      f"{self.limits.output_kb_per_cell} KB not kept]\n"))
            if self.timed_out and time.monotonic() >= self.deadline - 1:
                self.report.note(f"{self._where(cell_plan)} was interrupted when the notebook's "
                                 f"{self.limits.notebook_seconds:g} s ran out")
            elif self.timed_out:
                self.report.note(f"{self._where(cell_plan)} ran longer than {self.limits.cell_seconds:g} s and was "
                                 "interrupted")
            if self._dropped_in_cell:
                self.report.note(f"{self._where(cell_plan)} printed more than {self.limits.output_kb_per_cell} KB; "
                                 "the rest of its output was not kept")
            if is_test:
                if trusted:
                    reply = await guard.call("after", reads=sorted(facts.reads), binds=sorted(facts.binds),
                                             hidden_names=sorted(cell_plan.hidden_names))
                    if reply is None:
                        trusted = False
                        self._void(cell, cell_plan, "the grading guard stopped answering during this test")
                    elif reply["tampered"]:
                        self._void(cell, cell_plan, "changed while the test ran: " + ", ".join(reply["tampered"][:6]))
                    else:
                        self._settle_score(cell, cell_plan, reply)
                else:
                    self._void(cell, cell_plan, "the grading guard was disabled by an earlier cell")
                self._relabel_stderr(cell, cell_plan)
            elif cell_plan.role == plans.LESSON and trusted and facts.binds:
                await guard.call("record", names=sorted(facts.binds))
            elif cell_plan.role == plans.ANSWER and trusted and cell_plan.owns:
                # the exercise defines these names (lesson 02's largest_batch replaces lessonlib's): from here on
                # the learner's binding is the one tests use, not a lesson value to put back
                await guard.call("forget", names=sorted(cell_plan.owns))
            self._note_errors(cell, cell_plan)
            if self._hit_process_limit(cell):
                self._reap()
            if cell_plan.role in (plans.STUDENT, plans.ANSWER) and self._hit_memory_limit(cell):
                # what it allocated may still be held (a global list of blocks): every later cell would starve
                why = f"{self._where(cell_plan)} hit the memory limit ({self.limits.memory_mb} MB)"
                self.report.kernel_died = why
                self.report.note(why + "; the notebook was run again without that cell")
                try:
                    await self.km.shutdown_kernel(now=True)
                except Exception:  # noqa: BLE001 - it is being replaced either way
                    pass
                stopped = f"{self._where(cell_plan)} used up the memory"
                lost = (cell_plan.index, "hit the memory limit")
        return lost

    def _hit_memory_limit(self, cell) -> bool:
        return any(o.output_type == "error" and (o.ename == "MemoryError" or "can't allocate memory" in str(o.evalue))
                   for o in cell.outputs)

    async def _watch_processes(self, cell_plan: plans.CellPlan) -> None:
        """While a cell runs: when the sandbox fills its process table (a fork bomb), interrupt the kernel and
        keep killing the extra processes until the cell ends, instead of letting them spin until the timeout."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if not self.sandbox.isolation.confined or process is None:
            return
        full = max(8, int(self.limits.processes * 0.8))
        interrupted = False
        while True:
            await asyncio.sleep(0.5)
            count = len(sandbox_processes(process.pid))
            if count >= full or interrupted:
                killed = kill_strays(process.pid)
                if not interrupted:
                    interrupted = True
                    self.report.note(f"{self._where(cell_plan)} filled the sandbox's process table (a fork bomb?): "
                                     f"it was interrupted and {killed}+ processes it started were stopped")
                    await ensure_interrupt(self.km)

    def _count_kernel_cpu(self) -> None:
        """Add the CPU time of the kernel (and whatever else runs in its sandbox) before it is shut down: a killed
        kernel's time never reaches the grading process's own accounting. Linux only (it reads /proc)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None:
            return
        pids = [process.pid] + [host for host, _ in sandbox_processes(process.pid)]
        self.report.kernel_cpu_seconds += cpu_seconds(pids)

    def _hit_process_limit(self, cell) -> bool:
        return any(o.output_type == "error" and (o.ename == "BlockingIOError" or "Resource temporarily unavailable"
                                                 in str(o.evalue)) for o in cell.outputs)

    def _reap(self) -> None:
        """Kill what a fork bomb left in the sandbox (only inside bubblewrap's PID namespace)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if self.sandbox.isolation.confined and process is not None:
            killed = kill_strays(process.pid)
            if killed:
                self.report.note(f"{killed} leftover processes of the submission were stopped")

    # -- what happened --------------------------------------------------------------------------------------
    def _where(self, cell_plan: plans.CellPlan) -> str:
        if cell_plan.grade_id:
            return f"{cell_plan.role} cell {cell_plan.grade_id}"
        return f"{cell_plan.role} cell {cell_plan.index + 1}"

    def _not_run(self, cell, cell_plan: plans.CellPlan, why: str) -> None:
        cell.outputs = [nbformat.v4.new_output("error", ename=NOT_RUN, evalue=why,
                                               traceback=[f"{NOT_RUN}: not run because {why}"])]
        if cell_plan.role == plans.TEST:
            self.report.voided[cell_plan.grade_id] = f"not run: {why}"

    def _void(self, cell, cell_plan: plans.CellPlan, why: str) -> None:
        cell.outputs.append(nbformat.v4.new_output("error", ename=VOID, evalue=why,
                                                   traceback=[f"{VOID}: {why}; this test scores 0"]))
        self.report.voided[cell_plan.grade_id] = why
        self.report.note(f"{cell_plan.grade_id} scores 0: {why}")

    def _settle_score(self, cell, cell_plan: plans.CellPlan, reply: dict) -> None:
        """The test cell's value as the guard saw it is its score: whatever execute_result messages the notebook
        published are replaced by it. A test that ends with an expression must end with a number between 0 and
        its points (the Grader's score)."""
        if any(o.output_type == "error" for o in cell.outputs):
            return
        if not _ends_with_expression(cell.source):
            return
        points = float(cell.metadata.get("nbgrader", {}).get("points", 0))
        score = reply.get("score")
        if not reply.get("has_result"):
            self._void(cell, cell_plan, "the test produced no score (its last line did not complete)")
        elif score is None or not 0 <= score <= points:
            self._void(cell, cell_plan, f"the test's value is not a score between 0 and {points:g}")
        else:
            count = next((o.get("execution_count") for o in cell.outputs if o.output_type == "execute_result"),
                         cell.get("execution_count"))
            cell.outputs = [o for o in cell.outputs if o.output_type != "execute_result"]
            cell.outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)},
                                                       execution_count=count))

    def _relabel_stderr(self, cell, cell_plan: plans.CellPlan) -> None:
        wrote = False
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                output.name = "stdout"
                output.text = "".join(f"[stderr] {line}\n" for line in output.text.splitlines())
                wrote = True
        if wrote:
            self.report.note(f"{cell_plan.grade_id}: the student's code wrote to stderr during the test (shown, "
                             "not penalized)")

    def _note_errors(self, cell, cell_plan: plans.CellPlan) -> None:
        if cell_plan.role == plans.TEST:
            return
        for output in cell.outputs:
            if output.output_type != "error" or output.ename in (NOT_RUN, VOID):
                continue
            if output.ename == "NotImplementedError" or output.ename == "KeyboardInterrupt" and self.timed_out:
                continue   # an unanswered exercise (the tests say so), or the interrupt of a timeout (noted)
            hint = _ERROR_HINTS.get(output.ename, "")
            evalue = " ".join(str(output.evalue).split())[:160]
            if output.ename == "gaierror" or any(text in evalue for text in (
                    "Network is unreachable", "name resolution", "Name or service not known")):
                hint = " (the sandbox has no network)"
            elif "Resource temporarily unavailable" in evalue:
                hint = f" (the process limit is {self.limits.processes})"
            self.report.note(f"{self._where(cell_plan)} raised {output.ename}: {evalue}{hint}")

    async def _kernel_lost(self, cell, cell_plan: plans.CellPlan, error: BaseException,
                           contact_lost: bool = False) -> str:
        """Record why the kernel is gone; returns a short reason for the cell's "not run" note."""
        why = await self._exit_reason()
        if contact_lost and why is None:
            detail = " ".join(str(error).split())[:120]
            short = f"made the grading lose contact with the kernel ({type(error).__name__}: {detail})"
            why = f"the grading lost contact with the kernel in {self._where(cell_plan)} ({type(error).__name__}: " \
                  f"{detail})"
        elif isinstance(error, CellTimeoutError) or self.timed_out:
            short = f"ran longer than {self.limits.cell_seconds:g} s and did not stop when interrupted"
            why = f"{self._where(cell_plan)} {short}; the kernel was stopped"
        elif why is None:
            short = "made the kernel stop responding"
            why = f"the kernel stopped responding in {self._where(cell_plan)} ({type(error).__name__})"
        else:
            short = f"stopped the kernel ({why})"
            why = f"the kernel {why} in {self._where(cell_plan)}"
        self.report.kernel_died = why
        self.report.note(why + "; the notebook was run again without that cell")
        cell.outputs.append(nbformat.v4.new_output("error", ename="KernelDied", evalue=why,
                                                   traceback=[f"KernelDied: {why}"]))
        if cell_plan.role == plans.TEST:
            self.report.voided[cell_plan.grade_id] = why
        try:
            await self.km.shutdown_kernel(now=True)
        except Exception:
            pass
        return short

    async def _exit_reason(self) -> str | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None:
            return None
        for _ in range(20):
            code = process.poll()
            if code is not None:
                break
            await asyncio.sleep(0.1)
        else:
            return None
        if code < 0 or code > 128:
            number = -code if code < 0 else code - 128
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            meaning = {"SIGKILL": "killed (a limit, or out of memory)", "SIGSEGV": "crashed (segmentation fault)",
                       "SIGXCPU": "used up its CPU time", "SIGABRT": "aborted", "SIGXFSZ": "wrote a file too large",
                       "SIGBUS": "crashed (bus error)"}.get(name, "was killed")
            return f"{meaning}, {name}"
        return f"exited (exit code {code}: exit(), quit() or os._exit)"


_ERROR_HINTS = {
    "MemoryError": " (it hit the memory limit)",
    "PermissionError": " (the sandbox is read-only outside its own folder)",
    "BlockingIOError": " (the process limit)",
    "OSError": "",
}


async def ensure_interrupt(km) -> None:
    try:
        await km.interrupt_kernel()
    except Exception:   # the kernel is going away anyway
        pass


def _ends_with_expression(source: str) -> bool:
    import ast

    try:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return False
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr)


def run_submission(nb: nbformat.NotebookNode, cell_plan: plans.NotebookPlan, sandbox: Sandbox, limits: Limits,
                   guard_settings: dict) -> tuple[nbformat.NotebookNode, RunReport]:
    """Execute ``nb`` (sanitized, in the order of ``cell_plan``) in ``sandbox``; returns it with its outputs."""
    run = SubmissionRun(nb, cell_plan, sandbox, limits, guard_settings)
    asyncio.run(run.async_run())
    return run.nb, run.report
