"""`vthink config show`: the resolved config as YAML, each key under the comment written where its field is declared.

A field's documentation is the comment block right above it plus its trailing comment (engine/config.py), read
from the source, so there is one place to write it; a section's is its class docstring. The allowed values come from the field's rule (`ruled`) or its Literal type.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any

import yaml

WIDTH = 110  # comment lines are wrapped to this many columns


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its comment text} of a config dataclass; fields without a comment are absent."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}

    def comment_only(n: int) -> bool:
        return lines[n - 1].lstrip().startswith("#")

    docs = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, n = [], node.lineno - 1
        while n in comments and comment_only(n):
            above.insert(0, comments[n])
            n -= 1
        trailing = [comments[k] for k in range(node.lineno, node.end_lineno + 1) if k in comments and not comment_only(k)]
        text = " ".join(above + trailing).strip()
        if text:
            docs[node.target.id] = text
    return docs


def allowed(f: dataclasses.Field, cls: type) -> str | None:
    """What values a field takes: its rule's wording, or its Literal's choices."""
    if "expected" in f.metadata:
        return f.metadata["expected"]
    hint = typing.get_type_hints(cls).get(f.name)
    listed = typing.get_origin(hint) is list
    if listed:
        (hint,) = typing.get_args(hint)
    parts = [hint] if typing.get_origin(hint) is typing.Literal else typing.get_args(hint)
    choices = [a for part in parts if typing.get_origin(part) is typing.Literal for a in typing.get_args(part)]
    if not choices:
        return None
    return ("each one of " if listed else "one of ") + ", ".join(map(str, choices))


def section_doc(cls: type) -> str | None:
    doc = inspect.getdoc(cls)
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclass's generated signature, not a docstring
        return None
    return " ".join(doc.split("\n\n")[0].split())


def _comment(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [pad + "# " + line for line in textwrap.wrap(text, WIDTH - indent - 2)]


def commented_yaml(config: Any, indent: int = 0) -> str:
    """`config` (a dataclass tree) as YAML that loads back to dataclasses.asdict(config), with comments."""
    out: list[str] = []
    cls = type(config)
    docs = field_docs(cls)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        pad = " " * indent
        if dataclasses.is_dataclass(value):
            doc = docs.get(f.name) or section_doc(type(value))
            if indent == 0 and out:
                out.append("")
            out += _comment(doc, indent) if doc else []
            out.append(f"{pad}{f.name}:")
            out.append(commented_yaml(value, indent + 2))
            continue
        doc = docs.get(f.name, "")
        rule = allowed(f, cls)
        if rule and rule not in doc:
            doc = f"{doc} ({rule})" if doc else rule
        out += _comment(doc, indent) if doc else []
        if isinstance(value, (list, dict)):  # on one line: [a, b]
            text = f"{f.name}: " + yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
        else:
            text = yaml.safe_dump({f.name: value}, default_flow_style=False, width=10**9).rstrip("\n")
        out += [pad + line for line in text.split("\n")]
    return "\n".join(out)
