"""Typed recipe configs: the frozen section dataclasses of a recipe's `Config` and their checks.

A section subclasses `Section` and declares each field's own check beside it (`checked`,
`positive`, `at_least`, `each_at_least`, `in_unit_interval`, `one_of`); `cross_checks` holds the
rules that tie fields together. `config_from_dict` builds a Config from plain nested dicts
(unknown fields and impossible values are one-line `ConfigError`s naming the full path; fields
renamed on 2026-12-07 name their new name, `RENAMED_FIELDS`), `config_to_dict` and
`replace_fields` go back; `section_differences` names the fields in which two sections differ.
Re-exported by `jaxgen.methods.common`.
"""

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any


class FieldError(ValueError):
    """A Config field holds an impossible value; `field` names it within its section."""

    def __init__(self, field: str, value, why: str):
        super().__init__(f"{field}={value!r}: {why}")
        self.field, self.value, self.why = field, value, why


def validate(section, ranges: dict, choices: dict | None = None) -> None:
    """Raise `FieldError` for the first field out of range (`ranges`: name -> (ok, why) or
    name -> ok) or not among its allowed values (`choices`: name -> allowed)."""
    for name, check in ranges.items():
        ok, why = check if isinstance(check, tuple) else (check, "out of range")
        if not ok:
            raise FieldError(name, getattr(section, name), why)
    for name, allowed in (choices or {}).items():
        if getattr(section, name) not in allowed:
            raise FieldError(name, getattr(section, name), f"choose one of {list(allowed)}")


def section_differences(mine, theirs, mine_name: str, theirs_name: str) -> str:
    """Every field in which two config sections (dataclasses of one type) differ, as
    "`mine_name`.k=… but `theirs_name`.k=…" joined by "; " (the empty string when none)."""
    diff = [
        f.name for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)
    ]
    return "; ".join(
        f"{mine_name}.{k}={getattr(mine, k)!r} but {theirs_name}.{k}={getattr(theirs, k)!r}"
        for k in diff
    )


def checked(default, ok: Callable[[Any], bool], why: str = "out of range", *, finite=False):
    """A section field whose value must pass `ok`, else `FieldError(name, value, why)`; the
    check lives beside the field and `Section` runs it. `finite`: a float value must also be
    finite (inf passes a `> 0` test; nan fails every comparison, with a misleading reason),
    else `FieldError(name, value, "must be finite")`."""
    return dataclasses.field(default=default, metadata={"ok": ok, "why": why, "finite": finite})


def positive(default, why: str = "must be > 0"):
    return checked(default, lambda v: v > 0, why, finite=True)


def at_least(lo, default, why: str = ""):
    return checked(default, lambda v: v >= lo, why or f"must be >= {lo}", finite=True)


def each_at_least(lo, default, why: str = "", *, empty: bool = False):
    """A tuple field whose items are all >= `lo` (and, for `lo` > 0, not empty unless `empty`)."""
    ok = lambda v: (bool(v) or lo <= 0 or empty) and all(x >= lo for x in v)
    return checked(default, ok, why or f"need >= {lo} each")


def in_unit_interval(default, why: str = "must be in [0, 1]"):
    return checked(default, lambda v: 0 <= v <= 1, why)


def one_of(allowed, default):
    allowed = tuple(allowed)
    return checked(default, lambda v: v in allowed, f"choose one of {list(allowed)}")


class Section:
    """Base of a recipe Config section (a frozen dataclass): each field's own check (`checked`,
    `positive`, `one_of`, ...) runs in field order, then `cross_checks` (rules that tie fields
    together), so an impossible value is a `FieldError` naming its field at construction."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            ok, value = f.metadata.get("ok"), getattr(self, f.name)
            if f.metadata.get("finite") and isinstance(value, float) and not math.isfinite(value):
                raise FieldError(f.name, value, "must be finite")
            if ok is not None and not ok(value):
                raise FieldError(f.name, value, f.metadata["why"])
        self.cross_checks()

    def cross_checks(self) -> None:
        """Rules between fields (override; raise `FieldError` or call `validate`)."""


@dataclasses.dataclass(frozen=True)
class NoSettings(Section):
    """A section without fields: the `sample` section of a recipe whose sampler has no settings
    of its own (its length is part of the model, e.g. DDGAN's T)."""


class ConfigError(ValueError):
    """A config field is unknown, mistyped or impossible; the message names its full path."""


def _is_section(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def config_to_dict(config) -> dict:
    """Nested plain dict of a Config's fields (section dataclasses become dicts)."""
    return {
        f.name: config_to_dict(v) if _is_section(v := getattr(config, f.name)) else v
        for f in dataclasses.fields(config)
    }


def _coerce(value, kind, path: str):
    """`value` as the annotated type `kind` (float, int, bool, str, tuple[T, ...]), or a
    `ConfigError` naming `path`."""
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r}: expected a tuple")
        (item, *_) = typing.get_args(kind)
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}={value!r}: expected {kind.__name__}")
    return value


# Config fields renamed on 2026-12-07 (docs/methods/README.md, "One vocabulary"): recipe ->
# {old dotted field: new dotted field}. For one release, setting an old name is a `ConfigError`
# naming the new one; configs saved by older runs (`config.json`, checkpoint identities) are
# read through `migrate_renamed`.
RENAMED_FIELDS = {
    "ddgan": {"method.num_steps": "method.diffusion_steps"},
    "shortrun_ebm": {"method.num_steps": "method.langevin_steps"},
    "vapo": {"sample.fixed_steps": "sample.num_steps"},
}


def migrate_renamed(recipe: str, flat: Mapping) -> dict:
    """A copy of the `{dotted field: value}` mapping `flat` (saved by an older run) with the
    recipe's renamed fields under their new names (a new name already present wins)."""
    out = dict(flat)
    for old, new in RENAMED_FIELDS.get(recipe, {}).items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def migrate_renamed_tree(recipe: str, tree: Mapping) -> dict:
    """`migrate_renamed` for a nested dict of sections (`{"method": {"num_steps": 4}}`)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in tree.items()}
    for old, new in RENAMED_FIELDS.get(recipe, {}).items():
        (s_old, f_old), (s_new, f_new) = old.split("."), new.split(".")
        if isinstance(out.get(s_old), dict) and f_old in out[s_old]:
            value = out[s_old].pop(f_old)
            out.setdefault(s_new, {}).setdefault(f_new, value)
    return out


def renamed_message(dotted: str, recipes) -> str | None:
    """The one line for setting the old field `dotted` ("method.num_steps") of any of
    `recipes`: "config field config.method.num_steps was renamed config.method.diffusion_steps
    (ddgan) on 2026-12-07; set that instead"; None when none of them renamed it."""
    new = [(r, RENAMED_FIELDS[r][dotted]) for r in recipes if dotted in RENAMED_FIELDS.get(r, {})]
    if not new:
        return None
    names = " / ".join(f"config.{field} ({r})" for r, field in new)
    return f"config field config.{dotted} was renamed {names} on 2026-12-07; set that instead"


def _renamed_message(cls, where: str) -> str | None:
    return renamed_message(where.split(".", 1)[1], [cls.__module__.rsplit(".", 1)[-1]])


def config_from_dict(cls, tree: Mapping, *, path: str = "config"):
    """`cls(**tree)` for a (nested) section dataclass `cls`, recursing into section fields.

    Fields missing from `tree` keep their defaults. An unknown key, a value of the wrong type or
    a value the section refuses is one `ConfigError` naming the full path (`config.optim.gen.lr`).
    """
    default, hints = cls(), typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in tree.items():
        where = f"{path}.{key}"
        if key not in names:
            renamed = _renamed_message(cls, where)
            if renamed:
                raise ConfigError(renamed)
            raise ConfigError(f"unknown config field {where} (fields: {', '.join(sorted(names))})")
        d = getattr(default, key)
        if _is_section(d):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where} is a section; set its fields ({where}.<name>)")
            kwargs[key] = config_from_dict(type(d), value, path=where)
        else:
            kwargs[key] = _coerce(value, hints[key], where)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(f"{path}.{e}") from None


def replace_fields(config, updates: Mapping[str, Any]):
    """A copy of `config` with dotted fields replaced: `{"sample.t_end": 2.0}`."""
    tree = config_to_dict(config)
    for dotted, value in updates.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for name in parents:
            if not isinstance(node.get(name), dict):
                raise ConfigError(f"unknown config section config.{dotted}")
            node = node[name]
        node[leaf] = value
    return config_from_dict(type(config), tree)
