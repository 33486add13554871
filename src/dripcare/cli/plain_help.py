"""`--help` in plain words (SPEC 9): front-desk staff read `--at DATETIME`, not `<str>`,
`<bool>`, `<list[str]>`, `{PATIENT}` or `[[DIR]]`.

Typer 0.29 prints a Python type beside every option and argument and wraps required
arguments in braces, with no setting to turn either off; these three methods are where
it does so. Typer and Click are pinned (constraints.txt) and tests/acceptance/test_cli_help.py
reads every command's help, so an upgrade that moves them fails loudly."""

from __future__ import annotations

from typer.core import TyperArgument, TyperOption


def _option_shown_as(self, ctx) -> str | None:
    # A flag takes no value; a value shows the command's own word for it (`DATETIME`), if any.
    if self.is_flag or self.count:
        return None
    return self.metavar


def _argument_shown_as(self, ctx) -> str | None:
    return None  # the name (`PATIENT`) and its description say it all


def _argument_in_usage(self) -> str:
    name = self.metavar or self.name.upper()
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def install() -> None:
    TyperOption.display_type_rich = _option_shown_as
    TyperArgument.display_type_rich = _argument_shown_as
    TyperArgument._usage_display_name = _argument_in_usage
