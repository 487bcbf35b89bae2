"""The ``treganalysis`` command.

Each sub-command is a thin shell around library functions. A user's mistake (a bad file, a
missing marker) is printed as one line naming the file and the problem, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
from pathlib import Path
import warnings
from collections.abc import Sequence

from . import __version__
from .fcs import count_datasets, read_fcs
from .errors import PanelError, TregAnalysisError
from .panel import DEFAULT_ALIASES, resolve_panel

# numpy and the package's own modules only: a gating job starts in a fraction of a second.
# pandas (sheets, cohort tables), statsmodels (stats) and plotly (report) are imported by the
# sub-commands that use them.
from ._files import read_yaml_mapping, records_tsv, write_bytes_atomic, write_tsv_atomic
from ._threads import check_threads, together
from .gating.strategy import PooledGates, _gate_without_table, fit_pooled
from .sample import Sample
from .views import gate_views, save_views

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except TregAnalysisError as exc:
        print(f"treganalysis: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `treganalysis inspect ... | head`
        sys.stderr.close()
        return 141


def run() -> None:
    """The command line as a process (``treganalysis``, ``python -m treganalysis``): :func:`main`,
    then exit with its status.

    Notes
    -----
    The objects left at exit are frozen out of the cyclic garbage collector first: the
    interpreter's last collections would otherwise walk every imported module's objects, 0.1-0.5 s
    for a process that imported pandas, scipy or plotly (measured in docs/performance.md), and
    nothing a command made is left to collect (its outputs are written and closed).
    """
    status = main()
    gc.freeze()
    sys.exit(status)


class _Presets:
    """The visit presets of ``simulate --visits``, read from :mod:`treganalysis.simulate` when
    argparse checks or lists them (hence the option's fixed metavar: argparse would list them
    while building the parser), so that every other command (a gating job) leaves it unimported."""

    def _names(self) -> list[str]:
        from .simulate import PRESETS  # simulate imports pandas only where it writes tables

        return sorted(PRESETS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treganalysis",
        description="Automated Treg gating and IL-2 trial statistics for flow cytometry (FCS) files.",
    )
    parser.add_argument("--version", action="version", version=f"treganalysis {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="show the channels, keywords and resolved markers of FCS files",
        description="For each FCS file: version, cytometer, event count, spillover, each channel's "
        "$PnN/$PnS/$PnR, and which channel the default panel finds for each marker.",
    )
    inspect.add_argument("files", nargs="+", metavar="FILE", help="FCS files")
    inspect.set_defaults(run=_inspect)

    simulate = commands.add_parser(
        "simulate",
        help="write a synthetic IL-2 trial cohort (FCS files, sample sheet, per-event truth)",
        description="Simulate subjects x visits of a low-dose IL-2 trial as FCS 3.1 files with known "
        "truth: samples.tsv (sample sheet), fcs/, truth/ (class label per event), truth.tsv, subjects.tsv. "
        "Every number is a configurable default (--config YAML).",
    )
    simulate.add_argument("--out", required=True, metavar="DIR", help="output folder")
    simulate.add_argument("--subjects", type=int, default=6, metavar="N", help="patients (default 6)")
    simulate.add_argument("--visits", default="il2-course", choices=_Presets(), metavar="PRESET",
                          help="visit and dosing schedule, one of %(choices)s (default il2-course: days 0, 5, 12, 33)")
    simulate.add_argument("--events", type=int, default=100_000, metavar="N", help="events per sample (default 100000)")
    simulate.add_argument("--seed", type=int, default=1, metavar="S", help="random seed; the same seed gives the same files")
    simulate.add_argument("--config", metavar="YAML", help="settings overriding the defaults")
    simulate.add_argument("--healthy", type=int, default=0, metavar="N", help="healthy controls, sampled at day 0")
    simulate.add_argument("--placebo", type=int, default=0, metavar="N", help="patients (of --subjects) in a placebo arm")
    simulate.add_argument("--controls", action="store_true", help="also write single-stain and FMO control files")
    simulate.add_argument("--artefacts", action="store_true",
                          help="inject clogs, drift, margin events, low counts and tandem degradation at the "
                          "configured artefact_rates (recorded in truth.tsv)")
    parts = simulate.add_mutually_exclusive_group()
    parts.add_argument("--sample", action="append", metavar="ID",
                       help="write only this sample of the cohort (repeatable): fcs/ID.fcs, truth/ID.labels.npy and "
                       "truth/ID.json (its row of truth.tsv), the same bytes as the whole cohort's; for a workflow "
                       "that simulates one sample per job")
    parts.add_argument("--tables", choices=("sheet", "truth"), action="append",
                       help="write only the cohort's tables (repeatable: --tables sheet --tables truth writes both "
                       "in one process). sheet: samples.tsv, subjects.tsv, batches.tsv, truth/classes.tsv (and the "
                       "control files with --controls), known before any sample is simulated; truth: truth.tsv, "
                       "from every sample's truth/ID.json (see --sample)")
    simulate.set_defaults(run=_simulate)

    gate = commands.add_parser(
        "gate",
        help="gate the Treg hierarchy of FCS files: populations.tsv, gates.json, views.npz",
        description="Compensate, transform and gate FCS files with the Treg strategy; write the "
        "population table (populations.tsv), every gate record with QC and provenance (gates.json) and the "
        "binned plots of each gate for `treganalysis report` (views.npz) to --out "
        "(one sub-folder per file when several are given). With --pooled, transforms and thresholds are "
        "fitted once on all the files' events (one subject's visits, or one batch) and applied to each.",
    )
    gate.add_argument("files", nargs="+", metavar="FILE", help="FCS files")
    gate.add_argument("--out", required=True, metavar="DIR", help="output folder")
    gate.add_argument("--fmo", action="append", default=[], metavar="MARKER=FILE",
                      help="an FMO control whose upper percentile sets that marker's thresholds (repeatable)")
    gate.add_argument("--gatingml", action="store_true", help="also write the chosen gates as GatingML 2.0 (gates.xml)")
    gate.add_argument("--record-failure", action="store_true",
                      help="for one FILE: when it cannot be gated (unreadable file, missing marker), write the "
                      "reason as the sample's population table and gates.json and exit 0, so a workflow's "
                      "cohort table lists the failed sample")
    pooling = gate.add_mutually_exclusive_group()
    pooling.add_argument("--pooled-gates", metavar="JSON",
                         help="apply transforms and thresholds fitted by `treganalysis pool` on a group of samples")
    pooling.add_argument("--pooled", metavar="GROUP",
                         help="fit the gates on the pooled events of all FILEs, recorded as this group name")
    gate.add_argument("--config", metavar="YAML",
                      help="settings: panel (aliases, channels), compensation (matrix, required), "
                      "transform (M, A), gating (template, overrides); other keys are ignored")
    gate.add_argument("--config-json", metavar="JSON", help="the same settings as one JSON mapping (for the workflow)")
    gate.add_argument("--threads", type=_threads_arg, default=1, metavar="N",
                      help="threads for a file's independent steps: QC beside the transforms, the lymphocyte "
                      "mixture's starts beside each other, the population table beside the gate views (default 1; "
                      "the results are the same for any N; above 3, the mixture's starts, it gains nothing)")
    gate.set_defaults(run=_gate)

    pool = commands.add_parser(
        "pool",
        help="fit transforms and thresholds on the pooled events of a group of FCS files",
        description="Fit the gating strategy's transforms, thresholds and scatter gates once on the "
        "events of all FILEs together (one subject's visits, or one acquisition batch) and write them "
        "as JSON for `treganalysis gate --pooled-gates`.",
    )
    pool.add_argument("files", nargs="+", metavar="FILE", help="FCS files of the group")
    pool.add_argument("--group", required=True, help="name of the group (recorded in each sample's gates.json)")
    pool.add_argument("--out", required=True, metavar="JSON", help="file to write")
    pool.add_argument("--config", metavar="YAML", help="gating settings, as for `gate`")
    pool.add_argument("--config-json", metavar="JSON", help="the same settings as one JSON mapping")
    pool.set_defaults(run=_pool)

    cohort = commands.add_parser(
        "cohort",
        help="join the samples' population tables with the sample sheet",
        description="Write one table of every sample x population with the sample sheet's columns "
        "(subject, timepoint, day, ...) from RESULTS/{sample_id}/populations.tsv.",
    )
    cohort.add_argument("--sheet", required=True, help="sample sheet (TSV)")
    cohort.add_argument("--results", required=True, metavar="DIR", help="folder of per-sample results")
    cohort.add_argument("--out", required=True, metavar="TSV", help="cohort table to write")
    cohort.add_argument("--provenance", metavar="TSV", help="also write per sample the input's SHA-256 when gated "
                        "and now, package versions and the config hash")
    cohort.set_defaults(run=_cohort)

    stats = commands.add_parser(
        "stats",
        help="longitudinal Treg-expansion statistics of a cohort table",
        description="From the cohort table (treganalysis cohort): per subject and visit the value, baseline, fold "
        "change, log2 fold change and difference of every read-out (longitudinal.tsv); per visit the Wilcoxon "
        "signed-rank test with the Hodges-Lehmann estimate, a linear mixed model, and with two arms Mann-Whitney "
        "and the arm x visit interaction, Holm and Benjamini-Hochberg adjusted (tests.tsv); the responder call per "
        "subject (responders.tsv).",
    )
    table = stats.add_mutually_exclusive_group(required=True)
    table.add_argument("--cohort", metavar="TSV", help="cohort table (results/cohort/populations.tsv)")
    table.add_argument("--results", metavar="DIR", help="folder of per-sample results (with --sheet): the cohort "
                       "table is joined here as `treganalysis cohort` writes it, so a workflow runs the statistics "
                       "beside the cohort job instead of after it")
    stats.add_argument("--sheet", metavar="TSV", help="sample sheet (TSV), with --results")
    stats.add_argument("--out", required=True, metavar="DIR", help="folder for the three tables")
    stats.add_argument("--config", metavar="YAML", help="a config whose stats: section sets baseline, responder, ...")
    stats.add_argument("--config-json", metavar="JSON", help="the stats: settings as one JSON mapping (for the workflow)")
    stats.add_argument("--index", metavar="HTML", help="also draw the cohort page from these statistics (with "
                       "--results and --sheet): the index.html that `treganalysis report --stats` writes, for a "
                       "report folder's root; a workflow draws it here, where the tables and pandas are loaded, "
                       "and copies it into the site with the sample pages (`report --sample`)")
    stats.add_argument("--report-json", metavar="JSON", help="the report: settings of --index as one JSON mapping "
                       "(dosing_days, healthy_band, population), over --config's report: section")
    stats.set_defaults(run=_stats)

    report = commands.add_parser(
        "report",
        help="write the HTML QC pages: one per sample and the cohort index",
        description="From RESULTS/{sample_id}/ (gates.json, views.npz, populations.tsv, as `gate` writes "
        "them) write OUT/samples/{sample_id}.html per sample, OUT/index.html and one shared "
        "OUT/plotly.min.js; the pages work offline. With --sheet, the sheet's samples in its order and "
        "its columns on each page.",
    )
    report.add_argument("--results", required=True, metavar="DIR", help="folder of per-sample results")
    report.add_argument("--out", required=True, metavar="DIR", help="report folder to write")
    report.add_argument("--sheet", help="sample sheet (TSV)")
    report.add_argument("--stats", metavar="DIR", help="folder with longitudinal.tsv, tests.tsv and responders.tsv "
                        "(treganalysis stats): the index then shows the cohort's trajectories, tests and responders")
    report.add_argument("--config", metavar="YAML", help="a config whose report: section sets dosing_days and "
                        "healthy_band")
    report.add_argument("--config-json", metavar="JSON", help="the report: settings as one JSON mapping")
    drawn = report.add_mutually_exclusive_group()
    drawn.add_argument("--sample", action="append", metavar="ID",
                       help="write only this sample's page, OUT/samples/ID.html, and the OUT/plotly.min.js it "
                       "loads (repeatable; no index): a workflow draws the pages in a job of their own, beside the "
                       "statistics, then builds the site from them")
    drawn.add_argument("--pages", metavar="DIR", help="copy the sample pages from DIR/samples/ID.html (written by "
                       "--sample) instead of drawing them again; every sample's page must be there")
    report.set_defaults(run=_report)
    return parser


def _section(args: argparse.Namespace, name: str, option: str = "config_json") -> dict:
    """One section of --config (YAML), updated by that section's settings as JSON (--config-json,
    or the ``option`` named)."""
    config = _read_yaml(args.config).get(name) or {} if args.config else {}
    given = getattr(args, option)
    if given:
        try:
            config = {**config, **json.loads(given)}
        except (json.JSONDecodeError, TypeError) as exc:
            raise TregAnalysisError(f"--{option.replace('_', '-')}: not a JSON mapping: {exc}") from None
    return config


def _stats(args: argparse.Namespace) -> int:
    if args.index is not None and args.results is None:
        raise TregAnalysisError("--index needs --results and --sheet: the page lists every sample's QC")
    if args.report_json is not None and args.index is None:
        raise TregAnalysisError("--report-json goes with --index (the cohort page's settings)")
    # statsmodels only here, never in gating jobs; its imports (with pandas and scipy's: most of the
    # job's objects) make little garbage (under 1,000 objects, frozen below with the rest), so the
    # collector is off while they run
    collecting = gc.isenabled()
    gc.disable()
    try:
        import pandas as pd

        from .stats import run_stats
    finally:
        if collecting:
            gc.enable()
    page_settings = None
    if args.index is not None:
        from .report import _check_settings

        # the page's settings checked before the statistics run, so a mistake in them costs nothing
        page_settings = _section(args, "report", "report_json")
        _check_settings(page_settings)
    # statsmodels' multipletests runs gc.collect() on every call; with the imported modules' objects
    # frozen out of the collector, each call sees only what the statistics made (the job: 6 s -> 4 s;
    # 2.5 s since statsmodels is imported with treganalysis.stats, before the freeze)
    gc.freeze()
    if args.results is not None:
        if args.sheet is None:
            raise TregAnalysisError("--results needs --sheet: the sample sheet whose samples are joined")
        import io

        from .cohort import cohort_table
        from .sheet import load_sample_sheet

        sheet = load_sample_sheet(args.sheet, check_files=False)
        # the text `treganalysis cohort` writes, read back: the statistics see the table's values
        # exactly as they would read them from results/cohort/populations.tsv
        table = cohort_table(sheet, args.results)
        source = io.StringIO(table.to_csv(sep="\t", index=False, lineterminator="\n"))
    elif args.sheet is not None:
        raise TregAnalysisError("--sheet goes with --results (the samples to join); --cohort is the joined table")
    else:
        source = args.cohort
    try:
        cohort = pd.read_csv(source, sep="\t")
    except (OSError, ValueError) as exc:
        raise TregAnalysisError(f"{args.cohort or args.results}: cannot read the cohort table: {exc}") from None
    tables = run_stats(cohort, _section(args, "stats"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_tsv_atomic(out / f"{name}.tsv", table)
    responders = tables["responders"]
    if len(responders):
        print(f"wrote longitudinal.tsv, tests.tsv and responders.tsv to {out}: {int(responders['responder'].sum())} "
              f"of {len(responders)} subjects respond at {responders['timepoint'].iloc[0]}")
    else:
        print(f"wrote longitudinal.tsv, tests.tsv and responders.tsv to {out}: no subject has a baseline and a later "
              "visit to compare (failed or QC-failed samples are left out)")
    if args.index is not None:
        from .report import write_index

        # from the tables as written, as `report --stats` reads them: the same page
        Path(args.index).parent.mkdir(parents=True, exist_ok=True)
        page = write_index(args.results, args.index, sheet.reset_index(drop=True), stats=out, settings=page_settings)
        print(f"wrote the cohort page {page}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report  # plotly only here, never in gating jobs
    from .sheet import load_sample_sheet

    sheet = load_sample_sheet(args.sheet, check_files=False).reset_index(drop=True) if args.sheet else None
    if args.sample:
        from .report import write_plotly_js, write_sample_pages

        pages = write_sample_pages(args.results, args.out, args.sample, sheet)
        print(f"wrote {', '.join(str(p) for p in pages)} and {write_plotly_js(args.out)}")
        return 0
    pages = write_report(args.results, args.out, sheet, stats=args.stats, settings=_section(args, "report"),
                         pages=args.pages)
    print(f"{'copied' if args.pages else 'wrote'} {len(pages) - 1} sample pages and wrote {Path(args.out) / 'index.html'}")
    return 0


def _cohort(args: argparse.Namespace) -> int:
    from .cohort import cohort_table, provenance_table
    from .sheet import load_sample_sheet

    sheet = load_sample_sheet(args.sheet, check_files=False)
    table = cohort_table(sheet, args.results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_tsv_atomic(args.out, table)
    if args.provenance:
        provenance = provenance_table(sheet, args.results)
        write_tsv_atomic(args.provenance, provenance)
        changed = provenance[provenance["input_changed"]]["sample_id"].tolist()
        if changed:
            print(f"treganalysis: warning: the FCS file of {', '.join(map(str, changed))} changed since it was gated; "
                  "its results are stale: rerun its gating (snakemake --forcerun gate)", file=sys.stderr)
    print(f"wrote {args.out}: {table['sample_id'].nunique()} samples, {len(table)} rows")
    failed = table[table["status"] == "failed"] if "status" in table else table.iloc[:0]
    for row in failed.itertuples():
        print(f"  sample {row.sample_id} FAILED: {row.reason}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    if args.record_failure:
        if len(args.files) != 1:
            raise TregAnalysisError("--record-failure gates one FILE at a time")
        try:
            return _gate_files(args)
        except Exception as exc:  # a user's file problem, or a bug: either way the others go on
            if not isinstance(exc, TregAnalysisError):
                import traceback

                traceback.print_exc()  # into the job's log, for a bug report
                exc = TregAnalysisError(f"{args.files[0]}: internal error ({type(exc).__name__}: {exc}); see the log")
            print(f"treganalysis: error: {exc}", file=sys.stderr)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            failure = {"population": "", "parent": "", "status": "failed", "reason": str(exc)}
            write_bytes_atomic(out / "populations.tsv", records_tsv([failure]).encode("utf-8"))
            record = {"sample": Path(args.files[0]).name, "error": str(exc), "gates": [], "provenance": {"file": args.files[0]}}
            write_bytes_atomic(out / "gates.json", json.dumps(record, indent=2).encode("utf-8"))
            save_views({"sample": Path(args.files[0]).stem, "axes": {}, "gates": [], "thresholds": [], "bins": 0},
                       out / "views.npz")
            print(f"{args.files[0]}: FAILED, recorded in {out / 'populations.tsv'}")
            return 0
    return _gate_files(args)


def _threads_arg(text: str) -> int:
    try:
        return check_threads(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}") from None


def _keep_freed_memory() -> None:
    """Have glibc's malloc keep freed blocks of up to 64 MB for reuse.

    A gating job allocates and frees dozens of event-sized temporaries; by default glibc maps
    each large one afresh and returns it on free, so every one is faulted in page by page again
    (about 45,000 page faults for a 1M-event file, 10% of the job). Reused, the job's peak
    memory is the same. A no-op where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        process = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    except OSError:
        return
    if hasattr(process, "mallopt") and hasattr(process, "gnu_get_libc_version"):
        process.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks below this come from the heap
        process.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: free heap kept up to this much
        process.mallopt(-8, 1)  # M_ARENA_MAX: helper threads take from the same heap (--threads)


def _gate_files(args: argparse.Namespace) -> int:
    stems = [Path(f).stem for f in args.files]
    clashing = sorted({s for s in stems if stems.count(s) > 1})
    if len(args.files) > 1 and clashing:
        raise TregAnalysisError(f"several FILEs are named {', '.join(clashing)}: their results would overwrite "
                                "each other under --out; gate them separately")
    config = _gating_config(args)
    _keep_freed_memory()
    # pooling needs every sample at once; otherwise each file is read as it is gated, so that a
    # job holds one sample's events (compensated in place, below)
    samples = [read_fcs(f) for f in args.files] if args.pooled else []
    fmo = {}
    for item in args.fmo:
        marker, sep, file = item.partition("=")
        if not sep or not marker or not file:
            raise TregAnalysisError(f"--fmo {item!r}: expected MARKER=FILE, e.g. --fmo foxp3=fmo_foxp3.fcs")
        fmo[marker.strip().lower()] = read_fcs(file)
    pooled = fit_pooled(samples, config, args.pooled) if args.pooled else None
    if args.pooled_gates:
        try:
            pooled = PooledGates.from_json(Path(args.pooled_gates).read_text(encoding="utf-8"))
        except OSError as exc:
            raise TregAnalysisError(f"{args.pooled_gates}: cannot read the pooled gates: {exc.strerror}") from None
    with _blas_beside(args.threads):
        for path in args.files:
            _gate_file(path, args, config, samples, pooled, fmo)
    return 0


def _gate_file(path: str, args: argparse.Namespace, config: dict, samples: list[Sample], pooled: PooledGates | None,
               fmo: dict[str, Sample]) -> None:
    # the file is read column-major for this call only: compensated in place, no second copy
    result, table = _gate_without_table(samples.pop(0) if samples else read_fcs(path, order="F"), config,
                                        pooled, fmo, copy=False, threads=args.threads)
    result.rows, views = together([table, lambda: gate_views(result)], args.threads)
    out = Path(args.out) if len(args.files) == 1 else Path(args.out) / Path(path).stem
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "populations.tsv", records_tsv(result.rows).encode("utf-8"))
    write_bytes_atomic(out / "gates.json", result.to_json().encode("utf-8"))
    save_views(views, out / "views.npz")
    if args.gatingml:
        result.to_gatingml(out / "gates.xml")
    row = next((r for r in result.rows if r["population"] == "treg"), None)
    treg = (f"{row['pct_cd4']:.2f}% of CD4" if row is not None and "pct_cd4" in row and row["status"] == "ok"
            else "not gated")
    qc = result.qc.status if result.qc is not None else "not run"
    print(f"{path}: {len(result.rows)} populations, Treg {treg}, QC {qc}; wrote populations.tsv, gates.json and "
          f"views.npz to {out}")


def _blas_beside(threads: int) -> contextlib.AbstractContextManager:
    """BLAS to one thread while a job runs its own (``threads`` above 1): OpenBLAS's threads
    keep spinning for a while after each product (the compensation's), on the core the job's
    helper thread needs (a 1M-event job measured 0.07-0.12 s slower with both). OpenBLAS's
    products are the same with one thread as with several (each element is one thread's dot
    product); a BLAS whose were not could move a compensated value's last digit."""
    if threads == 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _gating_config(args: argparse.Namespace) -> dict:
    """The gating settings of --config (YAML) and --config-json; other keys are ignored."""
    config = _read_yaml(args.config) if args.config else {}
    if args.config_json:
        try:
            extra = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise TregAnalysisError(f"--config-json: not valid JSON: {exc}") from None
        for key, value in extra.items():  # one level deep: panel, compensation, transform, gating
            both = isinstance(value, dict) and isinstance(config.get(key), dict)
            config[key] = {**config[key], **value} if both else value
    return {k: v for k, v in config.items() if k in ("panel", "compensation", "qc", "transform", "gating")}


def _pool(args: argparse.Namespace) -> int:
    samples = []
    for path in args.files:
        try:
            samples.append(read_fcs(path))
        except TregAnalysisError as exc:  # that sample's own gate job records it; the group goes on
            print(f"treganalysis: warning: left out of group {args.group}: {exc}", file=sys.stderr)
    if not samples:
        raise TregAnalysisError(f"group {args.group}: none of its {len(args.files)} files can be read")
    pooled = fit_pooled(samples, _gating_config(args), args.group)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, pooled.to_json().encode("utf-8"))
    print(f"wrote {args.out}: gates of group {args.group} fitted on {len(args.files)} samples")
    return 0


def _read_yaml(path: str) -> dict:
    return read_yaml_mapping(path, "config", TregAnalysisError)


def _simulate(args: argparse.Namespace) -> int:
    from .simulate import load_config, simulate_cohort, simulate_samples, write_cohort_tables

    config = load_config(args.config)
    if args.artefacts:
        config["artefacts"] = dict(config["artefact_rates"])
    cohort = dict(subjects=args.subjects, visits=args.visits, events=args.events, seed=args.seed, config=config,
                  healthy=args.healthy, placebo=args.placebo)
    if args.controls and (args.sample or (args.tables and "sheet" not in args.tables)):
        raise TregAnalysisError("--controls: the control files are written with the whole cohort or with --tables sheet")
    if args.sample:
        rows = simulate_samples(args.out, args.sample, **cohort)
        files = ", ".join(f"fcs/{row['sample_id']}.fcs" for row in rows)
        print(f"wrote {files} and their labels and truth rows (truth/) to {args.out}")
        return 0
    if args.tables:
        written = []
        if "sheet" in args.tables:
            write_cohort_tables(args.out, **cohort, controls=args.controls, truth=False)
            written += ["samples.tsv", "subjects.tsv", "batches.tsv", "truth/classes.tsv"]
            written += ["controls/", "controls.tsv"] if args.controls else []
        if "truth" in args.tables:
            write_cohort_tables(args.out, **cohort, truth=True)
            written.append("truth.tsv")
        print(f"wrote {', '.join(written)} to {args.out}")
        return 0
    tables = simulate_cohort(args.out, **cohort, controls=args.controls)
    samples = tables["samples"]
    print(f"wrote {len(samples)} samples of {samples['subject'].nunique()} subjects to {args.out}: "
          "samples.tsv, fcs/, truth/, truth.tsv, subjects.tsv" + (", controls/, controls.tsv" if args.controls else ""))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    failed = 0
    for i, path in enumerate(args.files):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sample = read_fcs(path)
                n_sets = count_datasets(path)
        except TregAnalysisError as exc:
            print(f"treganalysis: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except Exception as exc:  # a file no rule foresaw: report it, go on with the others
            print(f"treganalysis: error: {path}: cannot be read ({type(exc).__name__}: {exc}); "
                  "please report this file", file=sys.stderr)
            failed += 1
            continue
        if i:
            print()
        print(describe(sample, n_sets))
        for w in caught:
            if "data sets" not in str(w.message):  # already a line of the summary
                print(f"  warning: {w.message}")
    return 1 if failed else 0


def describe(sample: Sample, n_datasets: int = 1) -> str:
    """A readable summary of a sample: what ``treganalysis inspect`` prints.

    Parameters
    ----------
    sample : Sample
        As read by :func:`treganalysis.read_fcs`.
    n_datasets : int
        Data sets in the file, shown when more than one.

    Returns
    -------
    str
        File facts, the channel table with the marker found on each channel, and the markers
        found, ambiguous and absent.
    """
    meta = sample.metadata
    lines = [f"{sample.path}"]
    facts = [
        ("FCS version", sample.version),
        ("data sets", f"{n_datasets} (showing data set {sample.dataset})" if n_datasets > 1 else None),
        ("events", f"{sample.n_events:,}"),
        ("channels", str(sample.n_channels)),
        ("cytometer", " ".join(v for v in (meta.get("$CYT", "").strip(), meta.get("$CYTSN", "").strip()) if v) or None),
        ("acquired", " ".join(v for v in (meta.get("$DATE", "").strip(), meta.get("$BTIM", "").strip()) if v) or None),
        ("spillover", _spillover_text(sample)),
    ]
    width = max(len(k) for k, _ in facts)
    lines += [f"  {k:<{width}}  {v}" for k, v in facts if v]
    panel, ambiguous = {}, []
    for marker in DEFAULT_ALIASES:
        try:
            panel.update(resolve_panel(sample, [marker]))
        except PanelError:
            ambiguous.append(marker)
    marker_of: dict[str, str] = {}
    for marker, channel in panel.items():
        if channel:
            marker_of[channel] = f"{marker_of[channel]}, {marker}" if channel in marker_of else marker
    rows = [("#", "$PnN", "$PnS", "$PnR", "marker")]
    rows += [
        (str(j + 1), c, m, f"{r:.10g}", marker_of.get(c, ""))
        for j, (c, m, r) in enumerate(zip(sample.channels, sample.markers, sample.ranges))
    ]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines.append("")
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("")
    found = [f"{m}={c}" for m, c in panel.items() if c]
    lines.append(f"  markers found: {', '.join(found) or 'none'}")
    if ambiguous:
        lines.append(f"  markers on several channels (choose one with panel: channels:): {', '.join(ambiguous)}")
    lines.append(f"  markers absent: {', '.join(m for m, c in panel.items() if not c) or 'none'}")
    return "\n".join(lines)


def _spillover_text(sample: Sample) -> str:
    spill = sample.spillover
    if spill is None:
        return "none in the file"
    identity = " (identity: the file carries no real compensation)" if spill.is_identity else ""
    return f"{spill.source}, {len(spill.channels)} channels{identity}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
