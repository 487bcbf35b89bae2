"""Time a whole sample, FCS file to population table, next to FlowKit applying the same gates.

treganalysis reads, compensates, transforms, chooses every threshold from the data and gates the
Treg hierarchy (`gate_sample`); FlowKit is given the gates treganalysis chose (exported as
GatingML) and only has to apply them to the same file (`Sample` + `GatingStrategy.gate_sample`,
`use_mp` off), so the ratio understates the difference in work. A measurement tool, not a test.

    python benchmarks/bench_gating.py [--events 1000000] [-k 3] [--file PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import flowkit as fk
import numpy as np

import treganalysis as ta
from treganalysis.simulate import SampleSpec, _write_sample, load_config, simulate_events


def best_of(k: int, fn) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(k):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("-k", "--repeats", type=int, default=3)
    parser.add_argument("--file", help="an FCS file to gate instead of a simulated sample")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.file) if args.file else Path(folder) / "sample.fcs"
        if not args.file:
            config = load_config()
            sim = simulate_events(SampleSpec(n_events=args.events, cd4=dict(config["cd4"]["patient"])), config,
                                  np.random.default_rng(0))
            _write_sample(path, sim.events, config, np.random.default_rng(0), "bench", 0)
        ours, result = best_of(args.repeats, lambda: ta.gate_sample(ta.read_fcs(path)))
        xml = result.to_gatingml(Path(folder) / "gates.xml")
        strategy = fk.parse_gating_xml(str(xml))

        def flowkit_apply():
            return strategy.gate_sample(fk.Sample(str(path), ignore_offset_error=True))

        theirs, fk_result = best_of(args.repeats, flowkit_apply)
        agreement = min(float(np.mean(fk_result.get_gate_membership(p) == result.mask(p))) for p in result.masks)
    n = result.sample.n_events
    print(f"{path.name}: {n:,} events x {result.sample.n_channels} channels, {len(result.masks)} populations, best of {args.repeats}")
    print(f"  treganalysis: read, compensate, Logicle, choose and apply every gate, table  {ours:7.3f} s")
    print(f"  FlowKit: read, compensate, Logicle, apply the same gates                  {theirs:7.3f} s   ratio {theirs / ours:4.1f}x")
    print(f"  lowest per-population agreement of the memberships: {agreement:.5f}")


if __name__ == "__main__":
    main()
