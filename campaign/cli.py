"""The ``campaign`` command: validate, plan, run, inspect, verify, export and publish a campaign.

Spec errors exit with code 2 and no traceback; a failed step exits with 1 and says why; a busy
work directory exits with 3. Heavy science libraries are imported only by steps that run. Names and
messages from a spec, an archive or an exception are printed through ``printable``/``plain``
(ilcampaign.campaign.terminal): never as markup, never with control characters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ilcampaign.campaign.terminal import guard_note, plain, printable

if TYPE_CHECKING:
    from ilcampaign.engine.run.runner import GraphFailed

class CommandLine(typer.Typer):
    """The command set; an archive refused as damaged or crafted (ArchiveError, e.g. a step key that is
    no digest) ends any command with one line and exit code 1, never a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            from ilcampaign.archive.store import ArchiveError

            if not isinstance(exc, ArchiveError):
                raise
            err.print(printable(f"error: {exc}"), markup=False, soft_wrap=True)
            sys.exit(1)


app = CommandLine(
    help="Declarative learning-on-the-fly campaigns for machine-learned potentials of ionic liquids.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="campaign spec (YAML)", show_default=False)]
WorkdirOpt = Annotated[
    Path | None, typer.Option("--workdir", "-w", help="work directory [default: ./campaigns/<campaign.name>]")
]


def _load(path: Path):
    from ilcampaign.campaign.loader import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        raise typer.Exit(2) from None


def _workdir(spec, workdir: Path | None) -> Path:
    return (workdir or Path("campaigns") / spec.campaign.name).resolve()


def _graph(spec, path: Path):
    """The spec's step graph; problems only files or the graph show are located in the spec file
    (errors exit with code 2, warnings are printed)."""
    from ilcampaign.campaign.loader import locate
    from ilcampaign.engine.graph import build_graph
    from ilcampaign.engine.graph.checks import file_problems, graph_problems

    base = path.resolve().parent
    problems = file_problems(spec, base)
    if not problems:
        nodes = build_graph(spec, base=base)
        problems = [*spec.problems(), *graph_problems(spec, nodes, base)]
    located = locate(path, problems) if problems else []
    for problem in located:
        print(problem.format(), file=sys.stderr)
    if any(not problem.warning for problem in located):
        raise typer.Exit(2)
    return nodes


def _archive(workdir: Path):
    from ilcampaign.archive.store import Archive

    return Archive(workdir / "archive")


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec; print nothing but 'ok' when it is valid."""
    loaded = _load(spec)
    out.print(printable(f"ok: {spec} ({loaded.campaign.name}, {len(_graph(loaded, spec))} steps)"), markup=False)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write it to this file instead")] = None,
) -> None:
    """Print the JSON Schema of spec files as written (for editors and the YAML language server)."""
    from ilcampaign.campaign.schema import spec_schema

    text = json.dumps(spec_schema(), indent=2) + "\n"
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"cannot write {output}: {exc.strerror}", markup=False)
        raise typer.Exit(1) from None
    err.print(f"wrote {output}", markup=False)


@app.command("show-spec")
def show_spec(spec: SpecArg) -> None:
    """Print the fully resolved spec: every default filled in, quantities with units."""
    from ilcampaign.campaign.loader import dump_spec
    from ilcampaign.campaign.spec import dispersion

    loaded = _load(spec)
    print(dump_spec(loaded), end="")
    print("# the dispersion each model's training labels contain:")
    models = [("train.initial", dispersion(loaded.reference))]
    models += [(f"{stage.planned.name}.train", stage.dispersion) for stage in loaded.stages()]
    models += [(f"final.{final.final.name}.train", final.dispersion) for final in loaded.final_stages()]
    for name, terms in models:
        print(f"# {name}: {' + '.join(terms) or 'no dispersion'}")


@app.command()
def plan(
    spec: SpecArg,
    workdir: WorkdirOpt = None,
    table: Annotated[bool, typer.Option("--table", help="print the schedule as Table 1 (from the spec alone)")] = False,
) -> None:
    """Show the step graph with each step's state (done / to run / stale) and why."""
    loaded = _load(spec)
    if table:
        _print_schedule(loaded)
        return
    from ilcampaign.engine.graph import state, why

    nodes = _graph(loaded, spec)
    archive = _archive(_workdir(loaded, workdir))
    by_key = {node.key: node.name for node in nodes}
    steps = Table(title=plain(f"{loaded.campaign.name}: {len(nodes)} steps"), title_justify="left")
    for column in ("step", "kind", "key", "state", "inputs", "notes"):
        steps.add_column(column, no_wrap=column in ("step", "key"), overflow="fold")
    styles = {"done": "green", "stale": "yellow", "to run": "cyan"}
    previous_group = None
    for node in nodes:
        current = state(node, archive)
        reason = f" ({why(node, archive, by_key)[0]})" if current == "stale" else ""
        guarded = guard_note(archive.record(node.key)) if current == "done" else ""
        if node.group != previous_group:
            if previous_group is not None:
                steps.add_section()
            steps.add_row(plain(node.group, "bold"), "", "", "", "", "")
        steps.add_row(
            plain(node.name),
            plain(node.step.kind),
            node.key[:8],
            Text.assemble((current, styles[current]), printable(reason)),
            plain(", ".join(node.inputs.values())),
            plain("; ".join(note for note in (node.notes, guarded) if note)),
        )
        previous_group = node.group
    out.print(steps)
    from ilcampaign.campaign.spec.schedule import initial_cost

    out.print(initial_cost(loaded), markup=False)


def _print_schedule(spec) -> None:
    """Table 1 of the spec: what each iteration samples and adds, and the running dataset counts."""
    from ilcampaign.campaign.spec.schedule import initial_cost, table

    rows = table(spec)
    shown = Table(title=f"{spec.campaign.name}: the schedule (Table 1), counts as the spec asks for them",
                  title_justify="left")
    numbers = ("new labels", "reference calls", "train", "valid", "test")
    for column in ("it.", "sampling", "T / K", "conditions", "run", "selection", *numbers):
        shown.add_column(column, overflow="fold", justify="right" if column in numbers else "left")

    def number(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    for row in rows:
        shown.add_row(row.iteration, row.sampling, row.temperature, row.conditions, row.run, row.selection,
                      number(row.new_labels), number(row.calls), number(row.train), number(row.valid),
                      number(row.test))
    out.print(shown)
    last = rows[-1]
    out.print(f"final dataset: {number(last.train)} training, {number(last.valid)} validation, "
              f"{number(last.test)} test configurations; {number(sum(r.calls or 0 for r in rows))} reference "
              "calculations", markup=False)
    out.print(initial_cost(spec), markup=False)
    for row in rows:
        for note in row.notes:
            out.print(f"  {row.iteration}: {note}", markup=False)


@app.command("why")
def why_cmd(spec: SpecArg, step: Annotated[str, typer.Argument(help="step name or key prefix")], workdir: WorkdirOpt = None) -> None:
    """Explain why a step would run: which fields or inputs changed since it last finished."""
    from ilcampaign.engine.graph import why

    loaded = _load(spec)
    nodes = _graph(loaded, spec)
    matches = [n for n in nodes if n.name == step or n.key.startswith(step)]
    if not matches:
        err.print(printable(f"no step named {step!r}; steps: {', '.join(n.name for n in nodes)}"), markup=False)
        raise typer.Exit(2)
    archive = _archive(_workdir(loaded, workdir))
    by_key = {node.key: node.name for node in nodes}
    reasons = why(matches[0], archive, by_key)
    out.print(printable(f"{matches[0].name} ({matches[0].key[:12]}): " + ("done" if not reasons else "would run")),
              markup=False)
    for reason in reasons:
        out.print(printable(f"  - {reason}"), markup=False)


@app.command()
def run(
    spec: SpecArg,
    workdir: WorkdirOpt = None,
    workers: Annotated[int | None, typer.Option(
        help="parallel local worker processes (default: the spec's execution.workers, else 1)")] = None,
    parsl: Annotated[Path | None, typer.Option(
        help="run tasks through Parsl with this config file (YAML or .py; see specs/parsl/)")] = None,
) -> None:
    """Run every step that is not done, in dependency order, independent steps at the same time;
    a killed run continues where it stopped. What the science libraries print goes to
    <workdir>/campaign.log; the terminal shows progress and the outcome."""
    from ilcampaign.campaign.terminal import progress_display, third_party_output_to_log
    from ilcampaign.engine.graph.manifest import campaign_manifest
    from ilcampaign.engine.run.runner import GraphFailed, LockedError, run_graph
    from ilcampaign.engine.step import StepFailed

    loaded = _load(spec)
    nodes = _graph(loaded, spec)
    manifest = campaign_manifest(loaded, spec, nodes)
    directory = _workdir(loaded, workdir)
    with third_party_output_to_log(directory) as terminal:
        workers, executor = _executor(loaded, spec, directory, workers, parsl, terminal)
        try:
            with progress_display(terminal) as progress:
                resources = {kind: needs.model_dump() for kind, needs in loaded.execution.resources.items()}
                ran = run_graph(nodes, directory, workers, progress, manifest, executor=executor,
                                resources=resources)
        except LockedError as exc:
            terminal.print(printable(f"refused: {exc}"), markup=False)
            raise typer.Exit(3) from None
        except StepFailed as exc:
            terminal.print(printable(f"step failed: {exc}"), markup=False, soft_wrap=True)
            terminal.print(f"finished work is kept in {directory}; fix the spec or the cause and run again",
                           markup=False)
            raise typer.Exit(1) from None
        except GraphFailed as exc:
            _report_failures(exc, directory, terminal)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            terminal.print("interrupted: finished tasks are kept; run the same command again to continue")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug or an unforeseen failure: keep the traceback, show one line
            import traceback

            log = directory / "error.log"
            log.write_text(traceback.format_exc())
            terminal.print(printable(f"error: {type(exc).__name__}: {exc}"), markup=False, soft_wrap=True)
            terminal.print(f"the traceback is in {log}; finished work is kept in {directory}", markup=False)
            raise typer.Exit(1) from None
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
    out.print(printable(f"ran {len(ran)} step(s); archive: {directory / 'archive'}"), markup=False)
    _print_status(directory, nodes)


@app.command()
def rehearse(
    spec: SpecArg,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", "-w", help="work directory [default: ./campaigns/<campaign.name>-rehearsal]")] = None,
    pairs: Annotated[int, typer.Option(help="formula units of the rehearsal's system box")] = 2,
    workers: Annotated[int, typer.Option(help="parallel local worker processes")] = 2,
    parsl: Annotated[Path | None, typer.Option(
        help="a Parsl configuration: flag tasks of the real campaign longer than its executors' walltime "
             "[default: the spec's execution.config]")] = None,
) -> None:
    """Run the spec's whole step graph in miniature (a few ion pairs, short runs, tiny models, a fast
    stand-in reference with the real one's dispersion), then its report: every step kind and wiring
    runs as in `campaign run`, in minutes. Writes rehearsal.md and rehearsal.json (what was scaled,
    each step's outcome, what the guards did); exit 1 if a step failed."""
    from ilcampaign.campaign.rehearsal.forecast import forecast, markdown
    from ilcampaign.campaign.rehearsal.outcome import write
    from ilcampaign.campaign.rehearsal.run import rehearse as run_rehearsal
    from ilcampaign.campaign.rehearsal.run import write_report
    from ilcampaign.campaign.terminal import progress_display, third_party_output_to_log
    from ilcampaign.engine.run.runner import LockedError

    loaded = _load(spec)
    real = _graph(loaded, spec)  # the full-scale checks come first
    directory = workdir.resolve() if workdir else Path("campaigns").resolve() / f"{loaded.campaign.name}-rehearsal"
    with third_party_output_to_log(directory) as terminal:
        terminal.print(f"rehearsing {len(real)} steps on {pairs} formula units in {directory}", markup=False)
        try:
            with progress_display(terminal) as progress:
                done = run_rehearsal(loaded, spec, real, directory, pairs=pairs, workers=workers, progress=progress)
        except LockedError as exc:
            terminal.print(f"refused: {exc}", markup=False)
            raise typer.Exit(3) from None
        report = write_report(directory)
    if parsl is None and loaded.execution.kind == "parsl":
        parsl = spec.resolve().parent / loaded.execution.config
    projected = forecast(loaded, real, done.lines, parsl=parsl)
    _, written = write(directory, done.miniature, done.steps, done.wall_s, projected)
    for step in done.steps:
        if step.state != "done":
            err.print(f"{step.name}: {step.state}{': ' + step.message if step.message else ''}", markup=False)
    out.print(markdown(projected), markup=False, highlight=False)
    finished = sum(step.state == "done" for step in done.steps)
    out.print(f"rehearsal: {finished} of {len(done.steps)} steps done in {done.wall_s:.0f} s; {written}, {report}",
              markup=False)
    if not done.done:
        raise typer.Exit(1)


def _executor(spec, spec_path: Path, directory: Path, workers: int | None, parsl: Path | None, terminal: Console):
    """(workers, executor) for a run: ``--parsl`` or the spec's ``execution: {kind: parsl}`` gives
    a Parsl executor (its config read relative to the spec); else local processes (executor None),
    ``--workers`` before ``execution.workers``. A bad Parsl config exits with code 2."""
    execution = spec.execution
    if parsl is None and execution.kind == "parsl":
        parsl = spec_path.resolve().parent / execution.config
    if parsl is None:
        return workers or getattr(execution, "workers", 1), None
    from ilcampaign.engine.run.parsl_executor import ParslExecutor

    try:
        executor = ParslExecutor(parsl, run_dir=directory / "parsl")
    except (OSError, ValueError) as exc:
        terminal.print(printable(f"error: {exc}"), markup=False)
        raise typer.Exit(2) from None
    return executor._max_workers, executor


def _report_failures(exc: GraphFailed, directory: Path, terminal: Console) -> None:
    """Name each failed step and the steps it blocked; tracebacks of unforeseen errors go to error.log."""
    import traceback

    from ilcampaign.engine.step import StepFailed

    tracebacks = []
    for name, failure in exc.failures:
        shown = failure if isinstance(failure, StepFailed) else repr(failure)
        terminal.print(printable(f"step failed: {name}: {shown}"), markup=False, soft_wrap=True)
        if not isinstance(failure, StepFailed):
            tracebacks.append(f"{name}:\n" + "".join(traceback.format_exception(failure)))
    if exc.blocked:
        terminal.print(printable(f"not run, as their inputs failed: {', '.join(exc.blocked)}"), markup=False)
    if tracebacks:
        (directory / "error.log").write_text("\n".join(tracebacks))
        terminal.print(f"tracebacks are in {directory / 'error.log'}", markup=False)
    terminal.print(f"every other step ran and is kept in {directory}; fix the causes and run again", markup=False)


def _print_status(directory: Path, nodes=None) -> None:
    archive = _archive(directory)
    index = archive.index()
    finished = sorted(index["steps"], key=lambda key: index["steps"][key]["finished"])
    if nodes is not None:
        order = {node.key: i for i, node in enumerate(nodes)}
        finished = sorted((key for key in finished if key in order), key=order.get)
    table = Table(title=plain(f"archive {archive.root}"), title_justify="left")
    for column in ("step", "kind", "key", "wall s", "outputs", "guards"):
        table.add_column(column)
    summaries = []
    records = {key: archive.record(key) for key in finished}  # every key checked before anything prints
    for key, record in records.items():
        wall = record.get("wall_s")
        table.add_row(plain(record["name"]), plain(record["kind"]), plain(key[:10]),
                      f"{wall:.1f}" if isinstance(wall, (int, float)) else "",
                      plain(" ".join(record["outputs"])), plain(guard_note(record)))
        numbers = [f"{k}={v:.4g}" for k, v in record.get("summary", {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        summaries.append(printable(f"  {record['name']}: {', '.join(numbers)}"))
    out.print(table)
    out.print("\n".join(summaries), markup=False, highlight=False)
    older = len(index["steps"]) - len(finished)
    if older > 0:
        out.print(f"(+{older} finished step(s) from other versions of the spec)")


@app.command()
def status(target: Annotated[Path, typer.Argument(help="spec file or work directory")], workdir: WorkdirOpt = None) -> None:
    """Summarise the archive: finished steps, their outputs and timings."""
    if target.is_dir():
        _print_status(target.resolve())
        return
    loaded = _load(target)
    _print_status(_workdir(loaded, workdir), _graph(loaded, target))


@app.command()
def show(
    target: Annotated[Path, typer.Argument(help="spec file or work directory")],
    step: Annotated[str, typer.Argument(help="step name or key prefix")],
    workdir: WorkdirOpt = None,
) -> None:
    """Print one finished step's record: parameters, inputs, versions, host, times, checksums."""
    directory = target.resolve() if target.is_dir() else _workdir(_load(target), workdir)
    archive = _archive(directory)
    index = archive.index()
    key = index["names"].get(step) or next((k for k in index["steps"] if k.startswith(step)), None)
    if key is None:
        err.print(printable(f"no finished step {step!r} in {archive.root}"), markup=False)
        raise typer.Exit(1)
    print(json.dumps(archive.record(key), indent=2))


@app.command()
def verify(
    target: Annotated[Path, typer.Argument(help="spec file, work directory or export file (campaign export)")],
    workdir: WorkdirOpt = None,
    against: Annotated[Path | None, typer.Option(
        "--against", help="another work directory: compare the two archives step by step (by key) and say per "
        "step 'identical' (every output and blob byte for byte) or which outputs differ, in numbers (file and "
        "variable named) or in metadata only; exit 1 unless all are identical. Work directories only")] = None,
) -> None:
    """Recompute every stored checksum of finished steps, or of every dataset and attribute set of an export
    file (exit 1 on any problem, naming it); with --against, then compare with another campaign's archive
    step by step."""
    if target.is_file() and _is_hdf5(target):
        _verify_export(target, against)
        return
    directory = target.resolve() if target.is_dir() else _workdir(_load(target), workdir)
    archives = [_archive(directory)]
    if against is not None:
        archives.append(_archive(against.resolve()))
        if not archives[1].index_path.exists():
            err.print(f"no archive in {against} (expected a work directory with archive/index.json)", markup=False)
            raise typer.Exit(2)
    problems = [f"{archive.root}: {problem}" if against else problem
                for archive in archives for problem in archive.verify()]
    if problems:
        for problem in problems:
            err.print(Text.assemble(("problem", "red"), ": ", printable(problem)), highlight=False)
        raise typer.Exit(1)
    if against is None:
        n_steps = len(archives[0].index()["steps"])
        out.print(printable(f"ok: {n_steps} finished step(s), all checksums match ({archives[0].root})"), markup=False)
        return
    _print_comparison(*archives)


def _is_hdf5(path: Path) -> bool:
    from ilcampaign.archive.compare import HDF5_MAGIC

    with open(path, "rb") as handle:
        return handle.read(len(HDF5_MAGIC)) == HDF5_MAGIC


def _verify_export(path: Path, against: Path | None) -> None:
    """Check every checksum of an export file and its split files; exit 1 naming each damaged object."""
    from ilcampaign.archive.export import verify_export

    if against is not None:
        err.print("--against compares work directories, not export files", markup=False)
        raise typer.Exit(2)
    try:
        problems = verify_export(path)
    except ValueError as exc:
        err.print(printable(exc), markup=False)
        raise typer.Exit(2) from None
    if problems:
        for problem in problems:
            err.print(printable(f"problem: {problem}"), markup=False, highlight=False)
        raise typer.Exit(1)
    out.print(f"ok: every dataset, attribute set and split file matches its checksum ({path})", markup=False)


@app.command("export")
def export_cmd(
    target: Annotated[Path, typer.Argument(help="spec file or work directory")],
    output: Annotated[Path, typer.Option("--out", "-o", help="the HDF5 file to write (.h5)", show_default=False)],
    workdir: WorkdirOpt = None,
    split_trajectories: Annotated[bool, typer.Option(
        "--split-trajectories", help="write each trajectory.h5 to its own file beside the export "
        "(<stem>.<key>.trajectory.h5, a plain H5MD copy), linked from it")] = False,
) -> None:
    """Write the whole campaign to one HDF5 file: every finished step (record and outputs), the blobs,
    the spec and step graph, and <workdir>/report.html and the report's figure PDFs (newest of
    <workdir>/report_cache/*/<figure>/figure.pdf) where present; every dataset checksummed
    (campaign verify FILE.h5)."""
    from ilcampaign.archive.export import export
    from ilcampaign.archive.store import ArchiveError

    directory = target.resolve() if target.is_dir() else _workdir(_load(target), workdir)
    archive = _archive(directory)
    if not archive.index_path.exists():
        err.print(f"no archive in {directory} (expected archive/index.json)", markup=False)
        raise typer.Exit(2)
    try:
        path = export(archive.root, output, report_files=_report_files(directory),
                      split_trajectories=split_trajectories)
    except ArchiveError as exc:
        err.print(printable(f"not exported: {exc}"), markup=False)
        raise typer.Exit(1) from None
    n_steps = len(archive.index()["steps"])
    out.print(f"exported {n_steps} step(s) to {path} ({path.stat().st_size / 2**20:.1f} MiB)", markup=False)


@app.command("publish")
def publish_cmd(
    target: Annotated[Path, typer.Argument(help="spec file or work directory")],
    url: Annotated[str, typer.Option("--url", help="the Dataverse, e.g. https://darus.uni-stuttgart.de",
                                     show_default=False)],
    collection: Annotated[str, typer.Option("--collection", help="the collection's alias", show_default=False)],
    workdir: WorkdirOpt = None,
    release: Annotated[bool, typer.Option("--release", help="publish the draft as a new major version "
                                          "(otherwise it stays a draft to review)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write the requests to <workdir>/publish/dry-run.json "
                                          "(token redacted) and send nothing")] = False,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="read the API token from this file "
                                                    "[default: env DATAVERSE_API_TOKEN]")] = None,
) -> None:
    """Deposit the campaign in a Dataverse collection (e.g. DaRUS): export it with split trajectories to
    <workdir>/publish/, create a draft dataset with the spec's campaign.citation (or a new draft version
    of the dataset deposited before), upload the files the draft lacks, take out those the export no
    longer has, and publish with --release. A rerun after a failure resumes where it stopped."""
    import os

    from ilcampaign.publish.dataverse import token_from
    from ilcampaign.publish.deposit import PublishError, publish

    directory = target.resolve() if target.is_dir() else _workdir(_load(target), workdir)
    try:
        token = token_from(os.environ, token_file)
    except ValueError as exc:
        if not dry_run or token_file is not None:
            err.print(printable(exc), markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        token = None
    try:
        deposit = publish(directory, url, collection, token, release=release, dry_run=dry_run,
                          report_files=_report_files(directory))
    except PublishError as exc:
        err.print(printable(f"not published: {exc}"), markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    if deposit.dry_run is not None:
        out.print(f"dry run: {len(deposit.files)} file(s), requests written to {deposit.dry_run}; nothing sent",
                  markup=False)
        return
    action = "created" if deposit.created else "updated"
    review = "" if deposit.released or deposit.version != "DRAFT" else " (review it, then publish with --release)"
    out.print(printable(f"{action} {deposit.persistent_id} in {collection} at {url}: uploaded {len(deposit.uploaded)}, "
                        f"replaced {len(deposit.replaced)}, unchanged {len(deposit.unchanged)}, deleted "
                        f"{len(deposit.deleted)} file(s); version {deposit.version}{review}"),
              markup=False, soft_wrap=True)


def _report_files(directory: Path) -> dict[str, Path]:
    """report.html and the newest complete PDF of each figure in the report cache, where present."""
    from ilcampaign.reports.render import figure_pdfs

    files = {"report.html": directory / "report.html"} if (directory / "report.html").is_file() else {}
    files.update({f"figures/{figure}.pdf": pdf for figure, pdf in figure_pdfs(directory / "report_cache").items()})
    return files


def _view(target: Path, workdir: Path | None):
    """The campaign view of a spec (its graph, computed now) or of a work directory (the graph its
    last run stored), and the work directory."""
    from ilcampaign.reports.view import CampaignView

    if target.is_dir():
        directory = target.resolve()
        manifest = _archive(directory).manifest()
        if manifest is None:
            err.print(f"{directory}: no archive/campaign.json (written by `campaign run`); pass the spec instead",
                      markup=False)
            raise typer.Exit(2)
    else:
        from ilcampaign.engine.graph.manifest import campaign_manifest

        loaded = _load(target)
        directory = _workdir(loaded, workdir)
        manifest = campaign_manifest(loaded, target, _graph(loaded, target))
    return CampaignView(_archive(directory), manifest), directory


@app.command()
def report(
    target: Annotated[Path, typer.Argument(help="spec file or work directory")],
    workdir: WorkdirOpt = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file [default: <workdir>/report.html]")] = None,
) -> None:
    """Write the campaign's report: one self-contained HTML file rebuilt from the archive alone
    (runs no step; figures are cached in <workdir>/report_cache)."""
    from ilcampaign.reports.render import write_report

    view, directory = _view(target, workdir)
    path = write_report(view, directory / "report_cache", output or directory / "report.html")
    out.print(f"report: {path}", markup=False)


@app.command()
def figures(
    target: Annotated[Path, typer.Argument(help="spec file or work directory")],
    output: Annotated[Path, typer.Option("--out", "-o", help="folder for the figures and tables")],
    workdir: WorkdirOpt = None,
) -> None:
    """Write the paper figures (PDF, PNG, plotted data as CSV) and the tables (CSV, LaTeX)."""
    from ilcampaign.reports.render import write_figure_set

    view, directory = _view(target, workdir)
    written = write_figure_set(view, directory / "report_cache", output)
    out.print(f"wrote {len(written)} file(s) to {output}", markup=False)


def _print_comparison(ours, theirs) -> None:
    """Each step of two archives: identical, or which outputs and blobs differ and how; exit 1 on
    any difference."""
    from ilcampaign.archive.compare import compare_archives

    steps = compare_archives(ours, theirs)
    for step in steps:
        out.print(printable(f"{step.state:<21} {step.name} ({step.key[:10]})"), markup=False, highlight=False)
        for difference in step.differences:
            out.print(printable(f"{'':<24}{difference}"), markup=False, highlight=False, soft_wrap=True)
    different = [step for step in steps if step.state != "identical"]
    if different:
        out.print(f"{len(different)} of {len(steps)} step(s) differ ({ours.root} vs {theirs.root})", markup=False)
        raise typer.Exit(1)
    out.print(f"identical: all {len(steps)} step(s), every output and blob byte for byte "
              f"({ours.root} vs {theirs.root})", markup=False)
