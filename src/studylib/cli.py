"""The command line: ``studylib``. Thin over the packages; nothing imports this module.

Each stage adds its commands in its own section below. A command parses its options,
calls one library function, prints a short summary, and turns a :class:`StudylibError`
into a clear message and a non-zero exit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from studylib import __version__
from studylib.errors import StudylibError

app = typer.Typer(
    name="studylib",
    help="Publishable sector studies from the registration data of an anti-trafficking centre.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def fail(error: Exception, code: int = 2) -> None:
    """Print an error the user can act on and exit non-zero."""
    console.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"studylib {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """studylib: synth -> ingest -> run -> audit -> publish."""


# --- synthetic data (studylib.synthetic) -------------------------------------------------

# --- ingest and keys (studylib.forms, studylib.privacy) ------------------------------------

# --- disclosure audit (studylib.privacy) ---------------------------------------------------

# --- studies and reports (studylib.runner) -------------------------------------------------

# --- demo: the whole flow on synthetic data ------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
