"""Marker panel: which channel of a file carries which marker.

Labs name channels every way: ``FoxP3 AF647``, ``CD25 BB515``, ``LIVE DEAD Aqua``, ``L/D``,
``Zombie NIR``, ``145Nd_CD4``. A marker is found through a table of aliases matched against
``$PnS`` first and ``$PnN`` second, case-insensitively and token by token, so ``CD4`` matches
``CD4 PE-Cy7`` but never ``CD45RA``. A user extends the table (``panel: aliases:`` in the config)
rather than renaming files, or names the channel outright (``panel: channels:``).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from .errors import PanelError
from .sample import Sample, is_scatter, is_time

__all__ = ["DEFAULT_ALIASES", "merge_aliases", "resolve_marker", "resolve_panel", "tokens"]

# Marker -> aliases. An alias is a phrase of tokens ("live dead", "ki-67"); "*" inside a token
# is a wildcard ("fvs*" matches FVS780). Names are the ones in use on panels of the field
# (OMIP-015/-021/-053, ONE Study, HIPC Lyoplate) and vendors' viability dyes.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "cd3": ("cd3", "cd3e"),
    "cd4": ("cd4",),
    "cd8": ("cd8", "cd8a", "cd8b"),
    "cd25": ("cd25", "il2ra", "il-2ra", "il2r alpha"),
    "cd127": ("cd127", "il7ra", "il-7ra"),
    "foxp3": ("foxp3", "fox-p3"),
    "viability": (
        "viability", "live dead", "livedead", "live", "dead", "l/d", "ld", "zombie", "7-aad", "7aad",
        "fvs*", "fvd", "fixable viability", "aqua amine", "amine", "vivid", "dapi", "sytox", "pi",
    ),
    "cd45ra": ("cd45ra", "cd45 ra"),
    "cd45ro": ("cd45ro", "cd45 ro"),
    "ki67": ("ki-67", "ki67", "mki67"),
    "cd56": ("cd56", "ncam", "ncam1"),
    "cd45": ("cd45",),
    "cd19": ("cd19",),
    "cd14": ("cd14",),
    "cd16": ("cd16",),
    "hla-dr": ("hla-dr", "hladr"),
    "ccr7": ("ccr7", "cd197"),
    "cd39": ("cd39",),
    "helios": ("helios", "ikzf2"),
    "ctla4": ("ctla-4", "ctla4", "cd152"),
}

_SPLIT = re.compile(r"[\s/_,;:|()\[\]{}+.-]+")
_AREA = re.compile(r"-[AHW]$", re.IGNORECASE)


def tokens(label: str) -> list[str]:
    """Lower-case tokens of a channel label or alias: ``"LIVE/DEAD Aqua-A"`` -> live, dead, aqua, a."""
    return [t for t in _SPLIT.split(label.lower()) if t]


def merge_aliases(aliases: Mapping[str, Sequence[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """The default table extended by a user's aliases (the user's are tried first)."""
    merged = dict(DEFAULT_ALIASES)
    for marker, extra in (aliases or {}).items():
        if isinstance(extra, str):
            extra = [extra]
        key = marker.lower()
        merged[key] = tuple(dict.fromkeys([*(a.lower() for a in extra), *merged.get(key, ())]))
    return merged


def resolve_marker(
    sample: Sample,
    marker: str,
    aliases: Mapping[str, Sequence[str]] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """The ``$PnN`` of the one channel carrying ``marker``.

    Parameters
    ----------
    sample : Sample
        The sample whose channels are searched.
    marker : str
        A marker name of the alias table (``"cd25"``, ``"foxp3"``, ``"viability"`` ...).
    aliases : mapping, optional
        Extra aliases per marker, added to :data:`DEFAULT_ALIASES`.
    channels : mapping, optional
        Marker -> channel (``$PnN`` or ``$PnS``) chosen by the user; bypasses the aliases.

    Raises
    ------
    PanelError
        No channel or several channels match; the message lists every channel with its ``$PnS``.
    """
    table = merge_aliases(aliases)
    channel = _find(sample, marker.lower(), table, _lower_keys(channels))
    if channel is None:
        raise PanelError(_missing_message(sample, [marker], table))
    return channel


def resolve_panel(
    sample: Sample,
    markers: Iterable[str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    required: Iterable[str] = (),
    channels: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Channel of each marker, ``None`` where the panel lacks it.

    Parameters
    ----------
    sample : Sample
    markers : iterable of str, optional
        The markers to look for; by default the ``required`` ones, or every marker of the
        alias table when none is required.
    aliases : mapping, optional
        Extra aliases per marker, added to :data:`DEFAULT_ALIASES`.
    required : iterable of str
        Markers that must be found; all missing ones are reported in one error.
    channels : mapping, optional
        Marker -> channel (``$PnN`` or ``$PnS``) chosen by the user; bypasses the aliases.

    Raises
    ------
    PanelError
        A required marker is missing, or any marker matches several channels.
    """
    table = merge_aliases(aliases)
    markers = [markers] if isinstance(markers, str) else markers
    required = [required] if isinstance(required, str) else required
    required = [m.lower() for m in required]
    if markers is None:
        markers = required or table
    wanted = list(dict.fromkeys([*(m.lower() for m in markers), *required]))
    chosen = _lower_keys(channels)
    wanted += [m for m in chosen if m not in wanted]
    panel = {m: _find(sample, m, table, chosen) for m in wanted}
    missing = [m for m in required if panel[m] is None]
    if missing:
        raise PanelError(_missing_message(sample, missing, table))
    return panel


def _lower_keys(mapping: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (mapping or {}).items()}


def _find(sample: Sample, marker: str, table: Mapping[str, Sequence[str]], chosen: Mapping[str, str]) -> str | None:
    if marker in chosen:
        return sample.channels[sample.index(chosen[marker])]
    candidates = [j for j, c in enumerate(sample.channels) if not (is_scatter(c) or is_time(c))]
    # $PnS (the marker) is what labs write; $PnN (the detector) is searched only on channels
    # without a $PnS of their own: BD's "DAPI-A" detector often carries "CD127 BV421"
    unlabelled = [j for j in candidates if sample.markers[j] in ("", sample.channels[j])]
    for labels, where in ((sample.markers, candidates), (sample.channels, unlabelled)):
        hits = [j for j in where if labels[j] and _claims(labels[j], marker, table)]
        hits = _prefer_area(sample, hits)
        if len(hits) == 1:
            return sample.channels[hits[0]]
        if len(hits) > 1:
            listed = ", ".join(f"{sample.channels[j]} ({sample.markers[j]})" for j in hits)
            raise PanelError(
                f"{sample.name}: marker {marker!r} matches several channels: {listed}. Choose one with "
                f"channels={{{marker!r}: {sample.channels[hits[0]]!r}}} (panel: channels: in the workflow "
                f"config). All channels: {sample.describe_channels()}"
            )
    return None


def _spans(label_tokens: Sequence[str], aliases: Sequence[str]) -> list[tuple[int, int]]:
    """Token spans of ``label_tokens`` that one of ``aliases`` matches."""
    spans = []
    for alias in aliases:
        pattern = _pattern(alias)
        n = len(pattern)
        spans += [(i, i + n) for i in range(len(label_tokens) - n + 1)
                  if all(match(label_tokens[i + k]) for k, match in enumerate(pattern))]
    return spans


@functools.lru_cache(maxsize=1024)
def _pattern(alias: str) -> tuple[Callable[[str], bool], ...]:
    """One matcher per token of an alias: equality, or fnmatch where the token has a wildcard."""
    return tuple(functools.partial(fnmatch.fnmatchcase, pat=t) if any(c in t for c in "*?[") else t.__eq__
                 for t in tokens(alias))


@functools.lru_cache(maxsize=1024)
def _marker_spans(label: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, list[tuple[int, int]]]:
    """Each marker's spans of a label's tokens (once per label and table: a job asks every
    label about every marker of the table several times)."""
    label_tokens = tokens(label)
    return {marker: _spans(label_tokens, aliases) for marker, aliases in table}


def _claims(label: str, marker: str, table: Mapping[str, Sequence[str]]) -> bool:
    """True when ``marker`` matches ``label`` and no other marker matches a longer stretch
    around the same tokens ("CD45-RA" is CD45RA, not CD45; "Vivid / CD14" is both)."""
    spans = _marker_spans(label, tuple((m, tuple(a)) for m, a in table.items()))
    own = spans[marker] if marker in spans else _spans(tokens(label), (marker,))
    if not own:
        return False
    others = [span for m, found in spans.items() if m != marker for span in found]
    return any(not any(o[0] <= s[0] and s[1] <= o[1] and o != s for o in others) for s in own)


def _prefer_area(sample: Sample, hits: list[int]) -> list[int]:
    """Of the -A/-H/-W channels of one detector, keep the area (else height) channel."""
    detectors = {_AREA.sub("", sample.channels[j]) for j in hits}
    if len(hits) > 1 and len(detectors) == 1:
        for suffix in ("-A", "-H", "-W"):
            chosen = [j for j in hits if sample.channels[j].upper().endswith(suffix)]
            if chosen:
                return chosen[:1]
    return hits


def _missing_message(sample: Sample, missing: list[str], table: Mapping[str, Sequence[str]]) -> str:
    tried = "; ".join(f"{m}: {', '.join(table.get(m, (m,)))}" for m in missing)
    return (
        f"{sample.name}: marker{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found in the panel "
        f"(aliases tried against $PnS then $PnN - {tried}). Channels ($PnN ($PnS)): "
        f"{sample.describe_channels()}. Add the right label as an alias, e.g. aliases={{{missing[0]!r}: "
        f"['<label>']}} (panel: aliases: in the workflow config)."
    )
