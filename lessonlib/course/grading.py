"""The helper every nbgrader test cell calls.

A test cell builds a :class:`Grader`, runs named checks, and ends with ``grader.score()`` as its last
expression. nbgrader reads that number as the cell's partial credit. Each check prints exactly one line to
stdout; nothing goes to stderr for a right answer (nbgrader scores any stderr output as 0), so warnings and
stderr written by the student's code while a check runs are captured and reported on stdout instead.

    grader = Grader("Exercise 3: KV-cache memory", points=4)
    grader.check("7B model, 4096 tokens", lambda: assert_close(kv_cache_bytes(32, 32, 128, 4096), 2**31),
                 points=2)
    ### BEGIN HIDDEN TESTS
    grader.check("grouped-query attention", lambda: kv_cache_bytes(32, 8, 128, 10) == 163840, points=2)
    ### END HIDDEN TESTS
    grader.score()

In the student release the hidden checks are gone, so the visible ones may add up to less than the cell's
points; the summary line says how many points the hidden checks decide at grading time.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import os
import sys
import tempfile
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

PASS, FAIL = "PASS", "FAIL"


@dataclass
class CheckResult:
    name: str
    points: float
    earned: float
    message: str = ""


class Grader:
    """Runs named sub-checks of one exercise and totals the points they earn."""

    def __init__(self, exercise: str, points: float):
        if points < 0:
            raise ValueError(f"points must be >= 0, got {points}")
        self.exercise = exercise
        self.points = float(points)
        self.results: list[CheckResult] = []
        self.failed_gates: list[str] = []

    # -- checks ---------------------------------------------------------------------------------------------
    def check(self, name: str, test: Callable[[], Any] | bool, points: float = 1.0, hint: str = "") -> bool:
        """Run one check worth ``points``.

        ``test`` is a bool or a callable. The callable passes when it returns a truthy value without raising;
        an ``AssertionError`` fails it with its message; any other exception fails it and is reported
        by type and message (a ``NotImplementedError`` as "not answered yet"). ``hint`` says what to fix.
        """
        allotted = sum(r.points for r in self.results) + points
        if allotted > self.points + 1e-9:
            raise ValueError(
                f"{self.exercise}: checks are worth {allotted:g} points but the cell is worth {self.points:g}; "
                "fix the points of the checks or of the cell")
        passed, message = _run_quietly(test)
        if not passed and hint:
            message = f"{message} -- {hint}" if message else hint
        result = CheckResult(name, float(points), float(points) if passed else 0.0, message)
        self.results.append(result)
        print(_format_line(result, passed))
        return passed

    def gate(self, name: str, test: Callable[[], Any] | bool, hint: str = "") -> bool:
        """A check worth no points whose failure makes the whole exercise score 0 (e.g. "answered with the
        reference implementation instead of your own code")."""
        passed, message = _run_quietly(test)
        if not passed:
            self.failed_gates.append(name)
            detail = "; ".join(part for part in (message, hint) if part)
            print(f"{FAIL}  {name}: this exercise scores 0{': ' + detail if detail else ''}")
        else:
            print(f"{PASS}  {name}")
        return passed

    # -- totals ---------------------------------------------------------------------------------------------
    def score(self) -> float:
        """Print the summary line and return the points earned: the value nbgrader records for the cell."""
        earned = sum(r.earned for r in self.results)
        allotted = sum(r.points for r in self.results)
        if self.failed_gates:
            earned = 0.0
        hidden = self.points - allotted
        line = f"{self.exercise}: {_fmt(earned)} / {_fmt(allotted)} points from these checks"
        if hidden > 1e-9:
            line += f"; {_fmt(hidden)} more point{'s' if hidden != 1 else ''} decided by hidden checks when graded"
        print(line)
        return earned


# -- helpers a check can use --------------------------------------------------------------------------------
def assert_close(actual: Any, expected: float, rel: float = 1e-6, what: str = "value") -> bool:
    """Return True, or raise AssertionError showing both numbers when ``actual`` is not a number within
    ``rel`` of ``expected``."""
    if actual is ...:
        raise AssertionError(f"{what} is not answered yet (replace the ... in the answer cell with your value)")
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) and not hasattr(actual, "__float__"):
        raise AssertionError(f"{what} should be a number, got {type(actual).__name__}: {actual!r}")
    if not math.isclose(float(actual), float(expected), rel_tol=rel, abs_tol=0.0 if expected else 1e-12):
        raise AssertionError(f"{what}: expected {expected:,.6g}, got {float(actual):,.6g}")
    return True


def is_close(actual: Any, expected: float, rel: float = 1e-6) -> bool:
    """Like :func:`assert_close` but returns a bool and reveals nothing (for hidden checks)."""
    try:
        return assert_close(actual, expected, rel)
    except AssertionError:
        return False


def normalize_choice(answer: Any, options: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """Map a multiple-choice answer written any reasonable way ("b", " B) ", "(B)", an alias) to its option
    key, or None when it names no option."""
    if not isinstance(answer, str):
        return None
    cleaned = answer.strip().strip("()[].:").strip().lower()
    by_key = {option.lower(): option for option in options}
    if cleaned in by_key:
        return by_key[cleaned]
    for alias, option in (aliases or {}).items():
        if cleaned == alias.strip().lower():
            return option
    return None


def uses_reference(func: Callable, *references: Any) -> bool:
    """True when ``func`` (or a function it defines) refers by name to any of ``references``: a module, or a
    function or class defined in one. Used by hidden checks that an exercise is not answered by calling
    lessonlib's own implementation."""
    forbidden_modules = {ref.__name__ for ref in references if isinstance(ref, types.ModuleType)}
    forbidden_objects = {id(ref) for ref in references if not isinstance(ref, types.ModuleType)}
    func = inspect.unwrap(func)

    def is_forbidden(obj: Any) -> bool:
        if id(obj) in forbidden_objects:
            return True
        module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
        return isinstance(module, str) and any(
            module == m or module.startswith(m + ".") for m in forbidden_modules)

    if is_forbidden(func):   # the answer *is* the reference: `from lessonlib.models.moe import load_balancing_loss`
        return True
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    names = set(_all_names(code))
    namespace = dict(getattr(func, "__globals__", {}))
    for cell_name, cell in zip(code.co_freevars, func.__closure__ or (), strict=True):
        with contextlib.suppress(ValueError):
            namespace[cell_name] = cell.cell_contents

    for name in names:
        if name not in namespace:
            continue
        obj = namespace[name]
        if is_forbidden(obj):
            return True
        # `import lessonlib` then `lessonlib.costs.kv_cache_bytes(...)`: a parent package of a forbidden
        # module, used with the forbidden module's attribute names.
        if isinstance(obj, types.ModuleType):
            for m in forbidden_modules:
                if m.startswith(obj.__name__ + ".") and m.rsplit(".", 1)[-1] in names:
                    return True
    return False


def runs_reference(call: Callable[[], Any], *references: Any) -> bool:
    """True when any of ``references`` (a module or package, or a function or class defined in one) runs while
    ``call()`` runs: directly, through a helper the answer defined, under another name, or as the answer
    itself. A hidden check calls the learner's function on an example this way to make sure an exercise is not
    answered by lessonlib's own implementation; what the answer merely mentions (an import it never uses, a
    display helper of another module) does not count. Exceptions raised by the call are ignored here (other
    checks report them)."""
    modules = tuple(ref.__name__ for ref in references if isinstance(ref, types.ModuleType))
    codes, class_prefixes = set(), []
    for ref in references:
        if isinstance(ref, types.ModuleType):
            continue
        if isinstance(ref, type):
            class_prefixes.append((ref.__module__, ref.__qualname__ + "."))
        code = getattr(inspect.unwrap(ref), "__code__", None)
        if code is not None:
            codes.add(code)
    seen = []

    def profile(frame, event, arg):
        if event != "call" or seen:
            return
        code, module = frame.f_code, frame.f_globals.get("__name__", "")
        if (code in codes or any(module == m or module.startswith(m + ".") for m in modules)
                or any(module == m and code.co_qualname.startswith(q) for m, q in class_prefixes)):
            seen.append(code.co_name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        call()
    except Exception:  # noqa: BLE001 - the answer's own failure is reported by the other checks
        pass
    finally:
        sys.setprofile(previous)
    return bool(seen)


def torch_functions_called(func: Callable, *args: Any, **kwargs: Any) -> set[str]:
    """Names of the PyTorch functions that run while ``func(*args, **kwargs)`` runs, however the answer reached
    them (``F.scaled_dot_product_attention``, an alias imported under another name, a helper, lessonlib): a
    hidden check can forbid, say, a fused kernel that would do the exercise's work. The call's own exceptions
    propagate."""
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names: set[str] = set()

        def __torch_function__(self, function, types, args=(), kwargs=None):
            self.names.add(getattr(function, "__name__", str(function)))
            return function(*args, **(kwargs or {}))

    with Recorder() as recorder:
        func(*args, **kwargs)
    return recorder.names


# -- internals ----------------------------------------------------------------------------------------------
def _all_names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    yield from code.co_freevars
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _all_names(const)


@contextlib.contextmanager
def _file_descriptor_2_captured():
    """Point file descriptor 2 at a temporary file (output of C code and ``os.write(2, ...)``); yields a function
    that returns what was written. Where fd 2 cannot be redirected, nothing is captured at that level."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield lambda: ""
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _logging_to(stream):
    """Logging handlers that write to the process's stderr (``logging.basicConfig()`` in an answer cell keeps the
    stream it saw then) write to ``stream`` instead for the duration."""
    stderr_streams = {id(s) for s in (sys.stderr, sys.__stderr__) if s is not None}
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    swapped = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in stderr_streams:
                swapped.append((handler, handler.setStream(stream)))
    try:
        yield
    finally:
        for handler, original in swapped:
            handler.setStream(original)


def _run_quietly(test: Callable[[], Any] | bool) -> tuple[bool, str]:
    """Run a check with everything a right answer may write to stderr captured (Python's sys.stderr, logging
    handlers the learner configured, file descriptor 2, warnings) and reported on stdout, because nbgrader
    scores a test cell with any stderr output as 0."""
    captured = io.StringIO()
    with (warnings.catch_warnings(record=True) as caught, _logging_to(captured), contextlib.redirect_stderr(captured),
          _file_descriptor_2_captured() as fd_text):
        warnings.simplefilter("always")
        try:
            outcome = test() if callable(test) else test
            passed, message = bool(outcome), ""
        except AssertionError as error:
            passed, message = False, str(error)
        except NotImplementedError:
            passed, message = False, "not answered yet (the cell still raises NotImplementedError)"
        except NameError as error:
            passed, message = False, f"NameError: {error} (define it in your answer cell and run that cell)"
        except Exception as error:  # the student's code failed: say how, do not crash the test cell
            passed, message = False, f"{type(error).__name__}: {error}"
        written = captured.getvalue() + fd_text()
    notes = [f"{w.category.__name__}: {w.message}" for w in caught]
    if written.strip():
        notes.append("wrote to stderr: " + written.strip().splitlines()[-1])
    if notes:
        message = "; ".join(filter(None, [message, "(note, no points lost: " + " | ".join(notes[:2]) + ")"]))
    return passed, message


def _format_line(result: CheckResult, passed: bool) -> str:
    status = PASS if passed else FAIL
    line = f"{status}  {result.name} [{_fmt(result.earned)}/{_fmt(result.points)}]"
    return f"{line}: {result.message}" if result.message else line


def _fmt(x: float) -> str:
    return f"{x:g}"
