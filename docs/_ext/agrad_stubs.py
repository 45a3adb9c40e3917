"""Signatures and types of the compiled ``agrad._core`` taken from its stubs.

autodoc documents the object Python imports, and a compiled type carries no
annotations: ``Value``'s methods say ``exp(self, /)`` and pybind11's functions
``sum(values: object, start: object = 0) -> object``.  The types are written
once, in ``python/agrad/_core.pyi`` (which mypy and stubtest check against the
module); this extension reads them from there, so the site shows what editors
and type checkers see:

- the signature of ``Value``, its methods and ``sum``/``dot`` (every overload
  of an overloaded function, one line each) replace the compiled ones;
- the type of each property (``data``, ``grad``, ...) heads its description.

The stub's own type aliases (``_Number``) are spelled out, since they are
private names a reader cannot look up.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

STUB = Path(importlib.util.find_spec("agrad").origin).with_name("_core.pyi")  # type: ignore[union-attr]


def _read_stub(path: Path):
    """{qualified name: [(args, return annotation)]} and {property: type}."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.value
            and ast.unparse(node.annotation) == "TypeAlias"
        ):
            aliases[node.target.id] = ast.unparse(node.value)

    def spell(text: str) -> str:
        for name, value in aliases.items():
            text = re.sub(rf"\b{re.escape(name)}\b", value, text)
        return text

    signatures: dict[str, list[tuple[str, str]]] = {}
    properties: dict[str, str] = {}

    def add(prefix: str, function: ast.FunctionDef) -> None:
        arguments = function.args
        if prefix:  # a method: the bound instance is not part of what a caller passes
            arguments = ast.arguments(
                posonlyargs=arguments.posonlyargs[1:] if arguments.posonlyargs else [],
                args=arguments.args if arguments.posonlyargs else arguments.args[1:],
                vararg=arguments.vararg,
                kwonlyargs=arguments.kwonlyargs,
                kw_defaults=arguments.kw_defaults,
                kwarg=arguments.kwarg,
                defaults=arguments.defaults,
            )
        returns = spell(ast.unparse(function.returns)) if function.returns else ""
        decorators = {ast.unparse(d) for d in function.decorator_list}
        name = prefix + function.name
        if "property" in decorators:
            properties[name] = returns
        elif not any(d.endswith(".setter") for d in decorators):
            signatures.setdefault(name, []).append((f"({spell(ast.unparse(arguments))})", returns))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            add("", node)
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    add(node.name + ".", member)
    return signatures, properties


SIGNATURES, PROPERTIES = _read_stub(STUB)


def _stub_name(obj) -> str | None:
    """The name in the stub of a compiled object, or None if it is not one."""
    core = importlib.import_module("agrad._core")
    if obj is core.Value:
        return "Value.__init__"
    name = getattr(obj, "__name__", None)
    if name is None:
        return None
    if getattr(obj, "__objclass__", None) is core.Value:
        return f"Value.{name}"
    if getattr(core, name, None) is obj:
        return name
    return None


def process_signature(app, what, name, obj, options, signature, return_annotation):
    key = _stub_name(obj)
    if key not in SIGNATURES:
        return None
    (first_args, first_return), *others = SIGNATURES[key]
    if what == "class":
        return first_args, None
    # An overloaded function gets one signature line per overload: the
    # directive takes further lines indented to the column of the first.
    short = name.rsplit(".", 1)[-1]
    lines = [f"{first_args} -> {first_return}" if first_return else first_args]
    indent = " " * len(f".. py:{what}:: ")
    lines += [f"{indent}{short}{args} -> {returns}" for args, returns in others]
    if not others:
        return first_args, first_return
    return "\n".join(lines), None


def process_docstring(app, what, name, obj, options, lines):
    key = _stub_name(obj)
    if key in PROPERTIES:
        lines[:0] = [f"*Type:* ``{PROPERTIES[key]}``", ""]


def setup(app):
    app.connect("autodoc-process-signature", process_signature)
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
