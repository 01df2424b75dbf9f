"""`--help` that reads well. Typer 0.29 shows a parameter's Python type (`<bool>` beside a flag, `<list[str]>`);
here a flag shows nothing (it takes no value) and a value shows its kind the way most commands write it (TEXT,
INTEGER, PATH, [csv|jsonl]). And a docstring's line ends are not sentence ends: each paragraph is one line, which
the terminal wraps, so no help text is cut mid-sentence where the source was wrapped."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, get_args

from typer.core import TyperGroup

_TYPE_NAMES: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH", bool: "BOOLEAN"}


# Typer's parameters, commands and contexts are its own (vendored) click classes since 0.29, click's before: Any.
def readable_type(param: Any) -> str | None:
    """What a parameter takes, for --help: '' for a flag, else TEXT, INTEGER, PATH or [a|b]; None: leave it."""
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.29; older versions print click's own
    if descriptor is None:
        return None
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar and getattr(param, "param_type_name", None) == "option":
        return str(param.metavar)
    if getattr(descriptor, "is_choice", False) and descriptor.choices:
        return "[" + "|".join(str(c.value if isinstance(c, Enum) else c) for c in descriptor.choices) + "]"
    annotation = descriptor.annotation
    if getattr(descriptor, "is_list", False) and get_args(annotation):
        annotation = get_args(annotation)[0]
    if getattr(descriptor, "is_path", False):
        return "PATH"
    return _TYPE_NAMES.get(annotation, "TEXT")


def reflowed(text: str | None) -> str | None:
    """Help text with each paragraph on one line (the terminal wraps it), paragraphs kept apart."""
    if not text:
        return text
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def make_readable(command: Any, ctx: Any) -> None:
    """Reflow a command's help and give its parameters readable types (idempotent)."""
    command.help = reflowed(command.help)
    command.short_help = reflowed(command.short_help)
    for param in command.get_params(ctx):
        label = readable_type(param)
        if label is not None:
            param.display_type_rich = lambda ctx, label=label: label
        if getattr(param, "param_type_name", None) == "option":
            param.help = reflowed(param.help)


class ReadableHelpGroup(TyperGroup):
    """A typer group whose own help, and its commands' help, read as `make_readable` makes them."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            make_readable(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        make_readable(self, ctx)
        for name in self.list_commands(ctx):
            self.get_command(ctx, name)
        super().format_help(ctx, formatter)
