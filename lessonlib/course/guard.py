"""The grading guard: keeps a submission's code from changing what a test cell means.

A test cell runs in the same Python process as the student's code, so the student's code could rewrite the
grading helper (``Grader.score = lambda self: self.points``), a builtin (``all = lambda _: True``), the lesson's
constants, IPython's input hooks, or return an object whose ``==`` is always True. :mod:`.kernel_boot` installs
this guard before any student code runs; :mod:`.executor` (outside the sandbox) talks to it over a Jupyter comm
around every test cell:

* ``record`` (after each unmodified instructor cell): remember the values the lesson bound (``BUDGET_BYTES``).
* ``forget`` (after an answer cell): the names the exercise asks the learner to define are theirs from then on,
  even where the lesson bound the same name earlier (an exercise may replace a lessonlib function).
* ``before`` (just before a test cell): compare the protected world with its pristine snapshot -- builtins,
  the lessonlib/torch/numpy modules and their classes, ``sys.modules`` entries, import and trace hooks,
  IPython's input/AST transformers, event callbacks and display hook, user variables that shadow a builtin,
  and the lesson values the test reads. Whatever the notebook changed is set aside and the pristine version
  put back, so the test runs in the lesson's world; the reply lists what was changed. While the test runs,
  comparisons written in the test cell (``==``, ``<``, ``in``, ...) refuse operands whose comparison methods
  the notebook defined, and changing a protected class raises.
* ``after`` (just after): compare again. A change made *while the test ran* (by the student's function it
  called) is tampering: the executor voids the cell. Then the names only the hidden part of the test bound and
  the test's source lines in ``linecache`` are dropped, and the notebook's own world is put back, so its later
  cells behave as they would have.

Replies carry an HMAC keyed by a secret the kernel read (and deleted) before any student code ran; a missing or
wrong reply means the notebook disabled the guard, and the executor voids every remaining test. A submission
written specifically against this guard (reading its key out of the kernel's memory, racing it from a thread)
can still defeat in-process checks; the sandbox around the kernel holds regardless.
"""
from __future__ import annotations

import ast
import builtins
import copy
import hashlib
import hmac
import json
import linecache
import sys
import types
from typing import Any

COMM_TARGET = "coursegrade-guard"
COMPARE = "__coursegrade_compare__"
RESULT = "__coursegrade_result__"
_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
        ast.NotIn: "not in"}
_DUNDERS = {"==": ("__eq__",), "!=": ("__ne__", "__eq__"), "<": ("__lt__", "__gt__"),
            "<=": ("__le__", "__ge__"), ">": ("__gt__", "__lt__"), ">=": ("__ge__", "__le__"),
            "in": ("__contains__", "__eq__"), "not in": ("__contains__", "__eq__")}
_PLAIN_DATA = (int, float, complex, str, bytes, bool, type(None))
_HEAPTYPE = 1 << 9   # Py_TPFLAGS_HEAPTYPE: a class written in Python, not in C


def sign(secret: bytes, nonce: str, payload: dict) -> str:
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    return hmac.new(secret, nonce.encode() + body, hashlib.sha256).hexdigest()


# -- strict comparisons in test cells -----------------------------------------------------------------------
class _TrustedCode:
    """Which comparison methods are the libraries' and which the notebook's: a method is trusted when a C type
    defines it, when its class existed before any student code ran (a protected module's class), or when its
    code lives in the Python installation or lessonlib."""

    def __init__(self, roots: tuple[str, ...], known_classes: dict):
        self.roots = roots
        self.known_classes = known_classes

    def trusted_type(self, cls: type, dunders: tuple[str, ...]) -> bool:
        for name in dunders:
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            if owner is None or not owner.__flags__ & _HEAPTYPE or owner in self.known_classes:
                continue
            method = vars(owner)[name]
            code = getattr(getattr(method, "__func__", method), "__code__", None)
            if code is None or not code.co_filename.startswith(self.roots):
                return False
        return True

    def check(self, value: Any, dunders: tuple[str, ...], depth: int = 0) -> None:
        if type(value) in _PLAIN_DATA:
            return
        if not self.trusted_type(type(value), dunders):
            raise TypeError(f"cannot compare a {type(value).__name__} whose comparison is defined by the notebook; "
                            "return plain numbers, strings, tuples or tensors")
        if depth < 3 and type(value) in (tuple, list, set, frozenset):
            for item in list(value)[:10000]:
                self.check(item, ("__eq__",), depth + 1)
        elif depth < 3 and type(value) is dict:
            for key, item in list(value.items())[:10000]:
                self.check(key, ("__eq__",), depth + 1)
                self.check(item, ("__eq__",), depth + 1)


def _compare(trusted: _TrustedCode):
    import operator

    apply = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
             ">=": operator.ge, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}

    def compare(left, ops, thunks):
        for op, thunk in zip(ops, thunks, strict=True):
            right = thunk()
            trusted.check(left, _DUNDERS[op])
            trusted.check(right, _DUNDERS[op])
            result = apply[op](left, right)
            if len(ops) > 1 and not result:
                return result
            left = right
        return result

    return compare


class _StrictComparisons(ast.NodeTransformer):
    """While a test cell is compiled: rewrites ``a == b < c`` into
    ``__coursegrade_compare__(a, ("==", "<"), (lambda: b, lambda: c))``, and the cell's last expression (the
    Grader's score) into ``__coursegrade_result__(...)``, which hands the value to the guard (and returns it)."""

    def __init__(self, state: dict):
        self.state = state

    def visit(self, node):
        if not self.state.get("test_active"):
            return node
        return super().visit(node)

    def visit_Module(self, node: ast.Module):
        self.generic_visit(node)
        if node.body and isinstance(node.body[-1], ast.Expr):
            last = node.body[-1]
            last.value = ast.fix_missing_locations(ast.copy_location(
                ast.Call(func=ast.Name(RESULT, ast.Load()), args=[last.value], keywords=[]), last.value))
        return node

    def visit_Compare(self, node: ast.Compare):
        self.generic_visit(node)
        if not all(type(op) in _OPS for op in node.ops) or any(
                isinstance(n, ast.NamedExpr) for part in (node.left, *node.comparators) for n in ast.walk(part)):
            return node
        no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                                defaults=[])
        thunks = [ast.Lambda(args=no_args, body=c) for c in node.comparators]
        call = ast.Call(func=ast.Name(COMPARE, ast.Load()),
                        args=[node.left, ast.Tuple([ast.Constant(_OPS[type(op)]) for op in node.ops], ast.Load()),
                              ast.Tuple(thunks, ast.Load())], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


# -- the protected world ------------------------------------------------------------------------------------
def _is_code(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType,
                              type, staticmethod, classmethod, property)) or callable(value)


def _data_copy(value: Any) -> Any:
    """A deep copy of small plain data (numbers, strings, tuples, lists, dicts, sets of them), else a marker."""
    def plain(v, depth=0):
        if isinstance(v, _PLAIN_DATA):
            return True
        if depth < 4 and type(v) in (tuple, list, set, frozenset) and len(v) <= 1000:
            return all(plain(i, depth + 1) for i in v)
        if depth < 4 and type(v) is dict and len(v) <= 1000:
            return all(plain(k, depth + 1) and plain(i, depth + 1) for k, i in v.items())
        return False
    return copy.deepcopy(value) if plain(value) else _IDENTITY_ONLY


def _same_data(current: Any, data: Any) -> bool:
    try:
        return type(current) is type(data) and bool(current == data)
    except Exception:
        return False


_IDENTITY_ONLY = object()
_MISSING = object()


class Change:
    """One difference from the pristine world, and how to undo it (and redo it afterwards)."""

    def __init__(self, what: str, put, pristine: Any, current: Any, user_name: str | None = None):
        self.what, self.put, self.pristine, self.current, self.user_name = what, put, pristine, current, user_name

    def restore(self) -> None:
        self.put(self.pristine)

    def reapply(self) -> None:
        self.put(self.current)


def _putter(container, key, delete_ok=True):
    """put(value) sets container[key] (a dict) or container.key (an object); _MISSING deletes it."""
    def put(value):
        if isinstance(container, dict):
            if value is _MISSING:
                container.pop(key, None)
            else:
                container[key] = value
        elif value is _MISSING:
            if delete_ok and key in vars(container):
                (type.__delattr__ if isinstance(container, type) else object.__delattr__)(container, key)
        else:
            (type.__setattr__ if isinstance(container, type) else setattr)(container, key, value)
    return put


def _list_putter(live: list):
    def put(value):
        live[:] = value
    return put


class Guard:
    def __init__(self, shell, kernel, settings: dict, secret: bytes):
        self.shell, self.kernel, self.secret = shell, kernel, secret
        self.prefixes = tuple(settings.get("protect_prefixes", ["lessonlib"]))
        self.exact = set(settings.get("protect_modules", []))
        self.roots = tuple(settings.get("trusted_roots", [sys.prefix, sys.base_prefix]))
        self.state = {"test_active": False}
        self.lesson_values: dict[str, tuple[Any, Any]] = {}     # name -> (object, data copy or marker)
        self.modules: dict[str, tuple[types.ModuleType, dict]] = {}
        self.classes: dict[type, dict] = {}
        self.trusted = _TrustedCode(self.roots, self.classes)
        self.stash: list[Change] = []
        self.names_before_test: set[str] = set()
        self.linecache_keys: set[str] = set()
        setattr(builtins, COMPARE, _compare(self.trusted))
        setattr(builtins, RESULT, self._capture)
        shell.ast_transformers.append(_StrictComparisons(self.state))
        self.builtins = dict(vars(builtins))
        self.user_ns = shell.user_ns
        self.initial_user_ns = dict(shell.user_ns)
        self.lists = {"IPython input_transformers_cleanup": shell.input_transformers_cleanup,
                      "IPython input_transformers_post": shell.input_transformers_post,
                      "IPython ast_transformers": shell.ast_transformers,
                      "sys.meta_path": sys.meta_path, "sys.path_hooks": sys.path_hooks}
        self.lists.update({f"IPython {name} callbacks": callbacks
                           for name, callbacks in shell.events.callbacks.items()})
        self.pristine_lists = {what: list(live) for what, live in self.lists.items()}
        self.sys_hooks = {name: getattr(sys, name) for name in ("displayhook", "excepthook", "stdout", "stderr")}
        self.shell_displayhook = shell.displayhook
        self.machinery: dict[type, dict] = {}
        for cls in (*type(shell).__mro__, *type(kernel).__mro__):
            if cls.__module__.startswith(("IPython", "ipykernel")):
                self.machinery[cls] = {k: v for k, v in vars(cls).items() if _is_code(v)}
        self.method_names = {name for methods in self.machinery.values() for name in methods}
        self._snapshot_modules()
        sys.addaudithook(self._audit)

    def _capture(self, value):
        if self.state["test_active"]:
            self.state["result"] = value
        return value

    # -- snapshots ----------------------------------------------------------------------------------------
    def _protected(self, name: str) -> bool:
        return name in self.exact or any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def _snapshot_modules(self) -> None:
        for name, module in list(sys.modules.items()):
            if name in self.modules or not self._protected(name) or not isinstance(module, types.ModuleType):
                continue
            self.modules[name] = (module, {k: v for k, v in vars(module).items() if _is_code(v)})
            for value in list(vars(module).values()):
                if isinstance(value, type) and value.__module__ == name and value not in self.classes:
                    self.classes[value] = {k: v for k, v in vars(value).items() if _is_code(v)}
        for extra in ("torch.Tensor", "torch.nn.Module"):
            module_name, _, attr = extra.rpartition(".")
            cls = getattr(sys.modules.get(module_name), attr, None)
            if isinstance(cls, type) and cls not in self.classes:
                self.classes[cls] = {k: v for k, v in vars(cls).items() if _is_code(v)}

    def _trusted_callable(self, obj: Any) -> bool:
        target = getattr(obj, "__func__", obj)
        code = getattr(target, "__code__", None)
        if code is not None:
            return code.co_filename.startswith(self.roots)
        cls = target if isinstance(target, type) else type(target)
        module = sys.modules.get(getattr(cls, "__module__", ""), None)
        return str(getattr(module, "__file__", "") or "").startswith(self.roots)

    # -- comparing and restoring ---------------------------------------------------------------------------
    def _changes(self, reads: list[str], own_names: set[str] = frozenset()) -> list[Change]:
        """Every difference from the pristine world. ``own_names`` (bound by the test cell itself) are not
        compared."""
        found: list[Change] = []

        def compare_mapping(where: str, live, pristine: dict, container):
            for key, value in pristine.items():
                current = live.get(key, _MISSING)
                if current is not value:
                    found.append(Change(f"{where}.{key}", _putter(container, key), value, current))

        compare_mapping("builtins", vars(builtins), self.builtins, builtins.__dict__)
        for name, (module, pristine) in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(Change(f"sys.modules[{name!r}]", _putter(sys.modules, name), module,
                                    sys.modules.get(name, _MISSING)))
            compare_mapping(name, vars(module), pristine, module.__dict__)
        for cls, pristine in (*self.classes.items(), *self.machinery.items()):
            compare_mapping(f"{cls.__module__}.{cls.__qualname__}", vars(cls), pristine, cls)
        for obj in (self.shell, self.kernel):
            for key, value in list(vars(obj).items()):
                if key in self.method_names and _is_code(value) and not (
                        isinstance(value, types.MethodType) and value.__self__ is obj):
                    found.append(Change(f"{type(obj).__name__}.{key}", _putter(obj, key), _MISSING, value))
        for what, live in self.lists.items():
            pristine = self.pristine_lists[what]
            wanted = pristine + [x for x in live if x not in pristine and self._trusted_callable(x)]
            if wanted != live:
                found.append(Change(what, _list_putter(live), wanted, list(live)))
        for name, value in self.sys_hooks.items():
            if getattr(sys, name) is not value:
                found.append(Change(f"sys.{name}", _putter(sys, name), value, getattr(sys, name)))
        if self.shell.displayhook is not self.shell_displayhook:
            found.append(Change("IPython displayhook", _putter(self.shell, "displayhook"), self.shell_displayhook,
                                self.shell.displayhook))
        if self.shell.user_ns is not self.user_ns or self.shell.user_global_ns is not self.user_ns:
            found.append(Change("IPython user namespace", _putter(self.shell, "user_ns"), self.user_ns,
                                self.shell.user_ns))
        if sys.gettrace() is not None:
            found.append(Change("sys.settrace", lambda f: sys.settrace(f), None, sys.gettrace()))
        if sys.getprofile() is not None:
            found.append(Change("sys.setprofile", lambda f: sys.setprofile(f), None, sys.getprofile()))
        user_ns = self.user_ns
        for name in list(user_ns):
            if name in own_names:
                continue
            shadows = name in self.builtins and not name.startswith("_") or name in (
                "__builtins__", "__builtin__", COMPARE, RESULT)
            initial = self.initial_user_ns.get(name, _MISSING)
            if shadows and user_ns[name] is not initial:
                found.append(Change(f"the builtin {name}", _putter(user_ns, name), initial, user_ns[name], name))
        for name in reads:
            if name in own_names or name not in self.lesson_values:
                continue
            obj, data = self.lesson_values[name]
            current = user_ns.get(name, _MISSING)
            if current is not obj or (data is not _IDENTITY_ONLY and not _same_data(current, data)):
                lesson_value = obj if data is _IDENTITY_ONLY else copy.deepcopy(data)
                found.append(Change(f"the lesson's {name}", _putter(user_ns, name), lesson_value, current, name))
        return found

    # -- the protocol ----------------------------------------------------------------------------------------
    def record(self, names: list[str]) -> dict:
        for name in names:
            if name in self.user_ns:
                self.lesson_values[name] = (self.user_ns[name], _data_copy(self.user_ns[name]))
        self._snapshot_modules()
        return {"recorded": len(names)}

    def before(self, reads: list[str], binds: list[str]) -> dict:
        self._snapshot_modules()
        changes = self._changes(reads, set(binds))
        for change in changes:
            change.restore()
        self.stash = changes
        self.names_before_test = set(self.user_ns)
        self.linecache_keys = set(linecache.cache)
        self.state.pop("result", None)
        self.state["test_active"] = True
        return {"restored": [c.what for c in changes]}

    def after(self, reads: list[str], binds: list[str], hidden_names: list[str]) -> dict:
        self.state["test_active"] = False
        during = self._changes(reads, set(binds))
        for change in during:
            change.restore()
        for name in hidden_names:
            if name not in self.names_before_test:
                self.user_ns.pop(name, None)
        for key in set(linecache.cache) - self.linecache_keys:
            linecache.cache.pop(key, None)
        for change in reversed(self.stash):
            if change.user_name is not None and change.user_name in binds:
                continue   # the test cell bound this name itself: keep the test's binding
            change.reapply()
        self.stash = []
        result = self.state.pop("result", _MISSING)
        score = None
        if result is not _MISSING and (type(result) in (int, float, bool) or type(result).__module__ == "numpy"):
            try:
                score = float(result)
            except (TypeError, ValueError):
                score = None
        return {"tampered": [c.what for c in during], "has_result": result is not _MISSING, "score": score}

    def _audit(self, event: str, args: tuple) -> None:
        if event == "sys.addaudithook":
            raise RuntimeError("grading: audit hooks are not allowed")
        if self.state["test_active"] and event in ("object.__setattr__", "object.__delattr__"):
            target = args[0]
            if isinstance(target, type) and (target in self.classes or target in self.machinery):
                raise RuntimeError(f"grading: changing {target.__name__}.{args[1]} during a test is not allowed")

    def handle(self, data: dict) -> dict:
        op = data.get("op")
        if op == "record":
            payload = self.record(data.get("names", []))
        elif op == "forget":
            for name in data.get("names", []):
                self.lesson_values.pop(name, None)
            payload = {"forgotten": len(data.get("names", []))}
        elif op == "before":
            payload = self.before(data.get("reads", []), data.get("binds", []))
        elif op == "after":
            payload = self.after(data.get("reads", []), data.get("binds", []), data.get("hidden_names", []))
        elif op == "ping":
            payload = {"alive": True}
        else:
            payload = {"error": f"unknown op {op!r}"}
        nonce = str(data.get("nonce", ""))
        return {"nonce": nonce, "payload": payload, "mac": sign(self.secret, nonce, payload)}


def install(app, settings: dict, secret: bytes) -> Guard:
    """Install the guard in a freshly initialized IPKernelApp, before it runs any code."""
    guard = Guard(app.shell, app.kernel, settings, secret)

    def on_open(comm, _open_msg):
        def on_msg(msg):
            try:
                reply = guard.handle(msg["content"]["data"])
            except Exception as error:   # report, never crash the kernel's message loop
                payload = {"error": f"{type(error).__name__}: {error}"}
                nonce = str(msg["content"]["data"].get("nonce", ""))
                reply = {"nonce": nonce, "payload": payload, "mac": sign(secret, nonce, payload)}
            comm.send(reply)
        comm.on_msg(on_msg)

    app.kernel.comm_manager.register_target(COMM_TARGET, on_open)
    return guard
