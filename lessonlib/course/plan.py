"""What a grading run executes, cell by cell: the lesson's order, each cell's role, and the demonstrations it
may skip.

Roles. A code cell of a sanitized submission is a *test* (nbgrader grade cell; its source is nbgrader's
checksummed original), an *answer* (nbgrader solution cell), *lesson* code (a cell of the student release, byte
for byte: the instructor's code, unmodified), or *student* code (anything else: added or edited cells).

Order. Graded and lesson cells run in the lesson's order, whatever order the student left them in (a test
moved above its answer would otherwise fail a correct answer); each student cell stays right after the cell
that preceded it in the submission.

Skipping. Lessons spend most of their time in demonstrations (training sweeps, timings, plots) that no test
needs. A lesson cell is skipped when, by a static analysis of every cell's source (Python's ``ast``, after
IPython's own transformation of magics):
  * no cell that runs after it reads a name it binds (a kept cell's reads pull in, transitively, every earlier
    cell binding them), and
  * it reads no name a later kept cell also reads, other than names bound only by ``import`` (it could mutate
    such an object: ``model.eval()``, ``rows.append``), and
  * it has no effect outside its own names: no call that changes global state (seeds, thread counts, warning
    filters, logging, ``setattr``, ``exec``, magics...), no assignment into a module's attributes, no star import.
Nothing after the last test cell runs: it cannot change a score. Before it, test, answer and student cells always
run. A notebook whose kept cells read names dynamically (``globals()``, ``eval``, ``exec``, ``_``/``Out``) keeps
everything before its last test, with two exceptions for the course's own code: ``yours_or_reference("name",
globals(), ...)`` counts as reading ``name`` (it only reads the namespace), and a test cell (nbgrader's checksummed
original) that uses ``globals()`` counts as reading every name it spells out in a string. The learner's notebook is
unchanged; only the copy being graded skips cells. What the analysis cannot see is state hidden inside library
calls, chiefly the global random generator: the course's tests use their own seeded generators, and
tests/test_class_grading.py proves on every lesson's solution, blank release and wrong answers that skipping
changes no score.
"""
from __future__ import annotations

import ast
import builtins
import functools
import re
import symtable
from dataclasses import dataclass, field

TEST, ANSWER, LESSON, STUDENT = "test", "answer", "lesson", "student"

EFFECT_CALLS = frozenset({
    "manual_seed", "seed", "set_rng_state", "set_num_threads", "set_num_interop_threads", "set_default_dtype",
    "set_default_device", "set_grad_enabled", "use_deterministic_algorithms", "set_printoptions", "seterr",
    "filterwarnings", "simplefilter", "resetwarnings", "basicConfig", "disable", "setLevel", "addHandler",
    "captureWarnings", "chdir", "putenv", "unsetenv", "setattr", "delattr", "exec", "eval", "globals", "locals",
    "vars", "__import__", "get_ipython", "run_line_magic", "run_cell_magic", "system", "getoutput", "rc",
    "rcdefaults", "use", "setrecursionlimit", "settrace", "setprofile", "exit", "quit", "_exit", "kill",
    "register_at_fork", "addaudithook", "install", "register",
})
# Course helpers that take a notebook's ``globals()`` only to read one name from it, given as a string literal in
# the argument before it: a call like ``yours_or_reference("count_params", globals(), ...)`` reads
# ``count_params``, and is not the dynamic lookup (or the namespace write) a bare ``globals()`` could be.
NAMESPACE_READERS = {"yours_or_reference": 0}   # function name -> position of the name it reads
# Context managers that may swallow an exception, so that the statements after their block run although the
# block stopped early (its bindings count as conditional).
SUPPRESSING = frozenset({"suppress", "ExitStack", "AsyncExitStack"})
DYNAMIC_READS = frozenset({"globals", "locals", "vars", "eval", "exec", "_", "__", "___", "Out", "In", "_oh",
                           "_ih", "get_ipython"})
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


@dataclass(frozen=True)
class CellFacts:
    binds: frozenset[str]          # names the cell (re)binds or deletes at module level
    reads: frozenset[str]          # every name it loads, anywhere (functions and lambdas included)
    imports: frozenset[str]        # names it binds with import statements
    mutates: frozenset[str]        # names whose attributes or items it assigns or deletes (x.a = 1, x[k] = 1)
    module_calls: frozenset[tuple[str, str]]   # (name, method) of state-changing calls on a name: torch.manual_seed
    effects: tuple[str, ...]       # why it may change state beyond its own names
    parsed: bool = True
    literals: frozenset[str] = frozenset()     # string constants that are identifiers (names globals() may look up)


@dataclass
class CellPlan:
    index: int                     # position in the notebook being graded
    role: str
    grade_id: str | None
    facts: CellFacts | None        # None for markdown cells
    skip: bool = False
    hidden_names: frozenset[str] = frozenset()   # test cells: names bound only by the hidden part
    edited: bool = False           # test cells: the submitted source differed from the release
    kept_for: list[str] = field(default_factory=list)   # lesson cells that run: the names a later cell needs
    owns: frozenset[str] = frozenset()   # answer cells: the names the exercise asks for (the solution's binds)


@dataclass
class NotebookPlan:
    cells: list[CellPlan] = field(default_factory=list)
    reordered: bool = False
    dynamic: bool = False          # kept cells read names dynamically: nothing was skipped

    @property
    def skipped(self) -> list[CellPlan]:
        return [c for c in self.cells if c.skip]


def normalize(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@functools.lru_cache(maxsize=4096)
def facts(source: str) -> CellFacts:
    """The names a cell binds and reads and its effects beyond them, from its source."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        python = TransformerManager().transform_cell(source)
        tree = ast.parse(python)
    except (SyntaxError, ValueError, TypeError):
        return CellFacts(frozenset(), frozenset(), frozenset(), frozenset(), frozenset(), ("does not parse",),
                         parsed=False)
    visitor = _Names()
    visitor.visit(tree)
    binds, reads = _scoped_names(python)
    reads = {name for name in reads if name not in binds} | (reads & _loaded_before_bound(tree))
    literals = {node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier()}
    return CellFacts(frozenset(binds | visitor.binds_global), frozenset(reads | visitor.named_reads),
                     frozenset(visitor.imports),
                     frozenset(visitor.mutates), frozenset(visitor.module_calls), tuple(sorted(visitor.effects)),
                     literals=frozenset(literals))


def _loaded_before_bound(tree: ast.Module) -> set[str]:
    """Names the cell may load before it has bound them itself, so their value can come from an earlier cell.

    Statements are followed in order: an unconditional binding at the top level of the cell (``rows = []``,
    an import, a ``def``, the body of a ``with``) covers the loads after it; a binding inside a loop, a branch, a
    ``try`` or a ``with`` that may swallow an exception (``contextlib.suppress``) covers only the loads after it
    in that same block. A function body's loads count at its ``def``.
    Everything else is a possible load of the earlier value (an over-approximation: loads in comprehensions and
    lambdas are included here, and :func:`_scoped_names` removes their local names)."""
    early: set[str] = set()

    def loads(node, bound: set[str]) -> None:
        if node is None:
            return
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id not in bound:
                early.add(child.id)

    def bind_target(target, bound: set[str]) -> None:
        if isinstance(target, ast.Name):
            bound.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                bind_target(element, bound)
        elif isinstance(target, ast.Starred):
            bind_target(target.value, bound)
        else:
            loads(target, bound)           # x.a = ... and x[k] = ... load x

    def block(statements, bound: set[str]) -> None:
        for statement in statements:
            one(statement, bound)

    def one(node, bound: set[str]) -> None:
        if isinstance(node, ast.Assign):
            loads(node.value, bound)
            for target in node.targets:
                bind_target(target, bound)
        elif isinstance(node, ast.AnnAssign):
            loads(node.value, bound)
            if node.value is not None:
                bind_target(node.target, bound)
        elif isinstance(node, ast.AugAssign):
            loads(node.value, bound)
            target = node.target
            if isinstance(target, ast.Name):
                if target.id not in bound:
                    early.add(target.id)
                bound.add(target.id)
            else:
                loads(target, bound)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for part in ast.iter_child_nodes(node):
                loads(part, bound)
            bound.add(node.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            loads(node.iter, bound)
            inner = set(bound)
            bind_target(node.target, inner)
            block(node.body, inner)
            block(node.orelse, set(bound))
        elif isinstance(node, ast.While):
            loads(node.test, bound)
            block(node.body, set(bound))
            block(node.orelse, set(bound))
        elif isinstance(node, ast.If):
            loads(node.test, bound)
            block(node.body, set(bound))
            block(node.orelse, set(bound))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                loads(item.context_expr, bound)
                if item.optional_vars is not None:
                    bind_target(item.optional_vars, bound)
            if any(_callee(getattr(item.context_expr, "func", None)) in SUPPRESSING for item in node.items):
                block(node.body, set(bound))   # the body may stop early and go on after the block: a branch
            else:
                block(node.body, bound)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound.discard(target.id)
                else:
                    loads(target, bound)
        else:                              # expressions, try, match, ...: bindings inside are not followed
            loads(node, bound)

    block(tree.body, set())
    return early


def _scoped_names(python: str) -> tuple[set[str], set[str]]:
    """(module-level names the code binds, global names it reads anywhere), with Python's own scoping rules
    (``symtable``): a comprehension's or a function's local names are neither."""
    top = symtable.symtable(python, "<cell>", "exec")
    binds = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    reads = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                reads.add(symbol.get_name())
            if symbol.is_declared_global() and symbol.is_assigned():
                binds.add(symbol.get_name())
    return binds, reads


class _Names(ast.NodeVisitor):
    def __init__(self):
        self.binds: set[str] = set()
        self.binds_global: set[str] = set()    # := inside a comprehension binds in the module scope
        self.reads: set[str] = set()
        self.named_reads: set[str] = set()     # names read through a course helper given globals()
        self.imports: set[str] = set()
        self.mutates: set[str] = set()
        self.module_calls: set[tuple[str, str]] = set()
        self.effects: set[str] = set()
        self.depth = 0             # > 0 inside a function, lambda or class body

    def _bind(self, name: str) -> None:
        if self.depth == 0:
            self.binds.add(name)

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, ast.Load):
            self.reads.add(node.id)
        else:
            self._bind(node.id)

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            name = alias.asname or alias.name.split(".")[0]
            self._bind(name)
            if self.depth == 0:
                self.imports.add(name)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        for alias in node.names:
            if alias.name == "*":
                self.effects.add("star import")
                continue
            self._bind(alias.asname or alias.name)
            if self.depth == 0:
                self.imports.add(alias.asname or alias.name)

    def _scope(self, node, name: str | None = None):
        if name is not None:
            self._bind(name)
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        self.depth += 1
        for child in ast.iter_child_nodes(node):
            if child not in getattr(node, "decorator_list", []):
                self.visit(child)
        self.depth -= 1

    def visit_FunctionDef(self, node):
        self._scope(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._scope(node, node.name)

    def visit_Lambda(self, node):
        self._scope(node)

    def visit_Global(self, node: ast.Global):
        self.binds.update(node.names)       # a function that rebinds globals binds them for this cell

    def visit_NamedExpr(self, node: ast.NamedExpr):
        if self.depth == 0:
            self.binds_global.add(node.target.id)   # := in a module-level comprehension binds a global
        self.visit(node.value)

    def visit_Call(self, node: ast.Call):
        name = _callee(node.func)
        if name in NAMESPACE_READERS and isinstance(node.func, ast.Name):
            position = NAMESPACE_READERS[name]
            args = node.args
            if (len(args) > position + 1 and isinstance(args[position], ast.Constant)
                    and isinstance(args[position].value, str) and _is_globals_call(args[position + 1])):
                # yours_or_reference("count_params", globals(), ...) reads count_params, and only reads
                self.named_reads.add(args[position].value)
                for child in [node.func, *args[:position + 1], *args[position + 2:], *node.keywords]:
                    self.visit(child)
                return
        if name in EFFECT_CALLS:
            base = _base_name(node.func)
            if isinstance(node.func, ast.Name):
                self.effects.add(f"calls {name}()")
            elif base is not None:
                self.module_calls.add((base, name))   # an effect if `base` is a module (torch.manual_seed)
            # else a method of a fresh object (torch.Generator().manual_seed(3)): its state is its own
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler):
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)

    def _target(self, target):
        base = target
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if base is not target and isinstance(base, ast.Name):
            self.mutates.add(base.id)

    def visit_Assign(self, node: ast.Assign):
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign):
        self._target(node.target)
        if isinstance(node.target, ast.Name):
            self.reads.add(node.target.id)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete):
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)


def _is_globals_call(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "globals"
            and not node.args and not node.keywords)


def _base_name(func) -> str | None:
    """``torch`` for ``torch.random.manual_seed``; None when the chain does not start at a name."""
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


def _callee(func) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def split_hidden(source: str) -> tuple[str, str]:
    """(visible part, hidden part) of a test cell's source."""
    visible, hidden, inside = [], [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return "\n".join(visible), "\n".join(hidden)


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def role_of(cell, lesson_sources: frozenset[str]) -> str:
    meta = _nbgrader(cell)
    if meta.get("grade") and not meta.get("solution"):
        return TEST
    if meta.get("solution"):
        return ANSWER
    if normalize(cell.get("source", "")) in lesson_sources:
        return LESSON
    return STUDENT


def lesson_order(cells: list, source_positions: dict[str, int]) -> list[int]:
    """Indices of ``cells`` in the lesson's order. ``source_positions`` maps a grade_id, or the normalized source
    of a lesson code cell, to its position in the source notebook. Graded and lesson cells go by that position;
    each student cell stays right after the cell that preceded it in the submission."""
    positions: dict[int, float] = {}
    anchor, offset = -1.0, 0.0
    for index, cell in enumerate(cells):
        grade_id = _nbgrader(cell).get("grade_id")
        key = source_positions.get(grade_id) if grade_id else None
        if key is None and cell.get("cell_type") == "code":
            key = source_positions.get(normalize(cell.get("source", "")))
        if key is not None:
            anchor, offset = float(key), 0.0
            positions[index] = anchor
        else:
            offset += 1e-3
            positions[index] = anchor + offset
    return sorted(range(len(cells)), key=lambda i: (positions[i], i))


def plan(cells: list, lesson_sources: frozenset[str], release_tests: dict[str, str] | None = None,
         skip_demonstrations: bool = True) -> NotebookPlan:
    """Plan the grading run of ``cells`` (already in the order they will run)."""
    result = NotebookPlan()
    for index, cell in enumerate(cells):
        grade_id = _nbgrader(cell).get("grade_id")
        if cell.get("cell_type") != "code":
            result.cells.append(CellPlan(index, "text", grade_id, None))
            continue
        role = role_of(cell, lesson_sources)
        cell_plan = CellPlan(index, role, grade_id, facts(cell.get("source", "")))
        if role == TEST:
            visible, _ = split_hidden(cell.source)
            cell_plan.hidden_names = facts(cell.source).binds - facts(visible).binds
        result.cells.append(cell_plan)
    if not skip_demonstrations:
        return result

    code = [c for c in result.cells if c.facts is not None]
    tests = [c.index for c in code if c.role == TEST]
    if tests:
        for cell in code:                 # nothing after the last test can change a score
            if cell.index > tests[-1]:
                cell.skip = True
        code = [c for c in code if not c.skip]
    imported_only = _imported_only(code)
    builtin_names = set(dir(builtins)) - {name for c in code for name in c.facts.binds}
    needed: set[str] = set()
    for cell in reversed(code):
        f = cell.facts
        if cell.role == LESSON and not _global_effects(f, imported_only):
            touches = f.binds | (f.reads - imported_only - builtin_names)
            if not touches & needed:
                cell.skip = True
                continue
            cell.kept_for = sorted(touches & needed)
        dynamic = f.reads & DYNAMIC_READS
        if dynamic and cell.role == TEST and dynamic <= {"globals"}:
            # the instructor's test looks names up in globals() by name: every name it spells out may be read
            needed |= f.literals
        elif dynamic and cell.role != LESSON:
            result.dynamic = True
        needed |= f.reads
    if result.dynamic:
        for cell in code:
            cell.skip = False
    return result


def _global_effects(f: CellFacts, imported_only: set[str]) -> list[str]:
    """Why a cell changes state beyond its own names (empty when it does not, as far as its source shows)."""
    reasons = list(f.effects)
    reasons += [f"assigns into {name}" for name in sorted(f.mutates & imported_only)]
    reasons += [f"calls {base}.{name}()" for base, name in sorted(f.module_calls) if base in imported_only]
    return reasons if f.parsed else ["does not parse"]


def _imported_only(code: list[CellPlan]) -> set[str]:
    """Names bound only by import statements, in every cell that binds them."""
    imported, otherwise = set(), set()
    for cell in code:
        imported |= cell.facts.imports
        otherwise |= cell.facts.binds - cell.facts.imports
    return imported - otherwise


def describe_skipped(cells: list, notebook_plan: NotebookPlan) -> str:
    first_lines = [re.sub(r"\s+", " ", cells[c.index].source.strip().splitlines()[0])[:60]
                   for c in notebook_plan.skipped if cells[c.index].source.strip()]
    return f"{len(first_lines)} demonstration cells skipped: " + "; ".join(first_lines)


def imported_modules(source: str) -> dict[str, str]:
    """The names a cell's import statements bind, each with the module to import for it:
    ``import numpy as np`` -> {"np": "numpy"}; ``from lessonlib.models import moe`` -> {"moe": "lessonlib.models"}
    (importing the package is enough for the guard to find its submodules once the cell has run)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, TypeError):
        return {}
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                    alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = node.module
    return found
