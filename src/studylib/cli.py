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


# --- form catalogue (studylib.forms) -----------------------------------------------------


@app.command("forms")
def forms_command(
    markdown: bool = typer.Option(False, "--markdown", help="Print the whole catalogue as Markdown documentation."),
    form: Optional[str] = typer.Argument(None, help="One form code (F01..F14) to show in full."),
) -> None:
    """List the 14 registration forms, or show one form's fields."""
    from rich.table import Table

    from studylib.forms import catalogue_markdown, form_catalogue

    cat = form_catalogue()
    if markdown:
        typer.echo(catalogue_markdown(cat), nl=False)
        return
    out = Console()
    if form is None:
        table = Table(title=f"Registration forms (catalogue {cat.version})")
        for col in ("code", "title", "submitted by", "fields"):
            table.add_column(col)
        for f in cat.forms:
            table.add_row(f.code, f.title, ", ".join(f.submitted_by), str(len(cat.fields_of(f.code))))
        out.print(table)
        return
    try:
        chosen = cat.form(form.upper())
    except KeyError as err:
        fail(err.args[0])
    table = Table(title=f"{chosen.code} {chosen.title}: {chosen.purpose}")
    for col in ("field", "type", "codes / format", "required", "personal"):
        table.add_column(col)
    for f in cat.fields_of(chosen.code):
        codes = f.codes if isinstance(f.codes, str) else ", ".join(f.codes or ()) or (f.format or "")
        table.add_row(f.name, f.type, codes, "yes" if f.required else "", "personal" if f.personal else "")
    out.print(table)


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
