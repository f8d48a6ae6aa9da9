"""What a stage's code is: the fingerprint that makes its output key follow the code.

A stage's key hashes its config, its inputs' keys and this fingerprint, so editing the code
that builds an output, upgrading a library that shapes it, or replacing a model file it
reads gives a new key, with nobody remembering to bump a constant:

- **source**: the ``llm_core`` modules the stage's package imports, followed transitively
  (read statically with ``ast``, so nothing is imported to compute it; parent packages
  count, as Python runs them; imports under ``if TYPE_CHECKING:`` do not). Each module is
  hashed as its syntax tree without docstrings: comments, docstrings and formatting do not
  change a key, any change to what the code does does; the tree is hashed in a text that
  is the same on Python 3.11, 3.12 and 3.13 (:func:`canonical_tree`). Orchestration modules that never
  shape an output's content (:data:`ORCHESTRATION_MODULES`) are left out, so fixing an
  error message or the storage layer does not rebuild every dataset;
- **libraries**: the installed versions of the distributions the stage declares (its
  ``libraries``: those whose behaviour decides the output's content, not every transitive
  dependency, so that an unrelated upgrade does not retrain a model), without a local build
  label (``torch 2.13.0+cpu`` and ``+cu128`` agree), so keys are equal across machines that
  run the same code and config;
- **files**: the SHA-256 of data files the stage reads (the language-ID model);
- **version**: the stage's manual ``code_version``, still there to force a rebuild.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

PACKAGE = "llm_core"
PACKAGE_DIR = Path(__file__).resolve().parent
# Modules that decide where and whether a stage runs, not what it writes.
ORCHESTRATION_MODULES = frozenset({
    "llm_core", "llm_core.errors", "llm_core.fingerprint", "llm_core.stage", "llm_core.storage",
    "llm_core.locks",
})


def module_path(name: str) -> Path | None:
    """The source file of ``llm_core`` module ``name`` (a package's ``__init__.py``), if it exists."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _walk_runtime(node: ast.AST) -> Iterable[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (never run)."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking_block(child):
            yield from (n for orelse in child.orelse for n in [orelse, *_walk_runtime(orelse)])
            continue
        yield child
        yield from _walk_runtime(child)


def imported_modules(name: str, tree: ast.Module) -> set[str]:
    """The ``llm_core`` modules that module ``name`` imports (at top level or inside functions)."""
    is_package = module_path(name) is not None and module_path(name).name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules imported by name
    return {m for m in found if module_path(m) is not None}


def with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_closure(roots: Iterable[str]) -> list[str]:
    """``roots`` and every ``llm_core`` module they import, transitively, with parent packages."""
    seen: set[str] = set()
    todo = [m for root in roots for m in with_parents(root)]
    while todo:
        name = todo.pop()
        if name in seen or module_path(name) is None:
            continue
        seen.add(name)
        for imported in imported_modules(name, _parsed(module_path(name))):
            todo.extend(with_parents(imported))
    return sorted(seen)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def canonical_tree(node: Any) -> str:
    """A text of the syntax tree that is the same on every Python version that parses it.

    ``ast.dump`` and ``ast.unparse`` are not: 3.12 adds empty ``type_params`` to every
    function and writes f-strings with other quotes. Fields that are absent or empty are
    left out, so a field a newer Python adds with nothing in it changes nothing."""
    if isinstance(node, ast.AST):
        fields = ((name, getattr(node, name, None)) for name in node._fields)
        parts = (f"{name}={canonical_tree(value)}" for name, value in fields if value is not None and value != [])
        return f"{type(node).__name__}({', '.join(parts)})"
    if isinstance(node, list):
        return f"[{', '.join(canonical_tree(item) for item in node)}]"
    return repr(node)


@lru_cache(maxsize=None)
def _module_digest(name: str) -> str:
    """Hash of the module's code: its syntax tree without docstrings (so comments,
    docstrings and layout do not count), in :func:`canonical_tree`'s version-neutral text."""
    tree = _strip_docstrings(ast.parse(module_path(name).read_text(encoding="utf-8")))
    return hashlib.sha256(canonical_tree(tree).encode()).hexdigest()


def source_digest(modules: Iterable[str]) -> str:
    """Hash of the modules' code: names and syntax trees, without docstrings, comments or layout."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"{name}\n{_module_digest(name)}\n".encode())
    return digest.hexdigest()[:16]


def package_digest() -> str:
    """Hash of every ``llm_core`` module's code (as :func:`source_digest` reads it): what a
    Spark executor must share with the driver for a stage's key to describe its output."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        names.append(".".join((PACKAGE, *parts[:-1])) if parts[-1] == "__init__" else ".".join((PACKAGE, *parts)))
    return source_digest(names)


def library_version(distribution: str) -> str:
    """Installed version without the local label (``2.13.0+cpu`` -> ``2.13.0``); ``absent`` if not installed."""
    try:
        return metadata.version(distribution).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=None)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(path, stat.st_size, stat.st_mtime_ns)


def code_fingerprint(package: str, version: str, libraries: Iterable[str] = (),
                     data_files: Callable[[], dict[str, Path]] | None = None) -> dict[str, Any]:
    """The fingerprint of the code that builds one stage's output (see the module's docstring)."""
    modules = [m for m in module_closure([package]) if m not in ORCHESTRATION_MODULES]
    return {
        "version": version,
        "source": source_digest(modules),
        "modules": modules,
        "libraries": {name: library_version(name) for name in sorted(libraries)},
        "files": {name: file_digest(path) for name, path in sorted((data_files() if data_files else {}).items())},
    }
