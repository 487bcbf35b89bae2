"""The gating strategy engine: a hierarchy of gates as data, evaluated parent by parent.

A template (YAML, like openCyto's gating template) names 1-D thresholds and gates. Each gate is
computed on its parent's events only and leaves a record: method, channels, thresholds in
transformed and raw units, fallback, confidence, events in and out. A gate whose markers the
panel lacks is left out with the reason; its children hang from its parent instead.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_integer
from .._files import read_yaml_mapping
from .._threads import check_threads, together
from ..compensation import compensate
from ..errors import PanelError, TregAnalysisError
from ..panel import merge_aliases, resolve_panel
from ..qc import QCResult, RawChecks, _spaced, margin_events, qc_sample, raw_checks
from ..sample import Sample
from ..transforms import _logicle_once, estimate_logicle_w, logicle, logicle_inverse
from .density import Threshold, binned_density, quantile_threshold, tail_threshold, valley_threshold
from .geometry import ellipse
from .mixture import fit_gaussian_mixture, predict_proba
from .populations import _frame, _median, population_rows, population_table, wilson_interval

if TYPE_CHECKING:  # pandas is imported when a table is built, not by every gating job
    import pandas as pd

__all__ = ["GatingError", "GatingResult", "PooledGates", "fit_pooled", "gate_group", "gate_sample", "load_template",
           "population_rows", "population_table", "wilson_interval", "MIN_EVENTS", "MIN_TREG_EVENTS"]

MIN_EVENTS = 20  # a gate left with fewer events gives NA (flowDensity's count.lim)
MIN_TREG_EVENTS = 200  # fewer Treg events: the frequency is imprecise (CV above ~7%)
# a scatter gate whose parent holds at least this share of the events is evaluated along whole
# channels and ANDed with the parent (no gather); below it, on the parent's gathered events
_WHOLE_COLUMNS = 0.5
# Logicle W is estimated from every k-th event beyond this many: the 5% quantile of the
# negatives it uses is then known to well under 1% of its value.
W_EVENTS = 1 << 18
ROOT = "root"
# the package's data folder (a plain path: importlib.resources would add 10 ms to every job's start)
_DATA = Path(__file__).resolve().parent.parent / "data"


class GatingError(TregAnalysisError):
    """A gating template or configuration that cannot be used."""


def load_template(path: str | Path | None = None) -> dict[str, Any]:
    """The gating template: the default Treg strategy, or a user's YAML file.

    Raises
    ------
    GatingError
        The file cannot be read, or a gate names an unknown parent, threshold or method.
    """
    if path is None:
        # treg_template.yaml, as JSON: a gating job need not import PyYAML (25 ms) to read it
        # (tests/test_gating_strategy.py keeps the two the same)
        template = json.loads((_DATA / "treg_template.json").read_text("utf-8"))
        where = "default template"
    else:
        template = read_yaml_mapping(path, "gating template", GatingError)
        where = str(path)
    _check_template(template, where)
    return template


def _check_template(template: Mapping[str, Any], where: str) -> None:
    thresholds = template.get("thresholds", {}) or {}
    gates = template.get("gates")
    if not isinstance(gates, list) or not gates:
        raise GatingError(f"{where}: a template needs a list of gates")
    known = {ROOT}
    for gate in gates:
        name = gate.get("population")
        if not name or gate.get("parent") not in known:
            raise GatingError(f"{where}: gate {name!r} needs a parent defined above it (known: {', '.join(sorted(known))})")
        method = gate.get("method", "rule")
        if method == "rule":
            for t, side in (gate.get("rule") or {}).items():
                if t not in thresholds:
                    raise GatingError(f"{where}: gate {name!r} uses threshold {t!r}, which is not defined")
                if side not in ("above", "below"):
                    raise GatingError(f"{where}: gate {name!r}: {t} must be 'above' or 'below', not {side!r}")
        elif method == "not":
            if gate.get("of") not in known:
                raise GatingError(f"{where}: gate {name!r}: 'of' must name a population defined above it")
        elif method == "gmm_ellipse":
            for key, default in _MIXTURE_COUNTS.items():
                try:
                    check_integer(gate.get(key, default), key, 1)
                except ValueError as exc:
                    raise GatingError(f"{where}: gate {name!r}: {exc}") from None
        elif method != "singlet_ratio":
            raise GatingError(f"{where}: gate {name!r} has unknown method {method!r}")
        known.add(name)
    for t, spec in thresholds.items():
        unknown = sorted(str(k) for k in set(spec) - _THRESHOLD_KEYS)
        if unknown:
            # (YAML 1.1 reads a bare `on:` key as True: the key is `from:`)
            raise GatingError(f"{where}: threshold {t!r} has unknown setting {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(_THRESHOLD_KEYS))}")
        if spec.get("method", "valley") not in ("valley", "tail", "quantile"):
            raise GatingError(f"{where}: threshold {t!r} has unknown method {spec.get('method')!r}")
        if ("marker" in spec) == ("channel" in spec):
            raise GatingError(f"{where}: threshold {t!r} needs exactly one of marker: or channel:")


@dataclass
class GatingResult:
    """What :func:`gate_sample` found.

    Attributes
    ----------
    sample : Sample
        The compensated sample that was gated (events in file order).
    masks : dict of str to ndarray of bool
        Membership of each population, length ``sample.n_events``.
    gates : list of dict
        One record per gate and per threshold, in evaluation order.
    rows : list of dict
        The population table as records, one per population (what ``populations`` holds).
    panel : dict
        Marker -> channel as resolved.
    provenance : dict
        Package version, config, and what was done before gating (margins, compensation, transforms).
    qc : QCResult or None
        Acquisition QC (:func:`treganalysis.qc.qc_sample`): status, reasons, and the events it
        kept; its record is in ``to_json()``.
    transformed : dict of str to ndarray
        The gating channels on the scale the gates were drawn on (Logicle; scatter linear).
    populations : pandas.DataFrame
        One row per population (see :func:`population_table`), built from ``rows`` when first
        used.
    """

    sample: Sample
    masks: dict[str, np.ndarray]
    gates: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(repr=False)
    panel: dict[str, str | None]
    provenance: dict[str, Any] = field(default_factory=dict)
    qc: QCResult | None = None
    transformed: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def populations(self) -> "pd.DataFrame":
        """One row per population: count, % of parent, % of CD4 with Wilson intervals, QC
        status and marker medians (see :func:`population_table`)."""
        return _frame(self.rows)

    def mask(self, population: str) -> np.ndarray:
        """Boolean membership of a population over all events (file order)."""
        if population not in self.masks:
            raise KeyError(f"no population {population!r}; gated: {', '.join(self.masks)}")
        return self.masks[population]

    def to_gatingml(self, path: str | Path) -> Path:
        """Write the sample's gates as GatingML 2.0 (through FlowKit); see
        :func:`treganalysis.gating.gatingml.to_gatingml`."""
        from .gatingml import to_gatingml

        return to_gatingml(self, path)

    def to_json(self) -> str:
        """The gate records and provenance as JSON (what ``gates.json`` holds)."""
        qc = ({"status": self.qc.status, "reasons": self.qc.reasons, **self.qc.record}
              if self.qc is not None else None)
        # one line: json's C encoder (an indented dump takes the pure-Python one, 10x slower on
        # the QC record's per-bin arrays)
        return json.dumps({"sample": self.sample.name, "panel": self.panel, "qc": qc, "gates": self.gates,
                           "provenance": self.provenance}, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def gate_sample(sample: Sample, config: Mapping[str, Any] | None = None,
                pooled: "PooledGates | None" = None, fmo: Mapping[str, Sample] | None = None, *,
                copy: bool = True, threads: int = 1) -> GatingResult:
    """Gate the Treg hierarchy of one raw sample.

    Parameters
    ----------
    sample : Sample
        As read by :func:`treganalysis.read_fcs` (uncompensated).
    config : mapping, optional
        The same mapping as ``config.yaml``: ``panel`` (``aliases``, ``channels``),
        ``compensation`` (``matrix``: a file, ``required``), ``transform`` (``M``, ``A``),
        ``gating`` (``template``: a YAML file; ``overrides``: population or threshold name ->
        parameters to change).
    pooled : PooledGates, optional
        Transforms and thresholds fitted on a group of samples (:func:`fit_pooled`), applied
        here instead of fitting this sample's own.
    fmo : mapping of marker to Sample, optional
        Fluorescence-minus-one controls (e.g. ``{"foxp3": fmo_sample}``): the thresholds on that
        marker are set from the control instead of the data (see Notes); they take precedence.
    copy : bool
        False lets compensation overwrite the sample's events (``compensate(copy=False)``)
        instead of making a compensated copy: for a sample read for this call only, as
        ``read_fcs(path, order="F")`` is in a gating job. The sample must not be used after.
    threads : int
        Threads for steps that do not depend on each other: acquisition QC runs beside the
        transforms, the lymphocyte mixture's starts beside each other. The result is the same
        for any number. BLAS's own threads are left as
        they are: with OpenBLAS, hold them to one (``threadpoolctl.threadpool_limits(1)``),
        as ``treganalysis gate --threads`` does, or they compete for the cores.

    Returns
    -------
    GatingResult

    Notes
    -----
    Steps: the raw-event checks of acquisition QC (:func:`treganalysis.qc.raw_checks`: margin
    events at ``$PnR - 1`` in scatter or a gating channel, NaN/Inf events, the time column);
    compensation; the rest of QC on the compensated events (:func:`treganalysis.qc.qc_sample`:
    time bins where the rate or a signal departs; settings from ``config["qc"]``), whose removed
    events take no part in gating; Logicle on each gating fluorescence channel with W estimated
    from that channel's negative events (scatter stays linear); then the template's gates in
    order, each on its parent's events. Thresholds are recorded in Logicle and in compensated
    linear units.

    With an FMO control for a marker, the control is compensated, transformed with this
    sample's transforms and gated down to the population the threshold is chosen on; the
    threshold is the ``fmo_quantile`` (default 0.995) quantile of the marker there: the
    brightest the channel gets without the antibody.
    """
    result, table = _gate_without_table(sample, config, pooled, fmo, copy=copy, threads=threads)
    result.rows = table()
    return result


def _gate_without_table(sample: Sample, config: Mapping[str, Any] | None, pooled: "PooledGates | None",
                        fmo: Mapping[str, Sample] | None, *, copy: bool,
                        threads: int) -> tuple[GatingResult, Callable[[], list[dict[str, Any]]]]:
    """:func:`gate_sample` up to its population table, which is returned as a call to make:
    a gating job makes it beside the gate views (which do not read it), on a second thread."""
    check_threads(threads, "gate_sample")
    config = dict(config or {})
    # the hash is stopped (within one block) when gating fails: no thread is left reading the file
    with _sha256_beside(sample.path) as digest:
        template, panel, channels = _setup(sample, config)
        checked = raw_checks(sample, [c for c in channels.values() if c], config.get("qc") or {})
        comp = _compensate(sample, config, copy=copy)
        # Past the raw checks only the compensated sample is used (it carries the path and keywords
        # too); when the caller passed ``read_fcs(...)`` directly, the raw events are freed here
        # (or were overwritten, with copy=False), before QC and gating allocate theirs.
        del sample
        fixed_transforms = pooled.transforms if pooled is not None else None
        # neither reads the other's result (W is estimated from the channel's events whatever QC
        # keeps, as when they ran one after the other) and both only read the events
        qc, (transformed, transforms) = together(
            [lambda: _qc(comp, comp, channels, config, panel, checked),
             lambda: _transform(comp, channels, config.get("transform", {}) or {}, fixed_transforms)], threads)
        fitted = dict(pooled.fitted) if pooled is not None else {}
        fitted.update(_fmo_thresholds(fmo or {}, config, template, transforms))
        engine = _Engine(comp, transformed, transforms, panel, template, fitted, threads)
        engine.run(qc.keep)
        provenance = {
            "file": str(comp.path) if comp.path else None,
            "sha256": digest(),
            "bytes": comp.path.stat().st_size if comp.path else None,
            "versions": _versions(),
            "package_version": _version(),
            "instrument": comp.metadata.get("$CYT"),
            "acquired": " ".join(v for v in (comp.metadata.get("$DATE"), comp.metadata.get("$BTIM")) if v) or None,
            "config": config,
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
            "margins": qc.record["margins"]["removed"],
            "compensation": comp.compensation,
            "transforms": transforms,
            "pooled": {"group": pooled.group, "samples": pooled.samples} if pooled is not None else None,
        }

        def table() -> list[dict[str, Any]]:
            return population_rows(comp, engine.masks, engine.parents, panel, engine.status, root=qc.keep,
                                   qc_status=qc.status)

        return GatingResult(comp, engine.masks, engine.records, [], panel, provenance, qc, transformed), table


def _fmo_thresholds(fmo: Mapping[str, Sample], config: Mapping[str, Any], template: Mapping[str, Any],
                    transforms: Mapping[str, dict]) -> dict[str, Threshold]:
    """Thresholds set from FMO controls: the upper quantile of the marker in the control's
    population that the threshold is chosen on, on the main sample's scale."""
    found: dict[str, Threshold] = {}
    for marker, control in fmo.items():
        names = [t for t, spec in template["thresholds"].items() if spec.get("marker") == marker.lower()]
        if not names:
            raise GatingError(f"FMO control {control.name}: no threshold of the template is on marker {marker!r}")
        _, panel, comp, channels = _prepare(control, config)
        keep, _ = _margins(control, channels)
        data, _ = _transform(comp, channels, config.get("transform", {}) or {}, transforms)
        engine = _Engine(comp, data, transforms, panel, template)
        engine.run(keep)
        for t in names:
            spec = template["thresholds"][t]
            on = engine.resolve(spec.get("from", "root"))
            channel = channels.get(t)
            mask = engine.masks.get(on)
            if channel is None or mask is None or mask.sum() < MIN_EVENTS:
                raise GatingError(f"FMO control {control.name}: too few {on} events or no {marker} channel "
                                  f"to set the {t} threshold")
            q = float(spec.get("fmo_quantile", 0.995))
            value = float(np.quantile(data[channel][mask], q))
            found[t] = Threshold(value, "fmo", None, 1.0,
                                 {"fmo_file": str(control.path), "quantile": q, "events": int(mask.sum()), "on": on})
    return found


@dataclass
class PooledGates:
    """Transforms and gate parameters fitted on the pooled events of a group of samples."""

    group: str
    samples: list[str]
    transforms: dict[str, dict[str, Any]]
    fitted: dict[str, Any]

    def to_json(self) -> str:
        """JSON text that :meth:`from_json` reads back (for a workflow's pooling job)."""
        fitted = {name: ({"threshold": {"value": v.value, "method": v.method, "fallback": v.fallback,
                                        "confidence": v.confidence, "details": v.details}}
                         if isinstance(v, Threshold) else {"gate": v})
                  for name, v in self.fitted.items()}
        return json.dumps({"group": self.group, "samples": self.samples, "transforms": self.transforms,
                           "fitted": fitted}, indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> "PooledGates":
        """Read what :meth:`to_json` wrote."""
        try:
            data = json.loads(text)
            fitted = {name: (Threshold(**entry["threshold"]) if "threshold" in entry
                             else {k: np.asarray(v) if isinstance(v, list) else v for k, v in entry["gate"].items()})
                      for name, entry in data["fitted"].items()}
            return cls(data["group"], data["samples"], data["transforms"], fitted)
        except (ValueError, KeyError, TypeError) as exc:
            raise GatingError(f"not a pooled-gates file: {exc}") from None


def fit_pooled(samples: list[Sample], config: Mapping[str, Any] | None = None, group: str = "") -> PooledGates:
    """Fit transforms, thresholds and scatter gates on the pooled events of ``samples``.

    Parameters
    ----------
    samples : list of Sample
        Raw samples of one subject (or batch) with the same channels.
    config : mapping, optional
        As for :func:`gate_sample`.
    group : str
        Name of the group, recorded in every result (e.g. the subject).

    Returns
    -------
    PooledGates
        To pass to :func:`gate_sample` for each sample of the group.

    Notes
    -----
    openCyto's ``groupBy`` idea: a threshold fitted per visit moves with the very change it
    should measure (IL-2 raises CD25 on Tregs), so the thresholds of a subject's visits are
    fitted once on their events together. Each sample is compensated with its own matrix
    before pooling.
    """
    if not samples:
        raise GatingError("fit_pooled needs at least one sample")
    config = dict(config or {})
    first = samples[0]
    for other in samples[1:]:
        if other.channels != first.channels:
            raise GatingError(f"{other.name}: channels differ from {first.name}'s; pooled gating needs one panel "
                              f"(pool_by groups samples of the same panel)")
    prepared = [_prepare(s, config) for s in samples]
    template, panel, _, channels = prepared[0]
    comps = [p[2] for p in prepared]
    pooled = comps[0].with_events(np.concatenate([c.events for c in comps]), path=None, compensation=None)
    keep = np.concatenate([_qc(s, p[2], channels, config, p[1]).keep for s, p in zip(samples, prepared)])
    transformed, transforms = _transform(pooled, channels, config.get("transform", {}) or {})
    engine = _Engine(pooled, transformed, transforms, panel, template)
    engine.run(keep)
    return PooledGates(group, [s.name for s in samples], transforms, engine.learned)


def gate_group(samples: list[Sample], config: Mapping[str, Any] | None = None, group: str = "") -> list[GatingResult]:
    """Gate each sample of a group with transforms and thresholds fitted on all of them."""
    pooled = fit_pooled(samples, config, group)
    return [gate_sample(s, config, pooled=pooled) for s in samples]


def _prepare(sample: Sample, config: Mapping[str, Any]) -> tuple[dict, dict, Sample, dict]:
    """Template, panel, compensated sample and gating channels of one sample."""
    template, panel, channels = _setup(sample, config)
    return template, panel, _compensate(sample, config), channels


def _setup(sample: Sample, config: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Template, panel and gating channels of one sample."""
    template = _template(config.get("gating", {}) or {})
    panel_cfg = config.get("panel", {}) or {}
    markers = sorted({s["marker"] for s in template.get("thresholds", {}).values() if "marker" in s})
    panel = resolve_panel(sample, markers, aliases=panel_cfg.get("aliases"), channels=panel_cfg.get("channels"))
    panel.update(_other_markers(sample, panel, panel_cfg))
    return template, panel, _present(sample, _gating_channels(template, panel))


def _compensate(sample: Sample, config: Mapping[str, Any], copy: bool = True) -> Sample:
    comp_cfg = config.get("compensation", {}) or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recorded in the compensation record instead
        return compensate(sample, comp_cfg.get("matrix"), required=bool(comp_cfg.get("required", False)), copy=copy)


_THRESHOLD_KEYS = {"marker", "channel", "from", "method", "side", "k", "q", "fallback", "min_depth", "pair", "fmo_quantile"}
# the lymphocyte mixture's counts and their defaults (a template may set each, an integer >= 1)
_MIXTURE_COUNTS = {"components": 3, "starts": 3, "subsample": 20000}
_GATE_KEYS = {"population", "parent", "method", "rule", "of", "k", "components", "target", "quantile", "subsample",
              "starts"}


def _template(gating: Mapping[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(load_template(gating.get("template")))
    for name, changes in (gating.get("overrides") or {}).items():
        is_threshold = name in template.get("thresholds", {})
        target = template["thresholds"][name] if is_threshold else next(
            (g for g in template["gates"] if g["population"] == name), None)
        if target is None:
            raise GatingError(f"gating overrides: {name!r} is neither a threshold nor a population of the template")
        allowed = _THRESHOLD_KEYS if is_threshold else _GATE_KEYS
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise GatingError(f"gating overrides: {name}: unknown setting {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(allowed))}")
        target.update(changes)
    _check_template(template, "template with overrides")
    return template


def _other_markers(sample: Sample, panel: Mapping[str, str | None], cfg: Mapping[str, Any]) -> dict[str, str]:
    """Markers the template does not gate on but the panel carries (for their medians); an
    ambiguous one is skipped rather than stopping the gating."""
    found = {}
    for marker in merge_aliases(cfg.get("aliases")):
        if marker in panel:
            continue
        try:
            channel = resolve_panel(sample, [marker], aliases=cfg.get("aliases"), channels=cfg.get("channels"))[marker]
        except PanelError:
            continue
        if channel:
            found[marker] = channel
    return found


def _gating_channels(template: Mapping[str, Any], panel: Mapping[str, str | None]) -> dict[str, str | None]:
    """Threshold name -> channel ($PnN), None where the panel lacks the marker."""
    return {name: spec.get("channel") or panel.get(spec["marker"]) for name, spec in template.get("thresholds", {}).items()}


def _present(sample: Sample, channels: Mapping[str, str | None]) -> dict[str, str | None]:
    """The gating channels, None where the file lacks a named channel (e.g. no FSC on a CyTOF)."""
    return {name: c if c in sample.channels else None for name, c in channels.items()}


def _margins(sample: Sample, channels: Mapping[str, str | None]) -> tuple[np.ndarray, dict[str, int]]:
    """Events below the ceiling of scatter and every gating channel (raw data)."""
    scatter = {c for c in sample.scatter_channels if c.upper() in ("FSC-A", "FSC-H", "SSC-A")}
    return margin_events(sample, scatter | {c for c in channels.values() if c})


def _qc(sample: Sample, comp: Sample, channels: Mapping[str, str | None], config: Mapping[str, Any],
        panel: Mapping[str, str | None], checked: RawChecks | None = None) -> QCResult:
    """Acquisition QC (treganalysis.qc): margins on the gating channels, signals over time on
    every channel of the panel; settings from ``config["qc"]``."""
    return qc_sample(sample, comp, [c for c in channels.values() if c], config.get("qc") or {},
                     signals=[c for c in panel.values() if c], checked=checked)


def _transform(sample: Sample, channels: Mapping[str, str | None], cfg: Mapping[str, Any],
               fixed: Mapping[str, dict] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Logicle of each fluorescence gating channel, W from its negatives (or as ``fixed``
    gives it, for pooled gating); scatter stays linear."""
    out, params = {}, {}
    M, A = float(cfg.get("M", 4.5)), float(cfg.get("A", 0.0))
    for channel in sorted({c for c in channels.values() if c}):
        column = sample.column(channel)
        if channel in sample.scatter_channels:
            out[channel] = column
            params[channel] = {"transform": "linear"}
            continue
        # A W estimated here is this sample's alone: its table is built for this column and freed
        # (a cached one would hold memory for nothing). A given W (a group's, or the sample's for
        # its FMO controls) is shared by the files gated with it: logicle's cache serves them.
        apply = logicle
        if fixed and channel in fixed:
            params[channel] = dict(fixed[channel])
        else:
            apply = _logicle_once
            j = sample.index(channel)
            T = float(sample.ranges[j]) if sample.ranges and sample.ranges[j] > 0 else 262144.0
            every = column[:: max(1, -(-column.size // W_EVENTS))]
            # (estimate_logicle_w leaves out NaN and infinities: events QC removed never decide W)
            W = min(estimate_logicle_w(every, T=T, M=M), M / 2)
            params[channel] = {"transform": "logicle", "T": T, "W": W, "M": M, "A": A}
        p = params[channel]
        out[channel] = apply(column, p["T"], p["W"], p["M"], p["A"])
    return out, params


class _Engine:
    def __init__(self, sample, transformed, transforms, panel, template, fitted=None, threads: int = 1) -> None:
        self.sample, self.data, self.transforms, self.panel = sample, transformed, transforms, panel
        self.template = template
        self.threads = threads  # for the lymphocyte mixture's starts
        self.fitted: dict[str, Any] = fitted or {}  # pooled: thresholds and scatter gates to apply
        self.learned: dict[str, Any] = {}  # what this run fitted
        self.masks: dict[str, np.ndarray] = {}
        self.parents: dict[str, str] = {}
        self.alias: dict[str, str] = {}  # left-out population -> the population standing in for it
        self.thresholds: dict[str, Threshold | None] = {}
        self.records: list[dict[str, Any]] = []
        self.status: dict[str, str] = {}
        self.indices: dict[str, np.ndarray] = {}

    def events_of(self, population: str) -> np.ndarray:
        """Indices of a population's events (computed once: a parent serves several gates)."""
        if population not in self.indices:
            self.indices[population] = np.flatnonzero(self.masks[population])
        return self.indices[population]

    def resolve(self, population: str) -> str:
        while population in self.alias:
            population = self.alias[population]
        return population

    def run(self, root: np.ndarray) -> None:
        self.masks[ROOT] = root
        gates = self.template["gates"]
        # the last gate that reads each population's events (as its parent, or where one of its
        # thresholds is chosen): its indices, 8 bytes an event, are dropped after that gate
        thresholds = self.template.get("thresholds") or {}
        last_use = {}
        for i, gate in enumerate(gates):
            rule = (gate.get("rule") or {}) if gate.get("method", "rule") == "rule" else {}
            chosen_on = [thresholds[t].get("from", gate["parent"]) for t in rule if t in thresholds]
            for population in (gate["parent"], *chosen_on):
                last_use[population] = i
        for i, gate in enumerate(gates):
            self.gate(gate)
            for population in [p for p, j in last_use.items() if j == i]:
                self.indices.pop(self.resolve(population), None)  # recomputed if a left-out gate needs it later
        del self.masks[ROOT]
        self.indices.clear()

    def gate(self, gate: Mapping[str, Any]) -> None:
        name, parent = gate["population"], self.resolve(gate["parent"])
        method = gate.get("method", "rule")
        record: dict[str, Any] = {"population": name, "parent": parent, "method": method}
        parent_mask = self.masks.get(parent)
        if parent_mask is None or self.status.get(parent) == "na":
            self.masks[name] = np.zeros(self.sample.n_events, dtype=bool)
            self.parents[name] = parent
            self.status[name] = "na"
            self.records.append({**record, "status": "na", "reason": f"parent {parent} is NA"})
            return
        record["events_in"] = int(np.count_nonzero(parent_mask))
        try:
            if method == "rule":
                missing = [t for t in gate["rule"] if self.channel(t) is None]
                if missing:
                    raise _LeftOut(f"marker {', '.join(self.marker(t) for t in missing)} not in the panel")
                # the parent's events that pass every cut: a comparison along whole contiguous
                # channels ANDed with the parent is the same set as comparing the parent's
                # gathered events, at a tenth of the cost
                mask = parent_mask.copy()
                cuts = []
                for t, side in gate["rule"].items():
                    threshold = self.threshold(t, parent)
                    values = self.data[self.channel(t)]
                    mask &= values > threshold.value if side == "above" else values <= threshold.value
                    cuts.append({"threshold": t, "side": side, **self.describe(t, threshold)})
                record.update(channels=[self.channel(t) for t in gate["rule"]], cuts=cuts)
            elif method == "not":
                if gate["of"] in self.alias:
                    raise _LeftOut(f"{gate['of']} is absent, so its complement is undefined")
                other = self.masks.get(gate["of"])
                if other is None:
                    raise _LeftOut(f"{gate['of']} is not gated")
                mask = parent_mask & ~other
                record["of"] = gate["of"]
            else:
                idx = self.events_of(parent)
                # fitted on the parent's events; evaluated, when the parent holds most events,
                # on every event (as a rule gate's cuts) and ANDed with the parent, which
                # gathers nothing; otherwise on the parent's gathered events
                whole = idx.size >= _WHOLE_COLUMNS * self.sample.n_events
                if method == "singlet_ratio":
                    inside, details = self.singlets(idx, float(gate.get("k", 4.0)), name, whole)
                else:
                    inside, details = self.lymphocytes(idx, gate, whole)
                if whole:
                    mask = np.logical_and(inside, parent_mask, out=inside)
                else:
                    mask = np.zeros(self.sample.n_events, dtype=bool)
                    mask[idx[inside]] = True
                record.update(details)
        except _NotAvailable as why:
            self.masks[name] = np.zeros(self.sample.n_events, dtype=bool)
            self.parents[name] = parent
            self.status[name] = "na"
            self.records.append({**record, "status": "na", "reason": str(why)})
            return
        except _LeftOut as why:
            self.alias[name] = parent
            self.status[name] = "absent"
            self.records.append({**record, "status": "absent", "reason": str(why)})
            return
        record["events_out"] = int(np.count_nonzero(mask))
        record["status"] = "ok"
        if record["events_out"] < MIN_EVENTS:
            record.update(status="na", reason=f"fewer than {MIN_EVENTS} events ({record['events_out']})")
            self.masks[name] = mask
            self.parents[name] = parent
            self.status[name] = "na"
            self.records.append(record)
            return
        self.status[name] = "ok"
        if name == "treg" and record["events_out"] < MIN_TREG_EVENTS:
            record["flag"] = f"imprecise: fewer than {MIN_TREG_EVENTS} Treg events"
        self.masks[name] = mask
        self.parents[name] = parent
        self.records.append(record)

    def marker(self, t: str) -> str:
        spec = self.template["thresholds"][t]
        return spec.get("marker") or spec.get("channel")

    def channel(self, t: str) -> str | None:
        spec = self.template["thresholds"][t]
        if "channel" in spec:
            return spec["channel"] if spec["channel"] in self.sample.channels else None
        return self.panel.get(spec["marker"])

    def threshold(self, t: str, parent: str) -> Threshold:
        if t not in self.thresholds and t in self.fitted:
            self.thresholds[t] = self.fitted[t]
            source = "fmo" if self.fitted[t].method == "fmo" else "pooled"
            self.records.append({"threshold": t, "on": source, "channel": self.channel(t), **self.describe(t, self.fitted[t])})
        if t not in self.thresholds:
            spec = self.template["thresholds"][t]
            on = self.resolve(spec.get("from", parent))
            mask = self.masks.get(on)
            if mask is None or np.count_nonzero(mask) < MIN_EVENTS or self.status.get(on) == "na":
                raise _NotAvailable(f"too few events in {on} to choose the {t} threshold")
            values = self.data[self.channel(t)].take(self.events_of(on))
            method = spec.get("method", "valley")
            side = spec.get("side", "upper")
            if method == "valley":
                chosen = valley_threshold(values, fallback=spec.get("fallback", "tail"), side=side,
                                          k=float(spec.get("k", 3.0)), q=float(spec.get("q", 0.95)),
                                          min_depth=float(spec.get("min_depth", 0.25)),
                                          pair=spec.get("pair", "dominant"))
            elif method == "tail":
                chosen = tail_threshold(values, side=side, k=float(spec.get("k", 3.0)))
            else:
                chosen = quantile_threshold(values, float(spec.get("q", 0.95)))
            self.thresholds[t] = self.learned[t] = chosen
            self.records.append({"threshold": t, "on": on, "channel": self.channel(t), **self.describe(t, chosen)})
        return self.thresholds[t]

    def describe(self, t: str, threshold: Threshold) -> dict[str, Any]:
        channel = self.channel(t)
        params = self.transforms.get(channel, {})
        raw = threshold.value
        if params.get("transform") == "logicle":
            raw = float(logicle_inverse(threshold.value, T=params["T"], W=params["W"], M=params["M"], A=params["A"]))
        return {"value": threshold.value, "value_raw": raw, "method_used": threshold.method,
                "fallback": threshold.fallback, "confidence": threshold.confidence, "details": threshold.details}

    def singlets(self, idx: np.ndarray, k: float, name: str = "singlets",
                 whole: bool = False) -> tuple[np.ndarray, dict]:
        """FSC-H / FSC-A of singlets is constant; doublets have a low ratio (FSC-A about twice).

        Returns which events pass: of every event when ``whole``, else of the parent's (``idx``).
        """
        try:
            area, height = self.sample.column("FSC-A"), self.sample.column("FSC-H")
        except PanelError:
            raise _LeftOut("FSC-A and FSC-H are needed") from None
        if whole:
            judged = np.maximum(area, 1.0)
            with np.errstate(invalid="ignore"):  # inf / inf of an event QC removed (not in the parent)
                np.divide(height, judged, out=judged)
            ratio = judged.take(idx)  # the parent's events choose the cut
        else:
            judged = ratio = height.take(idx) / np.maximum(area.take(idx), 1.0)
        if name in self.fitted:
            fit = self.fitted[name]
        else:
            centre = _median(ratio)
            spread = 1.4826 * _median(np.abs(ratio - centre))
            fit = {"ratio_median": centre, "ratio_mad": spread, "cut": centre - k * spread}
        self.learned[name] = fit
        # confidence: how empty the ratio's density is at the cut, relative to its peak
        density = binned_density(ratio, 256) if ratio.size > 1 else None
        confidence = (float(1 - np.interp(fit["cut"], density.grid, density.density) / density.density.max())
                      if density is not None else 0.0)
        cut = {"threshold": "fsc_h_over_a", "side": "above", "value": fit["cut"], "value_raw": fit["cut"],
               "method_used": "median - k MAD", "fallback": None, "confidence": confidence, "k": k}
        return judged >= fit["cut"], {"channels": ["FSC-A", "FSC-H"], "ratio_median": fit["ratio_median"],
                                     "ratio_mad": fit["ratio_mad"], "pooled": name in self.fitted, "cuts": [cut],
                                     "fallback": None, "confidence": confidence}

    def lymphocytes(self, idx: np.ndarray, gate: Mapping[str, Any], whole: bool = False) -> tuple[np.ndarray, dict]:
        """The Gaussian-mixture component nearest the lymphocyte target, to its density quantile.

        The mixture is fitted by :func:`treganalysis.gating.mixture.fit_gaussian_mixture` (EM
        from k-means++ starts, scikit-learn's algorithm) on an evenly spaced subsample (at most
        ``subsample`` events, in file order: the candidates of every stretch of the acquisition
        alike, and of each file of a pooled group in proportion; it assumes events in
        acquisition or block order, not interleaved round-robin from several sources), best of
        ``starts`` starts: a single start ends in a worse optimum that splits the lymphocytes
        for about a quarter of samples. Returns which events are inside: of every event when
        ``whole``, else of the parent's (``idx``).
        """
        try:
            fsc, ssc = self.sample.index("FSC-A"), self.sample.index("SSC-A")
        except PanelError:
            raise _LeftOut("FSC-A and SSC-A are needed") from None
        top = np.array([self.sample.ranges[fsc] or 262144.0, self.sample.ranges[ssc] or 262144.0])
        events = self.sample.events
        name = gate["population"]
        if name in self.fitted:
            fit = self.fitted[name]
        else:
            counts = {key: int(gate.get(key, default)) for key, default in _MIXTURE_COUNTS.items()}
            # evenly spaced in file order: the same subsample for the same events, spread over the
            # whole acquisition, and no random generator to import
            spaced = _spaced(idx.size, counts["subsample"])
            chosen = idx if spaced is None else idx[spaced]
            fit_on = np.column_stack((events[:, fsc][chosen], events[:, ssc][chosen])) / top  # to [0, 1]
            try:
                gmm = fit_gaussian_mixture(fit_on, counts["components"], seed=0, n_init=counts["starts"],
                                           threads=self.threads)
            except ValueError as exc:  # too few distinct events, a singular component
                raise _NotAvailable(f"the lymphocyte mixture cannot be fitted ({exc})") from None
            best = _lymphocyte_component(gmm.means, gmm.weights, gate.get("target", "auto"))
            # confidence: mean posterior of the chosen component over the events it claims
            posterior = predict_proba(gmm, fit_on)[:, best]
            claimed = posterior > 0.5
            fit = {"mean": gmm.means[best], "covariance": gmm.covariances[best], "weight": float(gmm.weights[best]),
                   # the chi-square quantile with 2 degrees of freedom, in closed form
                   "distance_square": -2.0 * math.log1p(-float(gate.get("quantile", 0.95))),
                   "confidence": float(posterior[claimed].mean()) if claimed.any() else 0.0,
                   "fit": {"events": int(fit_on.shape[0]), "starts": counts["starts"],
                           "iterations": gmm.n_iter, "converged": gmm.converged,
                           "log_likelihood": gmm.log_likelihood}}
        self.learned[name] = fit
        try:
            # in the file's units: the same ellipse, without scaling every event
            points = (_column_pair(events, fsc, ssc) if whole
                      else np.column_stack((events[:, fsc].take(idx), events[:, ssc].take(idx))))
            inside = ellipse(points, fit["mean"] * top, fit["covariance"] * np.outer(top, top), fit["distance_square"])
        except ValueError as exc:  # a degenerate fit (e.g. garbage events): this gate cannot be drawn
            raise _NotAvailable(f"the lymphocyte mixture is degenerate ({exc})") from None
        return inside, {
            "channels": ["FSC-A", "SSC-A"], "mean": (fit["mean"] * top).tolist(),
            "covariance": (fit["covariance"] * np.outer(top, top)).tolist(),
            "distance_square": fit["distance_square"], "weight": fit["weight"], "pooled": name in self.fitted,
            "fallback": None, "confidence": fit.get("confidence", 0.0), "mixture": fit.get("fit")}


def _column_pair(events: np.ndarray, i: int, j: int) -> np.ndarray:
    """Columns ``i`` and ``j`` of ``events`` as an (n, 2) view, not a copy (a copy for ``i == j``,
    which a slice cannot step)."""
    if i == j:
        return events[:, [i, j]]
    low, high = min(i, j), max(i, j)
    pair = events[:, low : high + 1 : high - low]
    return pair if i < j else pair[:, ::-1]


def _lymphocyte_component(means: np.ndarray, weights: np.ndarray, target: Any) -> int:
    """The mixture component of the lymphocytes.

    ``target: auto`` (the default): the heaviest of the components in the lower half by SSC,
    since in PBMC lymphocytes are the most numerous low-side-scatter cells whatever the
    instrument's scale (spectral cytometers' FSC range is 16 times a conventional one). A pair
    ``[fsc, ssc]`` (fractions of ``$PnR``) picks the component nearest to it instead.
    """
    if isinstance(target, str):
        if target != "auto":
            raise GatingError(f"lymphocyte target must be 'auto' or [fsc, ssc], not {target!r}")
        low_ssc = np.argsort(means[:, 1])[: (len(means) + 1) // 2]
        return int(low_ssc[np.argmax(weights[low_ssc])])
    return int(np.argmin(np.linalg.norm(means - np.asarray(target, dtype=float), axis=1)))


class _LeftOut(Exception):
    """A gate that cannot be drawn for this panel (its reason goes into the record)."""


class _NotAvailable(Exception):
    """A gate that cannot be drawn for this sample (too few events): NA, not absent."""


def _sha256(path: Path | None, stop: threading.Event | None = None) -> str | None:
    """The file's SHA-256 (hex), read by blocks of 1 MB; None without a path. A RuntimeError once
    ``stop`` is set."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            if stop is not None and stop.is_set():
                raise RuntimeError(f"{path}: the SHA-256 was stopped before the end of the file")
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _sha256_beside(path: Path | None) -> Iterator[Callable[[], str | None]]:
    """Hash ``path`` in a thread while the block runs; yields a function that waits for the digest
    (to be called inside the block: after it, a hash that was stopped raises its RuntimeError).

    ``hashlib`` releases the GIL on large blocks, so the hash (about 1 s per GB) runs beside
    the gating instead of before or after it. Leaving the block stops the hash if it is still
    running (the gating failed) and waits for its thread, so that it does not read on beside
    whatever the process does next (the next file of a job).
    """
    found: list[str | None] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            found.append(_sha256(path, stop))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=work, name="sha256", daemon=True)
    thread.start()

    def digest() -> str | None:
        thread.join()
        if failed:
            raise failed[0]
        return found[0]

    try:
        yield digest
    finally:
        stop.set()
        thread.join()


def _versions() -> dict[str, str | None]:
    """Versions of what decides a sample's numbers: Python, numpy and PyYAML; a gating job uses
    nothing else (scipy, pandas and scikit-learn no longer take part). PyYAML's is the version
    loaded in the process, None when none is: a gating job loads it only to read a YAML
    template or config (the default template and a workflow's settings come as JSON)."""
    import platform

    yaml = sys.modules.get("yaml")
    return {"python": platform.python_version(), "numpy": np.__version__,
            "pyyaml": getattr(yaml, "__version__", None)}


def _version() -> str:
    from .. import __version__

    return __version__
