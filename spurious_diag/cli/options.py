"""Command-line flags generated from the options dataclasses, so that a setting is named once.

Each field of an options dataclass (``AuditOptions``, ``DiagnoseOptions``, ``TrainSettings``, ...)
becomes a flag ``--field-name`` (mergekit's ``add_merge_options`` does the same for its
``MergeOptions``), described by the field's ``metadata``:

- ``help``: the flag's help (the default value is appended);
- ``cli``: False leaves the field off the command line;
- ``flag``: another flag name (e.g. ``--recovery-n`` for ``RecoverySettings.ns``);
- ``prefix``: for a nested options dataclass, the prefix of its flags (``--recovery-lr``);
- ``parse``: a function from the flag's text to the value (e.g. comma-separated integers);
- ``choices``, ``metavar``: as in argparse;
- ``negative``: for a boolean that defaults to True, the flag that turns it off (``--no-angles``).

Flags default to "not given", so :func:`options_from_args` changes only what the user typed; a
value out of range is refused by the dataclass itself (``UsageError``, exit 2). Nothing here
imports torch: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Iterable, Optional, TypeVar, Union

from ..errors import SpuriousDiagError

__all__ = ["add_options", "options_from_args", "add_out_flags"]

T = TypeVar("T")

_SEP = "__"  # between a nested field's names in its argparse dest, e.g. recovery__lr


def add_out_flags(parser: argparse.ArgumentParser, *, default: Optional[str] = None,
                  default_note: str = "") -> None:
    """``--out DIR`` (required unless it has a default) and ``--overwrite``, the same for every command."""
    if default is None:
        parser.add_argument("--out", required=True, metavar="DIR",
                            help="output directory (must be empty unless --overwrite)")
    else:
        parser.add_argument("--out", default=default, metavar="DIR",
                            help=f"output directory (default {default}{default_note})")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) is Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _converter(parse: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse``, with its errors shown by argparse after the usage line."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (SpuriousDiagError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, SpuriousDiagError) else str(exc)
            raise argparse.ArgumentTypeError(f"{flag}: {reason}") from None
    convert.__name__ = flag
    return convert


def _help(text: str, default: Any) -> str:
    text = text.replace("%", "%%") if "%%" not in text else text
    if "default" in text or default is None or default is dataclasses.MISSING:
        return text
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{text} (default {shown})"


def add_options(parser: argparse.ArgumentParser, cls: type, *, base: Any = None,
                only: Optional[Iterable[str]] = None, prefix: str = "", dest: str = "") -> None:
    """Add a flag for every command-line field of the options dataclass ``cls`` (module docstring).

    Args:
        base: an instance whose values the help shows as defaults (default: the class's defaults).
        only: add just these fields.
        prefix, dest: for nested options (used by the recursion).
    """
    hints = typing.get_type_hints(cls)
    wanted = set(only) if only is not None else None
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if meta.get("cli", True) is False or (wanted is not None and field.name not in wanted):
            continue
        default = getattr(base, field.name) if base is not None else (
            field.default if field.default is not dataclasses.MISSING else dataclasses.MISSING)
        if dataclasses.is_dataclass(hints[field.name]):
            add_options(parser, hints[field.name], base=default if default is not dataclasses.MISSING else None,
                        prefix=prefix + meta.get("prefix", ""), dest=dest + field.name + _SEP)
            continue
        flag = meta.get("flag") or f"--{prefix}{field.name.replace('_', '-')}"
        kwargs: dict[str, Any] = {"dest": dest + field.name, "default": argparse.SUPPRESS}
        hint, _ = _strip_optional(hints[field.name])
        help_text = meta.get("help", "")
        if hint is bool:
            if default is True:
                parser.add_argument(meta["negative"], action="store_false", help=help_text, **kwargs)
            else:
                parser.add_argument(flag, action="store_true", help=help_text, **kwargs)
            continue
        parse = meta.get("parse") or (hint if hint in (int, float, str) else None)
        if parse is None:
            raise TypeError(f"{cls.__name__}.{field.name}: no command-line parser for {hint}")
        kwargs["type"] = _converter(parse, flag) if parse not in (int, float, str) else parse
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if "choices" not in meta:
            kwargs["metavar"] = meta.get("metavar", {int: "N", float: "X"}.get(hint, field.name.upper()))
        parser.add_argument(flag, help=_help(help_text, default), **kwargs)


def options_from_args(cls: type[T], args: argparse.Namespace, base: Optional[T] = None, *, dest: str = "") -> T:
    """``base`` (default: ``cls()``) with the flags the user gave applied, nested options included.

    Raises:
        UsageError: a value the dataclass refuses.
    """
    given = vars(args)
    current = base if base is not None else cls()
    changes: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.metadata.get("cli", True) is False:
            continue
        if dataclasses.is_dataclass(hints[field.name]):
            inner = options_from_args(hints[field.name], args, getattr(current, field.name), dest=dest + field.name + _SEP)
            if inner != getattr(current, field.name):
                changes[field.name] = inner
        elif dest + field.name in given:
            changes[field.name] = given[dest + field.name]
    return dataclasses.replace(current, **changes) if changes else current
