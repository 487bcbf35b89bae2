"""The in-memory sample: events of one FCS data set and what describes them.

A :class:`Sample` is a plain container (FlowKit's split: the sample holds data, transforms
and gates are functions). Stages return new samples and never modify their input in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PanelError

__all__ = ["Sample", "Spillover", "is_scatter", "is_time"]

_SCATTER_PREFIXES = ("fsc", "ssc", "bsc")  # forward, side and back (violet) scatter


def is_scatter(name: str) -> bool:
    """True for a scatter channel name (FSC-A, SSC-H, BSC-A, FSC ...)."""
    return name.strip().lower().startswith(_SCATTER_PREFIXES)


def is_time(name: str) -> bool:
    """True for the time channel (``Time``, ``TIME``, ``HDR-T``)."""
    return name.strip().lower() in ("time", "hdr-t")


@dataclass(frozen=True, eq=False)
class Spillover:
    """A spillover matrix: rows are the dye's own detector, columns the detectors it spills into.

    Attributes
    ----------
    matrix : ndarray of float64, shape (k, k)
        Spillover fractions, 1 on the diagonal for a conventional matrix.
    channels : tuple of str
        The k detector names (``$PnN``) the rows and columns refer to.
    source : str
        Where the matrix came from, e.g. ``"keyword $SPILLOVER"`` or ``"file comp.csv"``.
    """

    matrix: np.ndarray
    channels: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def is_identity(self) -> bool:
        """True for a matrix that changes nothing (some instruments write one by default)."""
        return bool(np.array_equal(self.matrix, np.eye(len(self.channels))))

    def __repr__(self) -> str:
        return f"Spillover({len(self.channels)} channels, source={self.source!r})"


@dataclass(frozen=True, eq=False)
class Sample:
    """Events of one FCS data set with their channel description and keywords.

    Attributes
    ----------
    events : ndarray of float32, shape (n_events, n_channels)
        Events in file order, ``$PnE`` log amplification, ``$PnG`` gain and ``$TIMESTEP``
        applied exactly as FlowKit/FlowIO apply them.
    channels : list of str
        ``$PnN`` of each column.
    markers : list of str
        ``$PnS`` of each column, ``""`` where absent.
    metadata : dict of str to str
        All TEXT keywords, keys upper-case as in the standard (``$CYT``, ``$SPILLOVER``, ``SPILL``).
    spillover : Spillover or None
        The acquisition matrix from ``$SPILLOVER``, ``SPILL`` or ``$SPILL``, if any.
    path : pathlib.Path or None
        The file the sample was read from.
    ranges : list of float
        ``$PnR`` of each column (the top of the channel's scale).
    version : str
        FCS version of the file, e.g. ``"3.1"``.
    dataset : int
        Index of the data set within the file (0 for single-data-set files).
    compensation : dict or None
        ``None`` until :func:`treganalysis.compensate` ran; then the record of what it did
        (source of the matrix, channels, or why it was skipped).
    """

    events: np.ndarray
    channels: list[str]
    markers: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    spillover: Spillover | None = None
    path: Path | None = None
    ranges: list[float] = field(default_factory=list)
    version: str = ""
    dataset: int = 0
    compensation: dict[str, Any] | None = None

    @property
    def n_events(self) -> int:
        """Number of events."""
        return int(self.events.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels (``$PAR``)."""
        return int(self.events.shape[1])

    @property
    def name(self) -> str:
        """The file name, or ``"<memory>"`` for a sample not read from a file."""
        return self.path.name if self.path is not None else "<memory>"

    @property
    def scatter_channels(self) -> list[str]:
        """Scatter channels (FSC/SSC/BSC)."""
        return [c for c in self.channels if is_scatter(c)]

    @property
    def time_channel(self) -> str | None:
        """The time channel, or None."""
        return next((c for c in self.channels if is_time(c)), None)

    @property
    def fluorescence_channels(self) -> list[str]:
        """Channels that are neither scatter nor time."""
        return [c for c in self.channels if not (is_scatter(c) or is_time(c))]

    def index(self, channel: str) -> int:
        """Column index of a channel given by its ``$PnN`` (exact) or, failing that, ``$PnS``.

        Raises
        ------
        PanelError
            If no channel or several channels carry that name; the message lists the channels.
        """
        hits = [i for i, c in enumerate(self.channels) if c == channel]
        if not hits:
            hits = [i for i, m in enumerate(self.markers) if m and m == channel]
        if len(hits) == 1:
            return hits[0]
        problem = "is not a channel" if not hits else "names several channels"
        raise PanelError(f"{self.name}: {channel!r} {problem}; channels are {self.describe_channels()}")

    def column(self, channel: str) -> np.ndarray:
        """A view of one channel's events (no copy)."""
        return self.events[:, self.index(channel)]

    def describe_channels(self) -> str:
        """``$PnN ($PnS)`` of every channel, for error messages."""
        return ", ".join(f"{c} ({m})" if m else c for c, m in zip(self.channels, self.markers))

    def with_events(self, events: np.ndarray, **changes: Any) -> "Sample":
        """A new sample with other events (same channels) and optional other fields."""
        if events.shape[1] != len(self.channels):
            raise ValueError(f"events have {events.shape[1]} columns, sample has {len(self.channels)} channels")
        return replace(self, events=events, **changes)

    def __repr__(self) -> str:
        return f"Sample({self.name!r}, {self.n_events} events x {self.n_channels} channels)"
