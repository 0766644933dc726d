"""The Cypher library: every statement lives in a ``.cypher`` file shipped in ``lesionkg.cypher``.

- ``cypher/schema.cypher``: constraints and indexes, several statements separated by ``;``.
- ``cypher/store/NAME.cypher``: the statements the library itself runs (writes, counts).
- ``cypher/queries/NAME.cypher``: the user's named, read-only queries. Each starts with a header
  of ``//`` comment lines::

      // Description: A patient's studies in time order, each with its lesions.
      // @param patient_id STRING  the patient id, e.g. 000002
      // @param limit INTEGER = 10  at most this many rows
      // Example: lesionkg query patient_timeline --param patient_id=000002

Files are found relative to the installed package (``importlib.resources``), never the working
directory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lesionkg.core.errors import QueryError
from lesionkg.core.limits import DEFAULT_LIMITS, INT64_MAX

_PARAM = re.compile(r"^//\s*@param\s+(\w+)\s+([A-Z<>]+)(?:\s*=\s*(\S+))?\s*(.*)$")
_TYPES = ("STRING", "INTEGER", "FLOAT", "BOOLEAN", "LIST<FLOAT>", "LIST<STRING>", "LIST<INTEGER>")


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str
    default: Any
    description: str

    @property
    def required(self) -> bool:
        return self.default is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A named query: its Cypher text and what its header declares."""

    name: str
    description: str
    params: tuple[Param, ...]
    example: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        """What ``lesionkg query --list --format json`` shows (the Cypher text left out)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.as_dict() for p in self.params],
            "example": self.example,
        }

    def describe(self) -> str:
        lines = [f"{self.name}\n    {self.description}"]
        for p in self.params:
            default = "required" if p.required else f"default {p.default}"
            lines.append(f"    --param {p.name}=<{p.type}>  ({default}) {p.description}")
        if self.example:
            lines.append(f"    e.g. {self.example}")
        return "\n".join(lines)


def _root():
    return resources.files("lesionkg.cypher")


@cache
def statement(name: str) -> str:
    """The text of ``cypher/store/LAYER/NAME.cypher`` (one statement), named ``"LAYER/NAME"``.

    The store is grouped by the layer whose code runs the statement (``db``, ``graph``, ``etl``,
    ``demo``), so a statement's folder says who owns it."""
    path = _root() / "store" / f"{name}.cypher"
    if not path.is_file():
        raise QueryError(f"no statement file store/{name}.cypher in the Cypher library")
    return path.read_text(encoding="utf-8")


def split_statements(text: str) -> list[str]:
    """Split a script into statements on ``;`` at line ends; ``//`` comment lines are dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return [part.strip() for part in re.split(r";\s*(?:\n|$)", body) if part.strip()]


@cache
def schema_statements() -> tuple[str, ...]:
    """The constraint and index statements of ``cypher/schema.cypher``, in file order."""
    return tuple(split_statements((_root() / "schema.cypher").read_text(encoding="utf-8")))


class _TooBig(ValueError):
    """An integer beyond 64 bits."""


def _int64(raw: str) -> int:
    """``raw`` as an integer Neo4j can store (64-bit signed); ValueError otherwise."""
    value = int(raw)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _TooBig
    return value


def convert_param(param: Param, raw: str) -> Any:
    """Turn a ``--param key=value`` string into the declared Cypher type.

    Integers beyond 64 bits (which Neo4j cannot store) are refused like any bad value."""
    try:
        match param.type:
            case "STRING":
                return raw
            case "INTEGER":
                return _int64(raw)
            case "FLOAT":
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError
                return value
            case "BOOLEAN":
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("true", "1", "yes")
            case "LIST<FLOAT>":
                return [float(v) for v in raw.split(",")]
            case "LIST<INTEGER>":
                return [_int64(v) for v in raw.split(",")]
            case "LIST<STRING>":
                return [v.strip() for v in raw.split(",")]
    except _TooBig:
        raise QueryError(
            f"parameter {param.name}: expected {param.type}, got an integer beyond 64 bits "
            "(Neo4j's integers are 64-bit signed)"
        ) from None
    except ValueError:
        pass
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    raise QueryError(f"parameter {param.name}: expected {param.type}, got {shown!r}")


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped), counted
    without recursion, so that a hostile value cannot exhaust the decoder's stack."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_json_value(name: str, value: Any) -> None:
    """Refuse integers Neo4j cannot store anywhere in a decoded JSON ``value``."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not -INT64_MAX - 1 <= item <= INT64_MAX:
            raise QueryError(
                f"parameter {name}: integer {str(item)[:30]}... does not fit in 64 bits "
                "(Neo4j's integers are 64-bit signed)"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise QueryError(f"parameter {name}: {item} is not a finite number")
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())


def json_param(name: str, raw: str, *, max_depth: int = DEFAULT_LIMITS.json_depth) -> Any:
    """An ad-hoc ``--param name=raw`` value: JSON when it parses, else the string itself.

    A value nested deeper than ``max_depth`` or holding an integer beyond 64 bits (or a
    non-finite number) raises :class:`QueryError` naming the parameter, instead of a
    ``RecursionError`` or the driver's ``OverflowError``."""
    depth = _json_depth(raw)
    if depth > max_depth:
        raise QueryError(
            f"parameter {name}: JSON nested {depth} deep, more than the limit of {max_depth}"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        # Not JSON: the string itself (json.loads parses big integers itself, no ValueError).
        return raw
    except RecursionError:
        raise QueryError(f"parameter {name}: JSON nested too deep") from None
    _check_json_value(name, value)
    return value


def _parse_header(name: str, text: str) -> QuerySpec:
    description, example, params = "", "", []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("//"):
            if stripped:
                break
            continue
        if m := _PARAM.match(stripped):
            pname, ptype, default, desc = m.groups()
            if ptype not in _TYPES:
                raise QueryError(f"queries/{name}.cypher: @param {pname} has unknown type {ptype}")
            spec = Param(pname, ptype, None, desc.strip())
            if default is not None:
                spec = Param(pname, ptype, convert_param(spec, default), desc.strip())
            params.append(spec)
        elif m := re.match(r"^//\s*Description:\s*(.*)$", stripped):
            description = m.group(1).strip()
        elif m := re.match(r"^//\s*Example:\s*(.*)$", stripped):
            example = m.group(1).strip()
        elif description and not example and not params:
            description += " " + stripped.lstrip("/ ").strip()
    if not description:
        raise QueryError(f"queries/{name}.cypher: header has no '// Description:' line")
    return QuerySpec(name, description, tuple(params), example, text)


@cache
def queries() -> dict[str, QuerySpec]:
    """Every named query of ``cypher/queries/``, by name."""
    folder = _root() / "queries"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".cypher"):
            name = entry.name.removesuffix(".cypher")
            out[name] = _parse_header(name, entry.read_text(encoding="utf-8"))
    return out


def query(name: str) -> QuerySpec:
    """The named query, or :class:`QueryError` listing the known names."""
    known = queries()
    if name not in known:
        raise QueryError(f"no query named {name!r}; known: {', '.join(known) or '(none)'}")
    return known[name]


def bind_params(spec: QuerySpec, raw: dict[str, str]) -> dict[str, Any]:
    """Check and convert ``--param`` strings against the query's declared parameters."""
    declared = {p.name: p for p in spec.params}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise QueryError(
            f"query {spec.name} has no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(declared) or 'none'}"
        )
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name in raw:
            out[p.name] = convert_param(p, raw[p.name])
        elif p.required:
            raise QueryError(f"query {spec.name} needs --param {p.name}=<{p.type}>")
        else:
            out[p.name] = p.default
    return out
