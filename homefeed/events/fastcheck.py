"""A compiled yes/no check for the JSON Schema subset the registry uses.

Most events are valid, and a full validator spends most of its time building the machinery to
explain failures. This module generates one flat Python function per schema that only answers
"valid?"; when it says no, ``EventValidator`` asks fastjsonschema why. It is deliberately at least
as strict as the full validator (tests/events/test_validate.py checks both verdicts agree), and
it treats booleans and floats as non-integers, which JSON Schema would not.

Supported keywords: type (object, string, integer, number, boolean, array), properties,
required, additionalProperties: false, enum, const, minimum, maximum, minLength, maxLength,
items, maxItems, format (ignored: event_time is checked separately).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SUPPORTED = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "items",
    "maxItems",
    "format",
    "description",
    "title",
    "$schema",
    "$id",
}
_PY_TYPES = {
    "string": "str",
    "integer": "int",
    "boolean": "bool",
    "object": "dict",
    "array": "list",
}


class _Generator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def const(self, value: Any) -> str:
        name = f"_C{len(self.constants)}"
        self.constants[name] = value
        return name

    def function(self, spec: dict[str, Any]) -> str:
        """Emit ``def _fN(v): ... return True`` for an object schema and return its name."""
        self.counter += 1
        name = f"_f{self.counter}"
        body: list[str] = ["    if type(v) is not dict: return False"]
        required = frozenset(spec.get("required", ()))
        if required:
            body.append(f"    if not v.keys() >= {self.const(required)}: return False")
        props: dict[str, dict[str, Any]] = spec.get("properties", {})
        if spec.get("additionalProperties") is False:
            body.append(f"    if not v.keys() <= {self.const(frozenset(props))}: return False")
        for key, sub in props.items():
            if key in required:  # present: checked above
                body.append(f"    x = v[{key!r}]")
                body.append(f"    if not ({self.expr(sub, 'x')}): return False")
            else:
                body.append(f"    x = v.get({key!r}, _MISSING)")
                body.append(
                    f"    if x is not _MISSING and not ({self.expr(sub, 'x')}): return False"
                )
        self.lines += [f"def {name}(v):", *body, "    return True", ""]
        return name

    def expr(self, spec: dict[str, Any], var: str) -> str:
        unknown = set(spec) - _SUPPORTED
        if unknown:
            raise ValueError(f"fastcheck does not support {sorted(unknown)}")
        kind = spec.get("type")
        if kind == "object":
            return f"{self.function(spec)}({var})"
        parts = [self._type_test(kind, var)]
        if "const" in spec:
            parts.append(f"{var} == {self.const(spec['const'])}")
        if "enum" in spec:
            parts.append(f"{var} in {self.const(frozenset(spec['enum']))}")
        if "minimum" in spec:
            parts.append(f"{var} >= {spec['minimum']!r}")
        if "maximum" in spec:
            parts.append(f"{var} <= {spec['maximum']!r}")
        if "minLength" in spec:
            parts.append(f"len({var}) >= {spec['minLength']}")
        if "maxLength" in spec:
            parts.append(f"len({var}) <= {spec['maxLength']}")
        if kind == "array":
            if "maxItems" in spec:
                parts.append(f"len({var}) <= {spec['maxItems']}")
            if "items" in spec:
                item = self.expr(spec["items"], "i")
                parts.append(f"all({item} for i in {var})")
        return " and ".join(parts)

    @staticmethod
    def _type_test(kind: str | None, var: str) -> str:
        if kind == "number":
            return f"(type({var}) is int or type({var}) is float)"
        if kind not in _PY_TYPES:
            raise ValueError(f"fastcheck does not support type {kind!r}")
        return f"type({var}) is {_PY_TYPES[kind]}"


def compile_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A function that returns True only for instances the schema accepts."""
    gen = _Generator()
    entry = gen.function(schema)
    namespace: dict[str, Any] = {"_MISSING": object(), **gen.constants}
    exec("\n".join(gen.lines), namespace)
    check: Callable[[Any], bool] = namespace[entry]
    return check
