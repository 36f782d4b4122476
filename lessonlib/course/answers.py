"""Using the learner's answers in the cells after an exercise.

What an exercise builds feeds what follows. While it is unanswered (or fails on the example the notebook
needs), the notebook goes on with the course's reference and says so where the learner will see it, instead
of stopping with a traceback:

    kv_bytes = yours_or_reference("kv_cache_bytes", globals(), references.kv_cache_bytes, "Exercise 3a",
                                  example=(32, 32, 128, 4096))

A value answer starts as a placeholder (``...`` for a number, ``"?"`` for a choice); a cell that shows it first
asks whether it is answered, so that *Run All* goes on past it with a one-line note:

    if answered("Exercise 4b", q4_pi_seconds, q4_h100_seconds):
        print(f"{q4_pi_seconds * 1e3:.1f} ms per token")
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any, Callable, Mapping

import numpy as np


def _show(markdown: str) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside Jupyter
        print(markdown)
        return
    display(Markdown(markdown))


def is_placeholder(value: Any) -> bool:
    """True for a value answer still at its placeholder (``...`` or ``"?"``), or a dict or list holding one."""
    if isinstance(value, dict):
        return any(is_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_placeholder(v) for v in value)
    return value is ... or isinstance(value, str) and value.strip() in ("?", "...")


def answered(exercise: str, *values: Any) -> bool:
    """True when none of ``values`` is still a placeholder; otherwise show a one-line note naming ``exercise``
    (instead of the traceback that formatting ``...`` as a number would give) and return False."""
    if any(is_placeholder(value) for value in values):
        _show(f"⚠️ **{exercise}** is not answered yet: replace each `...` and `\"?\"` in its answer cell with your "
              f"value, then run that cell again.")
        return False
    return True


def shown_if_answered(exercise: str, function: Callable, *args: Any) -> Any:
    """``function(*args)`` when the learner's function is answered; otherwise None, with a one-line note naming
    ``exercise`` (not answered yet, or how it failed) instead of a traceback, so that *Run All* goes on. For an
    answer cell that shows what the learner's function returns; the test cell grades the function itself."""
    try:
        return function(*args)
    except NotImplementedError:
        _show(f"⚠️ **{exercise}** is not answered yet: write `{getattr(function, '__name__', 'the function')}` "
              f"above, then run this cell again.")
    except Exception as error:  # noqa: BLE001 - the learner's code failed: say how, go on
        _show(f"⚠️ **{exercise}**: `{getattr(function, '__name__', 'the function')}` fails here "
              f"({type(error).__name__}: {error}); the test cell below says more.")
    return None


def _same(a: Any, b: Any) -> bool:
    """Do two results agree: numbers within 1e-6, booleans as booleans, arrays and tensors element by element
    (within 1e-5), tuples and lists item by item."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "shape") or hasattr(b, "shape"):          # NumPy arrays, tensors
        try:
            x, y = (np.asarray(v.detach() if hasattr(v, "detach") else v, dtype=float) for v in (a, b))
            return x.shape == y.shape and bool(np.allclose(x, y, rtol=1e-5, atol=1e-6))
        except (TypeError, ValueError, RuntimeError):
            return False
    try:
        if isinstance(b, bool) or isinstance(a, bool):
            return bool(a) == bool(b)
        if np.ndim(a) or np.ndim(b):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape:
                return False
            if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
                return bool(np.allclose(a, b, rtol=1e-6, atol=0))
            return bool(np.all(a == b))
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    except (TypeError, ValueError):
        try:
            return bool(a == b)
        except (TypeError, ValueError, RuntimeError):
            return False


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, str, bytes)) or value is None:
        return isinstance(value, bool)
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def yours_or_reference(name: str, namespace: Mapping[str, Any], reference: Callable, exercise: str,
                       example: tuple = (), quiet: bool = False,
                       agree: Callable[[Any, Any], bool] | None = None) -> Callable:
    """The learner's function ``name`` from ``namespace`` (a notebook's ``globals()``) when it runs on
    ``example`` and returns a usable result (a finite number where the reference returns a number); otherwise
    ``reference``. Either way a one-line note says which is used, and when the learner's
    result on ``example`` differs from the reference's (``agree(yours, reference)``; by default numbers, arrays
    and tuples compared value by value), that the numbers that follow are theirs."""
    yours = namespace.get(name)
    problem = ""
    result = None
    if not callable(yours):
        problem = f"`{name}` is not defined yet (run its answer cell)"
    else:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                result = yours(*example)
            except NotImplementedError:
                problem = f"`{name}` is not answered yet"
            except Exception as error:  # noqa: BLE001 - any failure of the learner's code: say it, go on
                problem = f"`{name}` fails here ({type(error).__name__}: {error})"
    expected = reference(*example)
    if not problem and _is_number(expected) and not _is_number(result):
        problem = f"`{name}` returns {type(result).__name__} {result!r:.60}, not a number"
    if problem:
        _show(f"⚠️ **{exercise}**: {problem}. The cells below use the course's reference `{name}` instead; "
              f"run them again once your answer works.")
        return reference
    if not quiet:
        try:
            agrees = bool((agree or _same)(result, expected))
        except Exception:  # noqa: BLE001 - a result the comparison cannot read does not agree
            agrees = False
        if agrees:
            _show(f"✔ Using **your** `{name}` from {exercise}.")
        else:
            _show(f"⚠️ Using **your** `{name}` from {exercise}, which does not agree with the reference on the "
                  f"example this cell needs: the numbers below follow your function (the test cell under "
                  f"{exercise} says what to fix).")
    return yours
