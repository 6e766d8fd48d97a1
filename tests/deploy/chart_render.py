"""Renders the badfd Helm chart without helm (which cannot be installed here).

A small interpreter for exactly the subset of Go text/template and Sprig that
the chart's templates use, with helm's conventions (.Values, .Release, .Chart,
.Files.Get, include, toYaml, nindent...). Anything outside that subset is an
error, never a silent guess: a template that grows a construct this renderer
does not know fails the tests until the renderer learns it.

Stricter than helm on purpose: a missing key under .Values and a missing file
under .Files.Get are errors (helm would render them empty).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml


class TemplateError(Exception):
    pass


# --- lexing -----------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _lex(source: str, name: str) -> list[tuple[str, str]]:
    """('text', s) and ('action', body) items, with trim markers applied."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        items.append(("text", text))
        body = m.group(2).strip()
        if "{{" in body:
            raise TemplateError(f"{name}: unbalanced braces in action {m.group(0)!r}")
        items.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = source[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if "{{" in text or "}}" in text:
        raise TemplateError(f"{name}: stray braces after the last action")
    items.append(("text", text))
    return items


# --- parsing ------------------------------------------------------------------


def _parse(items: list[tuple[str, str]], name: str, defines: dict[str, list]) -> list:
    """A tree of ('text', s) / ('out', pipe) / ('if', [(pipe, body)], else) /
    ('with'|'range', pipe, body, else). `define` blocks go to `defines`."""
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list, str]:
        nonlocal pos
        nodes: list = []
        while pos < len(items):
            kind, body = items[pos]
            pos += 1
            if kind == "text":
                if body:
                    nodes.append(("text", body))
                continue
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"{name}: unterminated comment {body!r}")
                continue
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word) :].strip()
            if word in ("end", "else"):
                if word not in stop and not (word == "else" and "else" in stop):
                    raise TemplateError(f"{name}: unexpected {{{{ {body} }}}}")
                return nodes, body
            if word == "define":
                m = re.fullmatch(r'"([^"]+)"', rest)
                if not m:
                    raise TemplateError(f"{name}: bad define {body!r}")
                inner, end = block(("end",))
                if end != "end":
                    raise TemplateError(f"{name}: define {m.group(1)} without end")
                defines[m.group(1)] = inner
                continue
            if word == "if":
                branches = []
                cond = rest
                while True:
                    inner, end = block(("end", "else"))
                    branches.append((_parse_pipeline(cond, name), inner))
                    if end == "end":
                        nodes.append(("if", branches, []))
                        break
                    if end == "else":
                        else_body, end2 = block(("end",))
                        nodes.append(("if", branches, else_body))
                        break
                    if end.startswith("else if "):
                        cond = end[len("else if ") :].strip()
                        continue
                    raise TemplateError(f"{name}: unsupported {{{{ {end} }}}}")
                continue
            if word in ("with", "range"):
                if word == "range" and ":=" in rest:
                    raise TemplateError(f"{name}: range with variables is not supported: {body!r}")
                inner, end = block(("end", "else"))
                else_body: list = []
                if end == "else":
                    else_body, end = block(("end",))
                if end != "end":
                    raise TemplateError(f"{name}: unsupported {{{{ {end} }}}} in {word}")
                nodes.append((word, _parse_pipeline(rest, name), inner, else_body))
                continue
            if word in ("template", "block", "break", "continue") or ":=" in body or body.startswith("$"):
                raise TemplateError(f"{name}: unsupported action {{{{ {body} }}}}")
            nodes.append(("out", _parse_pipeline(body, name)))
        if stop:
            raise TemplateError(f"{name}: missing {{{{ end }}}}")
        return nodes, ""

    tree, _ = block(())
    return tree


_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)'
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<pipe>\|)|(?P<open>\()|(?P<close>\)))"
)


def _parse_pipeline(text: str, name: str):
    """A pipeline: list of commands; a command: list of operands; an operand:
    ('str', v) | ('num', v) | ('field', [names]) | ('ident', fn) | ('sub', pipeline)."""
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"{name}: cannot parse {text[pos:]!r} in {text!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        tokens.append((kind, value))
    index = 0

    def pipeline(until_close: bool):
        nonlocal index
        commands = [[]]
        while index < len(tokens):
            kind, value = tokens[index]
            index += 1
            if kind == "pipe":
                commands.append([])
            elif kind == "open":
                commands[-1].append(("sub", pipeline(True)))
            elif kind == "close":
                if not until_close:
                    raise TemplateError(f"{name}: unbalanced ) in {text!r}")
                return commands
            elif kind == "str":
                commands[-1].append(("str", json.loads(value)))
            elif kind == "num":
                commands[-1].append(("num", int(value)))
            elif kind == "field":
                commands[-1].append(("field", [] if value == "." else value[1:].split(".")))
            elif kind == "ident":
                if value in ("true", "false"):
                    commands[-1].append(("const", value == "true"))
                elif value == "nil":
                    commands[-1].append(("const", None))
                else:
                    commands[-1].append(("ident", value))
        if until_close:
            raise TemplateError(f"{name}: missing ) in {text!r}")
        if any(not c for c in commands):
            raise TemplateError(f"{name}: empty command in {text!r}")
        return commands

    return pipeline(False)


# --- evaluation -------------------------------------------------------------------


def truthy(v: Any) -> bool:
    return not (v is None or v is False or v == 0 and not isinstance(v, bool) or v in ("", [], {}))


def _to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True, width=1 << 20).rstrip("\n")


def _indent(n: int, s: str) -> str:
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    out, i = [], 0
    parts = re.split(r"(%[sdvq%])", fmt)
    for p in parts:
        if p == "%%":
            out.append("%")
        elif p in ("%s", "%d", "%v", "%q"):
            if i >= len(args):
                raise TemplateError(f"printf {fmt!r}: too few arguments")
            a = args[i]
            i += 1
            out.append(json.dumps(str(a)) if p == "%q" else _show(a))
        elif "%" in p:
            raise TemplateError(f"printf verb not supported in {fmt!r}")
        else:
            out.append(p)
    if i != len(args):
        raise TemplateError(f"printf {fmt!r}: too many arguments")
    return "".join(out)


def _show(v: Any) -> str:
    """How text/template prints a value (helm turns <no value> into "")."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    raise TemplateError(f"printing a {type(v).__name__} ({v!r}) directly; use toYaml")


class Files:
    def __init__(self, root: Path):
        self.root = root

    def Get(self, path: str) -> str:  # noqa: N802 (helm's name)
        full = self.root / path
        if not full.is_file():
            raise TemplateError(f".Files.Get {path!r}: no such file in the chart")
        return full.read_text()


class Renderer:
    def __init__(self, chart_dir: Path):
        self.chart_dir = chart_dir
        self.defines: dict[str, list] = {}
        self.trees: dict[str, list] = {}
        templates = sorted((chart_dir / "templates").iterdir())
        for path in templates:
            if path.suffix not in (".yaml", ".yml", ".tpl", ".txt"):
                raise TemplateError(f"unexpected file in templates/: {path.name}")
            tree = _parse(_lex(path.read_text(), path.name), path.name, self.defines)
            if not path.name.startswith("_"):
                self.trees[path.name] = tree
        self.functions: dict[str, Callable[..., Any]] = {
            "default": lambda d, v=None: v if truthy(v) else d,
            "trunc": lambda n, s: s[:n],
            "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
            "printf": _printf,
            "eq": lambda a, b: a == b,
            "not": lambda v: not truthy(v),
            "and": lambda *vs: next((v for v in vs if not truthy(v)), vs[-1]),
            "or": lambda *vs: next((v for v in vs if truthy(v)), vs[-1]),
            "quote": lambda v: json.dumps(_show(v)),
            "toYaml": _to_yaml,
            "nindent": lambda n, s: "\n" + _indent(n, s),
            "indent": _indent,
            "join": lambda sep, items: sep.join(_show(i) for i in items),
            "sha256sum": lambda s: hashlib.sha256(_show(s).encode()).hexdigest(),
        }

    def render(self, values: dict, release: str = "badfd", namespace: str = "badfd") -> dict[str, str]:
        chart = yaml.safe_load((self.chart_dir / "Chart.yaml").read_text())
        root = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
            "Files": Files(self.chart_dir),
        }
        return {name: self._nodes(tree, root, root) for name, tree in self.trees.items()}

    def _nodes(self, nodes: list, dot: Any, root: dict) -> str:
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                out.append(_show(self._pipeline(node[1], dot, root)))
            elif kind == "if":
                for cond, body in node[1]:
                    if truthy(self._pipeline(cond, dot, root)):
                        out.append(self._nodes(body, dot, root))
                        break
                else:
                    out.append(self._nodes(node[2], dot, root))
            elif kind == "with":
                v = self._pipeline(node[1], dot, root)
                out.append(self._nodes(node[2], v, root) if truthy(v) else self._nodes(node[3], dot, root))
            elif kind == "range":
                v = self._pipeline(node[1], dot, root)
                if isinstance(v, dict):
                    v = [v[k] for k in sorted(v)]
                if v is not None and not isinstance(v, list):
                    raise TemplateError(f"range over a {type(v).__name__}")
                if v:
                    out.extend(self._nodes(node[2], item, root) for item in v)
                else:
                    out.append(self._nodes(node[3], dot, root))
        return "".join(out)

    def _pipeline(self, commands: list, dot: Any, root: dict) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, dot, root, value)
        return value

    def _command(self, command: list, dot: Any, root: dict, piped: Any) -> Any:
        head = command[0]
        args = [self._operand(op, dot, root) for op in command[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        if head[0] == "ident":
            if head[1] == "include":
                if len(args) != 2:
                    raise TemplateError("include takes a name and a context")
                name, ctx = args
                if name not in self.defines:
                    raise TemplateError(f"include of undefined template {name!r}")
                return self._nodes(self.defines[name], ctx, root)
            fn = self.functions.get(head[1])
            if fn is None:
                raise TemplateError(f"function {head[1]!r} is not supported by this renderer")
            try:
                return fn(*args)
            except TypeError as e:
                raise TemplateError(f"{head[1]}: {e}") from e
        if head[0] == "field":
            target = self._operand(head, dot, root, call=False)
            if callable(target):
                return target(*args)
        if args:
            raise TemplateError(f"arguments given to a non-function {head!r}")
        return self._operand(head, dot, root)

    def _operand(self, op: tuple, dot: Any, root: dict, call: bool = True) -> Any:
        kind = op[0]
        if kind in ("str", "num", "const"):
            return op[1]
        if kind == "sub":
            return self._pipeline(op[1], dot, root)
        if kind == "field":
            v = dot
            for i, name in enumerate(op[1]):
                if isinstance(v, dict):
                    if name not in v:
                        raise TemplateError(f"missing key {'.'.join(op[1][: i + 1])!r}")
                    v = v[name]
                elif isinstance(v, Files) and name == "Get":
                    v = v.Get
                else:
                    raise TemplateError(f"cannot read .{name} of {type(v).__name__} in .{'.'.join(op[1])}")
            if call and callable(v):
                raise TemplateError(f".{'.'.join(op[1])} needs arguments")
            return v
        if kind == "ident":
            fn = self.functions.get(op[1])
            if fn is None or op[1] in ("include",):
                raise TemplateError(f"function {op[1]!r} used as a value")
            return fn()
        raise TemplateError(f"unknown operand {op!r}")


_NOTHING = object()


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(chart_dir: Path, overrides: dict | None = None) -> tuple[dict[str, list[dict]], str]:
    """The chart's objects by template file, and NOTES.txt, for values.yaml
    merged with `overrides`."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    values = deep_merge(values, overrides or {})
    rendered = Renderer(chart_dir).render(values)
    notes = rendered.pop("NOTES.txt", "")
    objects = {}
    for name, text in rendered.items():
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        objects[name] = docs
    return objects, notes


if __name__ == "__main__":
    import sys

    chart = Path(sys.argv[1] if len(sys.argv) > 1 else "helm/badfd")
    objs, notes = render_chart(chart, json.loads(sys.argv[2]) if len(sys.argv) > 2 else None)
    for name, docs in objs.items():
        for d in docs:
            print(f"---\n# Source: {name}")
            print(yaml.safe_dump(d, sort_keys=False).rstrip())
    print("--- NOTES.txt\n" + notes)
