"""The ``treganalysis`` command.

Each sub-command is a thin shell around library functions. A user's mistake (a bad file, a
missing marker) is printed as one line naming the file and the problem, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .fcs import count_datasets, read_fcs
from .errors import PanelError, TregAnalysisError
from .panel import DEFAULT_ALIASES, resolve_panel
from .sample import Sample

__all__ = ["main"]


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
    return parser


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
        if i:
            print()
        print(describe(sample, n_sets))
        for w in caught:
            print(f"  warning: {w.message}")
    return 1 if failed else 0


def describe(sample: Sample, n_datasets: int = 1) -> str:
    """A readable summary of a sample: what ``treganalysis inspect`` prints."""
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
        (str(j + 1), c, m, f"{r:g}", marker_of.get(c, ""))
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
