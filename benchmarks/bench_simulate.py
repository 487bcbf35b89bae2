"""Time the simulator on one large sample: generating events and writing the FCS file.

Writing is compared side by side with FlowIO's ``create_fcs`` on the same events (the writer
FlowKit uses). A measurement tool, not a test: it asserts nothing about timings.

    python benchmarks/bench_simulate.py [--events 1000000] [-k 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import flowio
import numpy as np

import treganalysis as ta
from treganalysis.simulate import SampleSpec, load_config, simulate_events
from treganalysis.simulate import _write_sample as write_simulated


def best_of(k: int, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(k):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("-k", "--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_config()
    spec = SampleSpec(n_events=args.events, cd4=dict(config["cd4"]["patient"]))
    sim = simulate_events(spec, config, np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as folder:
        ours_path, theirs_path = Path(folder) / "ours.fcs", Path(folder) / "flowio.fcs"
        generate = best_of(args.repeats, lambda: simulate_events(spec, config, np.random.default_rng(0)))
        write = best_of(args.repeats, lambda: write_simulated(ours_path, sim.events, config, np.random.default_rng(0), "s", 0))
        sample = ta.read_fcs(ours_path)

        def flowio_write() -> None:
            with open(theirs_path, "wb") as fh:
                flowio.create_fcs(fh, sim.events.ravel(), sample.channels, opt_channel_names=sample.markers,
                                  metadata_dict={"timestep": sample.metadata["$TIMESTEP"]})

        theirs = best_of(args.repeats, flowio_write)
        same = np.array_equal(ta.read_fcs(theirs_path).events, sample.events)
    n = f"{args.events:,} events x {sim.events.shape[1]} channels"
    print(f"simulator, {n}, best of {args.repeats}")
    print(f"  generate events (classes, spillover, noise)   {generate:8.3f} s")
    print(f"  write FCS 3.1 (treganalysis.write_fcs)        {write:8.3f} s")
    print(f"  write FCS 3.1 (flowio.create_fcs, same data)  {theirs:8.3f} s   ratio {theirs / write:5.1f}x")
    print(f"  both files read back identical: {same}")


if __name__ == "__main__":
    main()
