"""The configuration's JSON Schema (workflow/schemas/config.schema.yaml), read by the library.

The Snakefile validates the same file with ``snakemake.utils.validate``; here it is validated with
jsonschema, its defaults are filled in (as Snakemake's ``set_default`` does) and the first error
becomes a ConfigError that names the entry and what it must be:

    schema = load_schema("workflow/schemas/config.schema.yaml")
    validate(cfg, schema)                                 # the whole config, defaults filled in place
    validate(merged, schema, "sampling", "experiments.fig4.sampling")   # one $defs entry, named there
"""
from __future__ import annotations

import copy
import functools

import yaml
from jsonschema import Draft202012Validator, validators

from .errors import ConfigError

TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
              "object": "a mapping", "array": "a list", "null": "null"}


@functools.cache
def load_schema(path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


@functools.cache
def _validator_class():
    properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, schema):  # the recipe of jsonschema's FAQ
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from properties(validator, props, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})


def _where(prefix: str, path) -> str:
    out = prefix
    for p in path:
        out = f"{out}[{p}]" if isinstance(p, int) else (f"{out}.{p}" if out else str(p))
    return out


def _must_be(error) -> str:
    desc = error.schema.get("description")
    if desc:
        return desc
    types = error.schema.get("type", [])
    return " or ".join(TYPE_WORDS[t] for t in ([types] if isinstance(types, str) else types)) or "valid"


def message(error, prefix: str = "") -> str:
    """A jsonschema ValidationError as the entry it concerns and what that entry must be."""
    where, v, kind, arg = _where(prefix, error.absolute_path), error.instance, error.validator, error.validator_value
    if kind == "additionalProperties":
        extra = sorted(set(v) - set(error.schema.get("properties", {})))
        named = ", ".join(f"{where}.{k}" if where else str(k) for k in extra)
        return (f"unknown config key(s) {named}; {where or 'the config'} takes "
                f"{', '.join(sorted(error.schema.get('properties', {})))}.")
    if kind == "required":
        missing = [k for k in arg if k not in v]
        return f"{where or 'the config'} is missing {', '.join(f'{where}.{k}' if where else k for k in missing)}."
    if kind == "enum":
        where = _where(prefix, [p for p in error.absolute_path if not isinstance(p, int)])  # list items: the list
        words = ("true" if a is True else "false" if a is False else str(a) for a in arg)  # YAML's spelling
        return f"{where}={v!r}; choose one of {', '.join(words)}."
    if kind == "pattern":
        return f"{where}: {v!r} is not {_must_be(error)}."
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{where}={v!r} must be {op} {arg}."
    if kind == "not":
        return f"{where}: {_must_be(error)}."
    text = f"{where or 'the config'}={v!r} must be {_must_be(error)}."
    if kind == "type" and isinstance(v, str) and _is_number(v):  # snakemake --config key={a: {b: 3}}
        text += (" (A number arrived as text: Snakemake passes the nested values of --config as strings; "
                 "put nested overrides in a YAML file given with --configfile.)")
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def validate(instance, schema: dict, definition: str | None = None, prefix: str = ""):
    """Validate ``instance`` against the whole schema or one of its ``$defs``, filling defaults in
    place; raise ConfigError with the first problem (named ``prefix.<path>``). Returns ``instance``."""
    if definition is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    errors = list(_validator_class()(schema).iter_errors(instance))
    if errors:
        raise ConfigError(message(_first(errors), prefix))
    return instance


def _first(errors):
    """The error to report: inside a oneOf/anyOf/if, the alternative that got furthest (or the whole)."""
    e = errors[0]
    if e.validator in ("oneOf", "anyOf") and e.context:
        typed = [c for c in e.context if c.validator not in ("type", "const")]
        if typed and "description" not in e.schema:
            return max(typed, key=lambda c: len(c.absolute_path))
    return e
