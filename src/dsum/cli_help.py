"""`dsum ... --help` as a well-kept CLI shows it, applied once to the typer app (dsum.cli calls tidy_help):

- help text is plain text, not rich markup: `[data/train.csv, ...]` in an example is shown, not eaten as a tag;
- a docstring's paragraphs are wrapped once, to the terminal's width (its own line breaks inside a paragraph
  would make ragged lines at 80 columns);
- options show what they take (PATH, N, TEXT), flags nothing, instead of Python types (`<bool>`, `<list[Path]>`).
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import typer
from rich.markup import escape
from typer.models import ArgumentInfo, OptionInfo

# What an option's value is, by its Python type (Optional and list unwrapped).
METAVARS = {Path: "PATH", int: "N", float: "NUMBER", str: "TEXT"}


def tidy_help(app: typer.Typer) -> None:
    """Every command and group of `app`, its sub-apps included (see the module's docstring)."""
    hide_flag_types()
    for group in app.registered_groups:
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = plain(info.help)
            tidy_help(group.typer_instance)
    callbacks = [c.callback for c in app.registered_commands]
    if app.registered_callback is not None:
        callbacks.append(app.registered_callback.callback)
    for callback in callbacks:
        if callback is not None:
            tidy_command(callback)


def tidy_command(callback) -> None:
    """The parameters' help and metavars; the docstring (typer's help of the command) made plain. Once each."""
    if callback.__doc__ and not getattr(callback, "_dsum_tidy", False):
        callback.__doc__ = plain(inspect.getdoc(callback))
        callback._dsum_tidy = True
    hints = typing.get_type_hints(callback)
    for name, parameter in inspect.signature(callback).parameters.items():
        info = parameter.default
        if not isinstance(info, (OptionInfo, ArgumentInfo)) or getattr(info, "_dsum_tidy", False):
            continue
        if isinstance(info.help, str):
            info.help = escape(info.help)
        if info.metavar is None and isinstance(info, OptionInfo):  # an argument's column shows its name already
            info.metavar = metavar(hints.get(name))
        info._dsum_tidy = True  # shared options (--config, --set) are tidied once


def metavar(annotation) -> str:
    """PATH, N, TEXT... for an option's value; "" for a flag."""
    kind = annotation
    while typing.get_origin(kind) in (typing.Union, list):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        return ""
    return METAVARS.get(kind, "VALUE")


def plain(text: str) -> str:
    """Rich markup escaped, and the single line breaks inside each paragraph joined (rich wraps it once)."""
    paragraphs = [re.sub(r"\s*\n\s*", " ", paragraph.strip()) for paragraph in text.split("\n\n")]
    return escape("\n\n".join(paragraphs))


def hide_flag_types() -> None:
    """No `<bool>` after the flags typer adds itself (--help, --install-completion), no `<list[Path]>` after an
    argument's name: typer makes those labels when it builds the command, where no metavar reaches; its type
    column is told to leave them empty (an option with a metavar, as tidy_command gives them, shows it)."""
    from typer.core import TyperArgument, TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_dsum", False):
        return

    def option_type(self, ctx):
        return "" if self.is_flag and self.metavar is None else shown(self, ctx)

    def argument_type(self, ctx):
        return None

    option_type._dsum = True
    TyperOption.display_type_rich = option_type
    TyperArgument.display_type_rich = argument_type
