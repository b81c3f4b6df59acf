"""Reading a recipe: YAML + dotted overrides (--set a.b=1) typed by their field → one validated Config.

Unknown keys are errors that name the key, the valid keys at that level and the closest match.
Relative paths written in a config file are relative to its project root (see resolve_paths), so a
recipe means the same from any folder. json_schema() is what `dsum config schema` prints.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from dsum.config.schema import Config
from dsum.util.errors import UserError

def load_config(
    path: str | Path | None, overrides: Sequence[str] | Mapping[str, Any] | None = None
) -> Config:
    """Read a YAML recipe (or the defaults when `path` is None), apply overrides, validate.

    `overrides` are `a.b=value` strings as `--set` takes them, or a mapping of dotted keys to
    values (the library API): a string value is read as `--set` reads it (typed by its field), any
    other value is set as it is and validated. Relative paths are resolved as `resolve_paths` says.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path} (pass an existing YAML, e.g. configs/demo.yaml)")
        try:
            raw = yaml.safe_load(read_utf8(path)) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}; fix the syntax") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path} must hold a mapping of sections (general:, data:, ...), not {type(raw).__name__}")
    typed: dict[str, str] = {}  # dotted key → how the user gave it (errors name it, not the file)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if isinstance(value, str):
                apply_override(raw, f"{key}={value}")
            else:
                set_dotted(raw, str(key), value, what="override")
            typed[str(key)] = f"override {key}={value!r}"
    else:
        for override in overrides or ():
            apply_override(raw, override)
            typed[override.partition("=")[0].strip()] = f"--set {override}"
    cfg = validate_config(raw, source=str(path) if path else "config", overridden=typed)
    return resolve_paths(cfg, project_root(path) if path is not None else None, typed)


def read_utf8(path: Path) -> str:
    """A config file's text; one that is not UTF-8 (a Windows editor's cp949) is refused with its encoding named."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        cp949 = _decodes(raw, "cp949")
        saved = "not UTF-8 (it reads as cp949, a Windows editor's Korean encoding)" if cp949 else "not UTF-8"
        raise UserError(
            f"{path} is {saved}; bad byte 0x{raw[exc.start]:02x} at offset {exc.start}: re-save it as UTF-8 "
            f"(e.g. `iconv -f cp949 -t utf-8 {path.name} > fixed.yaml`)"
        ) from None


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# A folder holding one of these is a project root: the folder a config file's relative paths start from.
PROJECT_MARKERS = ("pyproject.toml", ".git")


def project_root(config_file: str | Path) -> Path | None:
    """The nearest folder at or above the config file's that holds pyproject.toml or .git (None: none does)."""
    folder = Path(config_file).resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def path_fields() -> list[str]:
    """Dotted keys of the config's file and folder fields (a Path, an optional Path, a list of Paths)."""
    keys = []
    for section, info in Config.model_fields.items():
        model = _model_in(info.annotation)
        for name, field in model.model_fields.items():
            members = _union_members(field.annotation)
            inner = [arg for m in members for arg in (typing.get_args(m) if typing.get_origin(m) is list else (m,))]
            if any(isinstance(arg, type) and issubclass(arg, PurePath) for arg in inner):
                keys.append(f"{section}.{name}")
    return keys


def resolve_paths(cfg: Config, root: Path | None, typed: Sequence[str] = ()) -> Config:
    """Make a config's relative paths mean the same from any working directory.

    A relative path written in a config file (or left at its default: data/sample/..., runs/...)
    is relative to the project root of that file (`project_root`), so configs/demo.yaml names the
    same data and run directories from the repo root, from examples/ (a notebook) or from
    configs/. A relative path in an override (`--set`, or `typed` keys of the API's mapping) is
    relative to the current directory, as any path typed on a command line. `model.name` is
    resolved the same way when that folder exists (else it is a hub name).

    When the current directory is the project root both readings agree and nothing changes, so a
    command run from the root sees (and saves) its paths as written; from elsewhere they become
    absolute. A config file outside any project (a run directory under /tmp) keeps its paths
    relative to the current directory.
    """
    cwd = Path.cwd()
    if root is None or root == cwd.resolve():
        return cfg

    def base(key: str) -> Path:
        return cwd if any(key == k or key.startswith(k + ".") for k in typed) else root

    sections: dict[str, dict[str, Any]] = {}
    for key in path_fields():
        section_name, name = key.split(".")
        section = getattr(cfg, section_name)
        value = getattr(section, name, None) if section is not None else None
        if isinstance(value, list):
            resolved: Any = [p if p.is_absolute() else base(key) / p for p in value]
        elif isinstance(value, PurePath) and not value.is_absolute():
            resolved = base(key) / value
        else:
            continue
        sections.setdefault(section_name, {})[name] = resolved
    model_name = Path(cfg.model.name)
    if cfg.model.tiny is None and not model_name.is_absolute() and (base("model.name") / model_name).is_dir():
        sections.setdefault("model", {})["name"] = str(base("model.name") / model_name)
    updates = {name: getattr(cfg, name).model_copy(update=fields) for name, fields in sections.items()}
    return cfg.model_copy(update=updates)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set a dotted key in the raw mapping: `training.learning_rate=3e-5`.

    The value is typed by the field it goes to: a text field (str, a path, a choice of words) keeps
    the raw string, so `general.data_version=2` is "2" and `general.notes=yes` is "yes"; an empty
    value or `null` sets an optional one to None. A list of texts (`data.train=[a.csv, b.csv]`)
    keeps its items as strings. Any other field (numbers, bools, nested lists and mappings) gets
    the value parsed as YAML.
    """
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE with a dotted key, e.g. training.learning_rate=3e-5; got {override!r}")
    set_dotted(raw, key, parse_value(key, value), what="--set")


def parse_value(key: str, text: str) -> Any:
    """The value of `--set KEY=TEXT`, typed by the field at the dotted `key` (see apply_override)."""
    kind = _kind_of(field_annotation(key))
    if kind in ("text", "optional text"):
        if kind == "optional text" and text.strip() in _YAML_NULLS:
            return None
        return text
    try:
        if kind == "text list":
            return yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else None  # scalars stay strings
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: {text!r} is not a valid YAML value ({str(exc).splitlines()[0]}); quote it or fix the brackets") from None


def set_dotted(raw: dict[str, Any], key: str, value: Any, what: str = "--set", create: bool = True) -> None:
    """Put `value` at the dotted `key` of a raw config mapping.

    A number or bool (or a Path) bound for a text field becomes its string (a tune search space may hold
    `choices: [1, 2]` for general.data_version). Missing or empty sections are created unless
    `create` is False (then the key must name a section that is there). `what` names the source
    in errors.
    """
    if isinstance(value, (int, float, PurePath)) and _kind_of(field_annotation(key)) in ("text", "optional text"):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        child = node.get(section)
        if child is None and create:  # absent, or an optional section left empty (tune: null)
            child = node[section] = {}
        if not isinstance(child, dict):
            problem = "is a value, not a section" if section in node and child is not None else "is not set in this config"
            raise UserError(f"{what} {key}: {section} {problem} (see dsum config show)")
        node = child
    node[name] = value


_YAML_NULLS = ("", "~", "null", "Null", "NULL")


def field_annotation(key: str) -> Any:
    """The type annotation of the field at a dotted key (None when the key names no field).

    Walks the models from Config; a mapping field (tune.space) takes the next part as its key.
    """
    annotation: Any = Config
    for part in key.split("."):
        model = _model_in(annotation)
        if model is not None:
            field_info = model.model_fields.get(part)
            if field_info is None:
                return None
            annotation = field_info.annotation
            continue
        mapping = _mapping_value_in(annotation)
        if mapping is None:
            return None
        annotation = mapping
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model held by `annotation` itself or by an Optional of it."""
    for arg in _union_members(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _mapping_value_in(annotation: Any) -> Any:
    for arg in _union_members(annotation):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return None


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _is_text(annotation: Any) -> bool:
    """str, a path, or a Literal of strings: a field whose value is written as plain text."""
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, (str, PurePath))


def _kind_of(annotation: Any) -> str:
    """"text", "optional text", "text list" or "yaml": how --set reads a value for this field."""
    if annotation is None:
        return "yaml"  # not a field: parsed as YAML, and validation names the unknown key
    members = _union_members(annotation)
    others = [arg for arg in members if arg is not type(None)]
    if len(others) != 1:
        return "yaml"
    (inner,) = others
    if _is_text(inner):
        return "optional text" if len(others) < len(members) else "text"
    if typing.get_origin(inner) is list and all(_is_text(arg) for arg in typing.get_args(inner)):
        return "text list"
    return "yaml"


def validate_config(raw: dict[str, Any], source: str = "config", overridden: Mapping[str, str] | None = None) -> Config:
    """The Config of a raw mapping; the first error names where the bad key came from: the file (`source`), or
    the override that set it (`overridden`: dotted key → the override as the user gave it)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        dotted = ".".join(str(part) for part in error["loc"])
        given = next((text for key, text in (overridden or {}).items() if dotted == key or dotted.startswith(key + ".")), None)
        raise UserError(f"{given or source}: {describe_error(error)}") from None


# How to fix a validation error that the pydantic message alone does not explain.
_FIXES = {
    ("data.train", "too_short"): "list at least one training file, e.g. data.train=[data/sample/train.csv]",
}


def describe_error(error: dict[str, Any]) -> str:
    """One line for the first validation error; for an unknown key, the valid keys and the closest."""
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] != "extra_forbidden":
        fix = _FIXES.get((dotted, error["type"]))
        return f"{dotted}: {error['msg']} (got {error.get('input')!r})" + (f": {fix}" if fix else "")
    valid = list(_fields_at(loc[:-1]))
    hint = difflib.get_close_matches(loc[-1], valid, n=1)
    closest = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {dotted!r}; valid keys at this level: {', '.join(valid)}{closest}"


def _fields_at(path: list[str]) -> dict[str, Any]:
    """The fields of the model found by walking `path` from Config (list indices are skipped)."""
    model: type[BaseModel] = Config
    """The model (hub name, local folder or tiny) and its maximum lengths."""
    for part in path:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(arg for arg in _candidates(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel))
    return model.model_fields


def _candidates(annotation: Any) -> list[Any]:
    """Unwrap Optional[...] / list[...] annotations down to the types they hold."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [inner for arg in args for inner in _candidates(arg)]


def json_schema() -> dict[str, Any]:
    """The JSON schema of a config file, every field with its description: `dsum config schema`.

    Editors use it to complete and check the YAML recipes (yaml-language-server, VS Code's YAML
    extension, PyCharm); unknown keys are flagged as dsum would refuse them.
    """
    schema = Config.model_json_schema()
    schema["title"] = "dsum config"
    schema["description"] = "A dsum recipe (configs/*.yaml): `dsum config show -c FILE` prints it resolved."
    return schema
