"""The command line: ``studylib``. Thin over the packages; nothing imports this module.

Each stage adds its commands in its own section below. A command parses its options,
calls one library function, prints a short summary, and turns a :class:`StudylibError`
into a clear message and a non-zero exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

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
    console.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
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


@app.command("synth")
def synth_command(
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (replaced atomically). Default: the demo's raw folder."),
    persons: Optional[int] = typer.Option(None, "--persons", help="Registered persons in all (the true population is larger). Default: the scenario's."),
    years: Optional[str] = typer.Option(None, "--years", help="Years, e.g. 2015-2024. Default: the scenario's."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; the same seed gives the same bytes."),
    messy: bool = typer.Option(False, "--messy", help="Messy exports: spelling variants, missing values, duplicates, Danish Excel dialects."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Leave the personal-data fields empty (fast, for large runs)."),
    fmt: str = typer.Option("csv", "--format", help="csv or xlsx."),
    profiles: Optional[Path] = typer.Option(None, "--profiles", help="Profile folder (sector profiles and demo.yaml). Default: synthetic_data/profiles."),
    sectors: Optional[str] = typer.Option(None, "--sectors", help="Only these sectors, comma-separated (e.g. au_pair,cleaning)."),
) -> None:
    """Generate synthetic raw form exports with fake personal data, plus a truth/ folder."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from studylib.paths import demo_raw_dir
    from studylib.synthetic import DEFAULT_SEED, SynthOptions, generate
    from studylib.synthetic.generator import STAGES

    try:
        options = SynthOptions(
            out=out or demo_raw_dir(),
            persons=persons,
            years=years,
            seed=DEFAULT_SEED if seed is None else seed,
            messy=messy,
            pii=not no_pii,
            fmt=fmt.lower(),
            profiles=profiles,
            sectors=tuple(s.strip() for s in sectors.split(",") if s.strip()) if sectors else None,
        )
        with Progress(TextColumn("synth: {task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                      transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("starting", total=len(STAGES))

            def advance(stage: str) -> None:
                bar.update(task, description=stage, completed=STAGES.index(stage))

            result = generate(options, progress=advance)
    except StudylibError as err:
        fail(err)
    c = result.counts
    typer.echo(f"wrote {result.out}: {c['registered_persons']} registered of {c['true_persons']} true persons, "
               f"{sum(c['records'].values())} records in 14 form files (truth/ is for validation only)")

# --- ingest and keys (studylib.forms, studylib.privacy) ------------------------------------

key_app = typer.Typer(help="Secret keys for pseudonymisation (HMAC-SHA256 person tokens).", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("new")
def key_new_command(
    path: Optional[Path] = typer.Argument(None, help="Where to write the key (a new file; never overwritten). With --demo: the demo key by default."),
    demo: bool = typer.Option(False, "--demo", help="A key for synthetic data only (marked so inside; its file name must say DEMO)."),
) -> None:
    """Make a new key: 32 random bytes, file mode 600. Keep it away from the data."""
    from studylib.paths import demo_key_file
    from studylib.privacy.tokens import new_key

    if path is None:
        if not demo:
            fail("give the PATH of the new key file (or --demo for the demo key of synthetic data)")
        path = demo_key_file()
        path.parent.mkdir(parents=True, exist_ok=True)
    if demo and "demo" not in path.name.lower():
        fail(f"{path}: a demo key's file name must contain DEMO, so nobody mistakes it for a real key")
    try:
        new_key(path, demo=demo)
    except StudylibError as err:
        fail(err)
    console.print(f"key written to {path} (mode 600)" + (" [bold]for synthetic data only[/bold]" if demo else "; keep it away from the data and back it up"))


@key_app.command("check")
def key_check_command(
    path: Optional[Path] = typer.Argument(None, help="The key file (default: env STUDYLIB_KEY_FILE).", envvar="STUDYLIB_KEY_FILE", show_envvar=True),
    data: Optional[Path] = typer.Option(None, "--data", help="A dataset folder: check that the key is the one it was ingested with."),
) -> None:
    """Show a key's fingerprint (never the key) and, with --data, whether the dataset was made with it.

    Exit 2 when the key cannot be read or is not the dataset's key: the output audit on that dataset would refuse to publish."""
    import warnings

    from studylib.privacy.pseudonymiser import Pseudonymiser, audit_key_check

    if path is None and data is None:
        fail("give the key file PATH (or set STUDYLIB_KEY_FILE), and --data DATASET to check it against a dataset")
    try:
        if path is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                key = Pseudonymiser.from_key_file(path)
            for w in caught:
                console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
            console.print(f"{path}: fingerprint {key.fingerprint}" + (" (demo key: synthetic data only)" if key.demo else ""), highlight=False)
        if data is not None:
            checked = audit_key_check(data, path)
            if checked.full:
                console.print(f"[green]{data}: made with this key[/green]" + (" (demo data)" if checked.demo else ""), highlight=False)
            else:
                console.print(f"{data}: demo data; without a key the audit does not look for the key, tokens and names", highlight=False)
    except StudylibError as err:
        fail(err)


@app.command("ingest")
def ingest_command(
    raw_dirs: list[Path] = typer.Argument(..., help="Folder(s) of raw form exports (F01_outreach.csv, ...); several folders are ingested in order."),
    out: Path = typer.Option(..., "--out", "-o", help="The dataset folder to write (replaced as a whole)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", envvar="STUDYLIB_KEY_FILE", help="The secret key (or env STUDYLIB_KEY_FILE)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first problem instead of quarantining rejected rows."),
    append: bool = typer.Option(False, "--append", help="Add these exports to the dataset already at --out (same key)."),
    export_date: Optional[str] = typer.Option(None, "--export-date", metavar="YYYY-MM-DD",
                                              help="The day the exports were made (default today): a later date is rejected per row."),
) -> None:
    """Validate, link and pseudonymise raw form exports into a dataset.

    Rejected rows (each named by file, row and column) go to RAW_DIR/quarantine/ and the ingest report; a file that cannot be used stops the ingest and nothing is written.

    Outputs: the dataset at --out, its linkage state (OUT.linkage, sealed with the key) and deny list (OUT.denylist), both beside it and never to be shared."""
    import warnings
    from datetime import date

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from studylib.forms.ingest import check_key_location, ingest
    from studylib.privacy.pseudonymiser import Pseudonymiser

    if key_file is None:
        fail("no key: give --key-file PATH or set STUDYLIB_KEY_FILE (make a key with `studylib key new PATH`)")
    day = None
    if export_date is not None:
        try:
            day = date.fromisoformat(export_date)
        except ValueError:
            fail(f"--export-date {export_date!r}: not a date; write it YYYY-MM-DD")
    try:
        check_key_location(key_file, out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            key = Pseudonymiser.from_key_file(key_file)
        for w in caught:
            console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
        if key.demo:
            console.print(f"[yellow]warning:[/yellow] {key_file} is a demo key: use it for synthetic data only", highlight=False)
        with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                label = "reading" if stage.startswith("reading") else stage
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=max(total, 1))
                bar.update(tasks[label], completed=done, total=max(total, 1), description=stage[:32])

            result = ingest(raw_dirs, out, key, strict=strict, append=append, export_date=day, progress=progress)
    except StudylibError as err:
        fail(err)
    except OSError as err:  # reading a key or export the system refuses: one line, not a traceback
        fail(f"{err.filename or out}: {err.strerror or err}")
    report = result.report
    d, r = report["dataset"], report["rejected"]
    console.print(f"[green]dataset written:[/green] {result.dataset_dir} ({d['persons']} persons, {d['events']} events, "
                  f"{d['cases']} cases; {report['records_added']} records added)", highlight=False)
    if r["rows"]:
        console.print(f"[yellow]{r['rows']} rows rejected[/yellow]; they are in the quarantine: "
                      + ", ".join(str(p) for p in result.quarantine_files), highlight=False)
    k = report["linkage"]
    console.print(f"linkage: {k['records']} records -> {k['persons']} persons; conflicts: "
                  + (", ".join(f"{n} {c}" for n, c in k.get("persons_with_conflicts", {}).items() if c) or "none"), highlight=False)
    console.print(f"report: {result.dataset_dir / 'ingest_report.md'}", highlight=False)

# --- disclosure audit (studylib.privacy) ---------------------------------------------------


@app.command("audit")
def audit_command(
    report: Path = typer.Argument(..., help="A report file (.ipynb, .html, .pdf) or a folder of them."),
    min_cell: int = typer.Option(5, "--min-cell", help="The study's minimum cell: counts from 1 to N-1 may not be published."),
    deny_list: Optional[Path] = typer.Option(None, "--deny-list", envvar="STUDYLIB_DENY_LIST", help="Deny list written by ingest (keyed hashes of names); needs the key."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", envvar="STUDYLIB_KEY_FILE", help="The pseudonymisation key: checks that it, and deny-listed names, appear nowhere."),
) -> None:
    """Check a report before publication: markers on tables and figures, small counts, personal data, key, tokens, names.

    Exit 0 when nothing is found, 1 with one line per finding, 2 when the audit cannot run.
    """
    from studylib.privacy.audit import audit_path

    if deny_list is not None and key_file is None:
        fail("the deny list holds keyed hashes: give --key-file too (or set STUDYLIB_KEY_FILE)")
    try:
        result = audit_path(report, min_cell=min_cell, deny_list=deny_list, key=key_file)
    except StudylibError as err:
        fail(err)
    for finding in result.findings:
        typer.echo(str(finding))
    checked = ", ".join(["markers", "small counts", "personal data", "tokens"]
                        + (["key"] if result.key_checked else []) + (["deny list"] if result.deny_list_checked else []))
    if result.passed:
        console.print(f"[green]audit passed:[/green] {len(result.files)} file(s), min cell {min_cell} ({checked})", highlight=False, soft_wrap=True)
        return
    console.print(f"[bold red]audit failed:[/bold red] {len(result.findings)} finding(s) in {len(result.files)} file(s) ({checked})", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


# --- studies and reports (studylib.runner) -------------------------------------------------


def _project_folder(name: str) -> Path:
    from studylib import paths

    return paths.project_root() / name


def _study_files(studies: list[str], run_all: bool, studies_dir: Path) -> list[Path]:
    from studylib.runner.study import find_studies

    if run_all:
        return find_studies(studies_dir)
    files = []
    for s in studies:
        path = Path(s)
        if not path.suffix and not path.exists():
            path = studies_dir / f"{s}.yaml"  # a study id
        files.append(path)
    return files


@app.command("run")
def run_command(
    studies: list[str] = typer.Argument(None, help="Study files (studies/<id>.yaml) or study ids."),
    run_all: bool = typer.Option(False, "--all", help="Run every study in the studies folder."),
    force: bool = typer.Option(False, "--force", help="Run even reports that are unchanged since their last good run."),
    workers: int = typer.Option(1, "--workers", min=1, help="Kernels running at the same time on this machine (exports run behind them)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Dask scheduler address (workers share the file system)."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="Reports folder (default: reports/ of the project)."),
    studies_dir: Optional[Path] = typer.Option(None, "--studies", help="Studies folder (default: studies/ of the project)."),
    state: Optional[Path] = typer.Option(None, "--state", help="The runner's private state: the release ledgers of what was published (default: .studylib-state/ beside the reports folder; never publish it)."),
    parameter: list[str] = typer.Option([], "--parameter", "-p", help="KEY=VALUE (VALUE read as YAML): set a template parameter for every study of this run, as papermill's -p; checked against the template. The next run without it makes the reports as the study files say."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every study and say which reports would run and why; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcomes as JSON (one object) instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines; only the summary (and errors)."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Append one line per report outcome (time, report, status, seconds, message) to this file."),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="Write each report's notebook with its parameters injected, not executed (papermill's --prepare-only), into --out, to run in JupyterLab; run nothing else."),
    out: Path = typer.Option(Path("prepared"), "--out", help="Folder for --prepare-only notebooks (<study>.ipynb, <study>/<combination>.ipynb)."),
) -> None:
    """Run studies: execute, export HTML and PDF, audit, protect the release, publish into reports/.

    Every table of the batch is protected together with every table already published from the same dataset: a report whose tables would let a reader work out a small count from another report is run again with more cells hidden, or refused.

    Exit codes: 0 every report published or current; 1 a report failed, was refused or a study file is invalid; 2 the command line is wrong (or the cluster cannot be reached); 128+N cancelled by signal N (nothing half-published).

    On this machine the kernels are forked from one process that has loaded the libraries once (STUDYLIB_KERNEL_FORK=0 launches each kernel on its own), and PDFs and audits are made in a helper process while the next kernels run.
    """
    import logging

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from studylib import paths
    from studylib.runner.batch import BatchSettings, run_batch

    if not studies and not run_all:
        fail("name one or more studies, or use --all")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # nbclient's pending-task noise after a dead kernel
    studies_dir = (studies_dir or _project_folder("studies")).resolve()
    overrides = _overrides(parameter)
    if cluster:
        _check_cluster(cluster)
    settings = BatchSettings(
        reports=(reports or paths.reports_dir()).resolve(), force=force, workers=workers, cluster=cluster, studies_dir=studies_dir,
        state=state.resolve() if state else None, overrides=overrides,
    )
    files = _study_files(studies or [], run_all, studies_dir)
    if not files:
        fail(f"no study files in {studies_dir}")
    if dry_run:
        _dry_run(files, settings, as_json)
        return
    if prepare_only:
        _prepare_only(files, settings, out, as_json)
        return
    colour = {"published": "green", "skipped": "cyan", "failed": "red", "invalid": "red", "cancelled": "yellow"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=quiet or as_json) as bar:
        task = bar.add_task("studies", total=None)
        running: set[str] = set()

        def progress(key: str, outcome) -> None:
            if outcome is None:
                running.add(key)
            else:
                running.discard(key)
                bar.advance(task)
                if log_file is not None:
                    _log_outcome(log_file, outcome)
                if quiet or as_json:
                    return
                bar.console.print(f"[{colour.get(outcome.status, 'white')}]{outcome.status:>9}[/] {key}  {outcome.seconds:.1f} s", highlight=False)
            bar.update(task, description="running: " + (", ".join(sorted(running))[:60] or "-"))

        result = run_batch(files, settings, progress)
    if as_json:
        import json as _json

        print(_json.dumps({"ok": result.ok, "signal": result.signal, "index": str(result.index), "executor": cluster or "local",
                           "outcomes": [o.__dict__ for o in result.outcomes]}, indent=1, default=str))
        if result.signal is not None:
            raise typer.Exit(128 + result.signal)
        raise typer.Exit(0 if result.ok else 1)
    table = Table(title=f"studylib run ({'cluster ' + cluster if cluster else f'this machine, {workers} kernel(s) at once'})")
    for col in ("report", "status", "seconds", "message (published: information lost to disclosure control)"):
        table.add_column(col, overflow="fold")
    for o in result.outcomes:
        message = escape(o.message.removeprefix(f"{o.key}: published (").rstrip(")") if o.status == "published" else o.message)
        table.add_row(escape(o.key), f"[{colour.get(o.status, 'white')}]{o.status}[/]", f"{o.seconds:.1f}", message)
    Console().print(table)
    Console().print(f"index: {result.index}", highlight=False, soft_wrap=True)
    if result.signal is not None:
        console.print(f"[yellow]cancelled by signal {result.signal}[/yellow]: nothing was half-published")
        raise typer.Exit(128 + result.signal)
    if not result.ok:
        raise typer.Exit(1)


def _overrides(pairs: list[str]) -> dict:
    """``-p KEY=VALUE`` pairs as parameters (values read as YAML: 4 is a number, none is null)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            fail(f"-p {pair!r}: write KEY=VALUE, e.g. -p sector=cleaning -p year_to=2024")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as err:
            fail(f"-p {pair!r}: the value is not valid YAML ({err})")
    return out


def _check_cluster(address: str, seconds: float = 5.0) -> None:
    """One clear line and exit 2 when the Dask scheduler cannot be reached (instead of a 30 s wait and a traceback)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        console.print(f"[red]error:[/red] --cluster {address!r}: give the scheduler's address as tcp://HOST:PORT", highlight=False)
        raise typer.Exit(2)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=seconds).close()
    except OSError as err:
        console.print(f"[red]error:[/red] --cluster {address}: no Dask scheduler answers there ({err.strerror or err}); "
                      "start one (dask scheduler) or check the address", highlight=False)
        raise typer.Exit(2)


def _dry_run(files, settings, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from studylib.runner.batch import plan_batch

    plan = plan_batch(files, settings)
    rows = [(r.key, "would run", plan.reasons.get(r.key, "")) for r in plan.run]
    rows += [(o.key, "current" if o.status == "skipped" else o.status, o.message) for o in plan.done]
    if as_json:
        import json as _json

        print(_json.dumps([{"report": k, "plan": p, "why": w} for k, p, w in rows], indent=1))
        return
    table = Table(title="studylib run --dry-run (nothing was run)")
    for col in ("report", "plan", "why"):
        table.add_column(col, overflow="fold")
    for key, what, why in rows:
        table.add_row(escape(key), what, escape(why))
    Console().print(table)


def _prepare_only(files, settings, out: Path, as_json: bool) -> None:
    """Every report of these studies as a parameterised notebook (checked as a run would check it); exit 1 if a study is invalid."""
    from dataclasses import replace

    from studylib.runner.batch import plan_batch
    from studylib.runner.render import prepare_notebook

    plan = plan_batch(files, replace(settings, force=True))
    rows = []
    for report in plan.run:
        try:
            rows.append({"report": report.key, "notebook": str(prepare_notebook(report, out)), "problem": ""})
        except (StudylibError, OSError) as err:
            rows.append({"report": report.key, "notebook": "", "problem": str(err)})
    rows += [{"report": o.key, "notebook": "", "problem": o.message} for o in plan.done]
    if as_json:
        import json as _json

        print(_json.dumps(rows, indent=1))
    else:
        for row in rows:
            if row["notebook"]:
                console.print(f"[green]prepared[/green] {escape(row['report'])}: {escape(row['notebook'])}", highlight=False, soft_wrap=True)
            else:
                console.print(f"[red]not prepared[/red] {escape(row['report'])}: {escape(row['problem'])}", highlight=False, soft_wrap=True)
    if any(row["problem"] for row in rows):
        raise typer.Exit(1)


def _log_outcome(path: Path, outcome) -> None:
    from datetime import datetime, timezone

    line = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\t{outcome.key}\t{outcome.status}\t{outcome.seconds:.1f}\t{outcome.message}\n"
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)


@app.command("render")
def render_command(
    notebook: Path = typer.Argument(..., help="An executed notebook (e.g. the output of plain papermill, or one run in JupyterLab)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for NAME.html and NAME.pdf (default: beside the notebook)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The dataset the notebook read (default: its papermill data_dir parameter, else the demo dataset): the audit uses its key and deny list."),
    min_cell: int = typer.Option(5, "--min-cell", help="The minimum cell the audit holds the notebook to."),
    fmt: str = typer.Option("html,pdf", "--format", help="html, pdf or html,pdf."),
    title: Optional[str] = typer.Option(None, "--title", help="The report title (default: from the notebook's name)."),
) -> None:
    """Render an executed notebook in the house style (HTML page and PDF), after the disclosure audit the runner uses.

    Exit codes: 0 written; 1 the audit found something (nothing written); 2 the notebook cannot be rendered (not a notebook, not executed, no dataset).
    """
    from studylib.runner.render import RenderRefused, render_notebook

    formats = tuple(f.strip().lower() for f in fmt.split(",") if f.strip())
    try:
        rendered = render_notebook(notebook, out, data=data, min_cell=min_cell, formats=formats, title=title)
    except RenderRefused as err:
        for finding in err.findings:
            typer.echo(finding)
        fail(err, code=1)
    except (StudylibError, OSError) as err:
        fail(err)
    for path in rendered.files.values():
        console.print(f"[green]written[/green] {escape(str(path))}", highlight=False, soft_wrap=True)


@app.command("data-dictionary")
def data_dictionary_command() -> None:
    """Print the data dictionary of the pseudonymised dataset (Markdown, made from the schemas; docs/data-dictionary.md)."""
    from studylib.data.dictionary import data_dictionary_markdown

    print(data_dictionary_markdown())


@app.command("list")
def list_command(
    reports: Optional[Path] = typer.Option(None, "--reports", help="Reports folder (default: reports/ of the project)."),
    studies_dir: Optional[Path] = typer.Option(None, "--studies", help="Studies folder (default: studies/ of the project)."),
) -> None:
    """List the studies, their templates and the state of their reports."""
    from rich.markup import escape
    from rich.table import Table

    from studylib import paths
    from studylib.runner.publish import report_state
    from studylib.runner.study import find_studies, read_study, reports_of

    reports = reports or paths.reports_dir()
    studies_dir = studies_dir or _project_folder("studies")
    table = Table(title=f"Studies in {studies_dir}")
    for col in ("id", "title", "template", "reports", "status", "last success"):
        table.add_column(col, overflow="fold")
    for file in find_studies(studies_dir):
        try:
            study = read_study(file)
        except StudylibError as err:
            table.add_row(file.stem, "", "", "", "[red]invalid[/red]", escape(str(err).splitlines()[-1].strip()))
            continue
        states = [report_state(reports, r.key, r.title) for r in reports_of(study)]
        statuses = sorted({s.status for s in states})
        last = max((s.last_success or "" for s in states), default="") or "-"
        table.add_row(study.id, escape(study.title), study.template.name, str(len(states)), ", ".join(statuses), last)
    Console().print(table)


@app.command("prune")
def prune_command(
    yes: bool = typer.Option(False, "--yes", help="Remove them (without it: only say what would be removed)."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="Reports folder (default: reports/ of the project)."),
    studies_dir: Optional[Path] = typer.Option(None, "--studies", help="Studies folder (default: studies/ of the project)."),
    state: Optional[Path] = typer.Option(None, "--state", help="The runner's private state (default: .studylib-state/ beside the reports folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the orphans and what is removed as JSON."),
) -> None:
    """Remove the reports whose study (or matrix combination) is gone; without --yes, only say what would go.

    A report is an orphan when no study file makes it any more (the index marks it "orphaned"); a study file that cannot be read keeps its reports. Pruning removes the report folder, its failure record and the kept notebook and log of its run from the staff area; its release ledger moves to the history, since it was published: later releases stay protected against it.

    Exit codes: 0 done (or nothing to prune); 2 the studies folder has no study files (nothing is judged without them) or a report is locked by a run.
    """
    import json as _json

    from rich.markup import escape
    from rich.table import Table

    from studylib import paths
    from studylib.runner.batch import write_index
    from studylib.runner.lock import LockBusy
    from studylib.runner.orphans import find_orphans, prune
    from studylib.runner.study import find_studies

    reports = (reports or paths.reports_dir()).resolve()
    studies_dir = (studies_dir or _project_folder("studies")).resolve()
    state = state.resolve() if state else None
    if not find_studies(studies_dir):
        fail(f"no study files in {studies_dir}: prune judges reports against the study files (give --studies DIR)")
    orphans = find_orphans(reports, studies_dir, state)
    removed: list[str] = []
    if yes and orphans:
        try:
            removed = prune(orphans, reports, state)
        except (LockBusy, OSError) as err:
            fail(err)
        write_index(reports, studies_dir, state)
    if as_json:
        print(_json.dumps({"removed": bool(yes), "orphans": [{"report": o.key, "study": o.study, "why": o.why, "removes": o.removes()}
                                                          for o in orphans]}, indent=1))
        return
    if not orphans:
        console.print(f"nothing to prune: every report in {reports} is made by a study in {studies_dir}", highlight=False)
        return
    table = Table(title="studylib prune: " + ("removed" if yes else "would remove (dry run; --yes removes)"))
    for col in ("report", "why", "what goes"):
        table.add_column(col, overflow="fold")
    for o in orphans:
        table.add_row(escape(o.key), escape(o.why), escape("\n".join(o.removes()) or "-"))
    Console().print(table)
    if not yes:
        console.print(f"dry run: nothing was removed; `studylib prune --yes` removes these {len(orphans)} report(s)", highlight=False)


@app.command("inspect")
def inspect_command(template: str = typer.Argument(..., help="A template notebook (path, or name in templates/).")) -> None:
    """Show a template's parameters: name, type, default and help."""
    from rich.markup import escape
    from rich.table import Table

    from studylib.runner.template import template_parameters

    path = Path(template)
    if not path.exists():
        path = _project_folder("templates") / (template if template.endswith(".ipynb") else f"{template}.ipynb")
    try:
        declared = template_parameters(path)
    except StudylibError as err:
        fail(escape(str(err)))
    table = Table(title=f"Parameters of {path.name}")
    for col in ("name", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for p in declared.values():
        table.add_row(*(escape(x) for x in (p.name, p.inferred_type_name, p.default, p.help)))
    Console().print(table)


@app.command("new-study")
def new_study_command(
    study_id: str = typer.Argument(..., help="The new study's id (lower-case snake_case; also its file name)."),
    template: str = typer.Option("sector_study", "--template", help="Template (path, or name in templates/)."),
    title: Optional[str] = typer.Option(None, "--title", help="The report title."),
    data: str = typer.Option("demo", "--data", help="Dataset folder relative to the study file, or 'demo'."),
    studies_dir: Optional[Path] = typer.Option(None, "--studies", help="Studies folder (default: studies/ of the project)."),
) -> None:
    """Write studies/<id>.yaml for a template, listing its parameters; then edit and run it."""
    import os
    import re

    from rich.markup import escape

    from studylib.data.atomic import write_file
    from studylib.runner.study import new_study_text, read_study
    from studylib.runner.template import template_parameters

    if not re.fullmatch(r"[a-z][a-z0-9_]*", study_id):
        fail(f"study id {study_id!r}: use lower-case letters, digits and _ (starting with a letter)")
    studies_dir = (studies_dir or _project_folder("studies")).resolve()
    path = Path(template)
    if not path.exists():
        path = _project_folder("templates") / (template if template.endswith(".ipynb") else f"{template}.ipynb")
    target = studies_dir / f"{study_id}.yaml"
    if target.exists():
        fail(f"{target} exists already; edit it, or choose another id")
    try:
        declared = template_parameters(path)
        relative = os.path.relpath(path.resolve(), studies_dir)
        text = new_study_text(study_id, title or study_id.replace("_", " ").capitalize(), relative, data, declared)
        studies_dir.mkdir(parents=True, exist_ok=True)
        write_file(target, text)
        try:
            read_study(target)
        except StudylibError as err:
            console.print(f"[yellow]note:[/yellow] {escape(str(err))}", highlight=False)
    except StudylibError as err:
        fail(escape(str(err)))
    typer.echo(f"wrote {target}")


# --- demo: the whole flow on synthetic data ------------------------------------------------


@app.command("demo")
def demo_command(
    force: bool = typer.Option(False, "--force", help="Rebuild the demo dataset even when it is up to date."),
) -> None:
    """Make the demo dataset: synthetic raw exports, a demo key, ingest (skipped when up to date)."""
    from studylib.demo import ensure_demo_dataset

    try:
        with console.status("demo dataset") as status:
            path = ensure_demo_dataset(force=force, progress=lambda message: status.update(message))
    except StudylibError as err:
        fail(err)
    console.print(f"demo dataset: {path}", highlight=False)


# --- training: exercises for students (studylib.training) -----------------------------------

training_app = typer.Typer(help="Training on synthetic cases: exercise cohorts for students and the lesson notebooks.",
                           no_args_is_help=True)
app.add_typer(training_app, name="training")


@training_app.command("cohort")
def training_cohort_command(
    students: int = typer.Option(..., "--students", "-n", help="How many students (each gets different cases)."),
    cases: int = typer.Option(10, "--cases", "-m", help="Cases per student."),
    seed: int = typer.Option(..., "--seed", help="The cohort's seed: the same seed makes the same cohort again."),
    out: Path = typer.Option(..., "--out", "-o", help="The cohort folder to write (new or empty, or a cohort with --overwrite)."),
    language: str = typer.Option("en", "--language", help="Language of the vignettes: en (English) or da (Danish)."),
    child_share: float = typer.Option(0.2, "--child-share", help="Share of cases drawn as children of 12-17, besides the minors the profiles draw."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing cohort folder."),
) -> None:
    """Make one exercise set per student (a notebook and a vignette file) and the teacher's key.

    DIR/students/student_NNN/ holds exercises.ipynb and vignettes.md, to hand out; DIR/teacher/
    holds key.md, key.csv and key.json, to keep. All cases are synthetic.
    """
    from studylib.training.cohort import make_cohort

    try:
        result = make_cohort(out, students=students, cases=cases, seed=seed, language=language,
                             child_share=child_share, overwrite=overwrite)
    except StudylibError as err:
        fail(err)
    typer.echo(f"wrote {result.out}: {result.students} students x {result.cases} cases; "
               f"hand out students/student_NNN/, keep teacher/ (the key) to yourself")


@training_app.command("notebooks")
def training_notebooks_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write student/ and teacher/ into."),
    source: Optional[Path] = typer.Option(None, "--source", help="Folder of lesson sources (default: notebooks/source of the project)."),
    version: Optional[str] = typer.Option(None, "--version", help="Only one version: student or teacher (default: both)."),
) -> None:
    """Build the lesson notebooks from their sources: OUT/student/ (no solutions) and OUT/teacher/."""
    from studylib.training.lessons import VERSIONS, build_lessons

    if version is not None and version not in VERSIONS:
        fail(f"--version must be one of {', '.join(VERSIONS)}, not {version!r}")
    try:
        written = build_lessons(out, source, versions=(version,) if version else VERSIONS)
    except (StudylibError, FileNotFoundError) as err:
        fail(err)
    typer.echo(f"wrote {len(written)} notebooks into {out}")


# --- data exchange: exports for others, CTDC import (studylib.exchange) ---------------------

export_app = typer.Typer(help="Exports for others: the release's published tables, case-level HTCDS data.", no_args_is_help=True)
app.add_typer(export_app, name="export")
import_app = typer.Typer(help="Import data from others into a studylib dataset.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@export_app.command("htcds")
def export_htcds_command(
    data: Path = typer.Option(..., "--data", help="The dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The CSV file to write (its metadata goes beside it as .json)."),
    k: Optional[int] = typer.Option(None, "--k", min=2, help="Every combination of the quasi-identifiers holds at least k cases (default 11, as CTDC)."),
) -> None:
    """Case-level data in HTCDS v2 field names for research partners: k-anonymous, fresh random case tokens (two exports cannot be joined)."""
    from studylib.exchange.htcds_export import write_htcds_export

    try:
        path, meta = write_htcds_export(data, out, k)
    except StudylibError as err:
        fail(err)
    loss = meta["information_loss"]
    console.print(f"[green]wrote {path}[/green] (k {meta['k']} asked, {meta['k_achieved']} achieved; precision lost "
                  f"{loss['precision_lost']:.0%}, removed {loss['removed_share']:.1%}); information lost: {path.with_suffix('.json')}", highlight=False)


@export_app.command("aggregates")
def export_aggregates_command(
    out: Path = typer.Option(..., "--out", "-o", help="The folder to write (aggregates.xlsx, csv/, aggregates.json)."),
    study: Optional[str] = typer.Option(None, "--study", help="One study's published reports."),
    release: bool = typer.Option(False, "--release", help="Every published report."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="Reports folder (default: reports/ of the project)."),
    state: Optional[Path] = typer.Option(None, "--state", help="The runner's private state holding the ledgers (default: beside the reports)."),
) -> None:
    """The published tables as CSV and XLSX with their disclosure metadata, read from the release ledger (nothing counted again)."""
    from studylib import paths
    from studylib.exchange.aggregates import release_tables, write_aggregates
    from studylib.runner.release import default_state

    if (study is None) == (not release):
        fail("give --study ID or --release (one of the two)")
    reports = (reports or paths.reports_dir()).resolve()
    try:
        tables = release_tables(reports, (state or default_state(reports)).resolve(), study)
        written = write_aggregates(tables, out, f"study {study}" if study else "the release")
    except StudylibError as err:
        fail(err)
    console.print(f"[green]wrote {written}[/green]: {len(tables)} tables (aggregates.xlsx, csv/, aggregates.json)", highlight=False)


@export_app.command("synthetic")
def export_synthetic_command(
    data: Path = typer.Option(..., "--data", help="The dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The CSV file to write (its metadata goes beside it as .json)."),
    years: str = typer.Option(..., "--years", metavar="FROM-TO", help="The years the file covers, e.g. 2015-2024 (the domain is fixed before the data are read)."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="The privacy budget of the whole file (default 1.0)."),
) -> None:
    """Synthetic microdata under differential privacy (noisy marginals), epsilon stated; prints its utility for the staff."""
    from studylib.exchange.synthetic_export import write_synthetic_export

    first, _, last = years.partition("-")
    if not (first.isdigit() and last.isdigit()):
        fail(f"--years {years!r}: write FROM-TO, e.g. 2015-2024")
    try:
        path, meta, utility = write_synthetic_export(data, out, epsilon, (int(first), int(last)))
    except StudylibError as err:
        fail(err)
    console.print(f"[green]wrote {path}[/green] (epsilon {meta['epsilon']}, {meta['epsilon_per_marginal']:.3g} per marginal)", highlight=False)
    console.print("utility, largest error of a synthetic count on each two-way table (for you, not for the partner): "
                  + ", ".join(f"{name} {error}" for name, error in utility.items()), highlight=False, soft_wrap=True)


@import_app.command("ctdc")
def import_ctdc_command(
    file: Path = typer.Argument(..., help="A CTDC-style public file (CSV or XLSX), or a studylib HTCDS export."),
    out: Path = typer.Option(..., "--out", "-o", help="The dataset folder to write (new, or an older dataset replaced as a whole)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", envvar="STUDYLIB_KEY_FILE", help="The secret key for the person tokens (or env STUDYLIB_KEY_FILE)."),
) -> None:
    """Import a CTDC-style file into a dataset the studies run on; every missing column and unknown code is reported together."""
    from studylib.exchange.ctdc_import import import_ctdc
    from studylib.privacy.pseudonymiser import Pseudonymiser

    if key_file is None:
        fail("no key: give --key-file PATH or set STUDYLIB_KEY_FILE (make a key with `studylib key new PATH`)")
    try:
        result = import_ctdc(file, out, Pseudonymiser.from_key_file(key_file, outputs=[out]))
    except StudylibError as err:
        fail(err)
    console.print(f"[green]dataset written:[/green] {result.dataset_dir} ({result.dialect} columns; citizenship outside "
                  f"studylib's list, imported as XX: {result.outside_vocabulary:.1%} of rows)", highlight=False)



def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
