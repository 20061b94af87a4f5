"""Per-variant overhead of a sweep: in-memory grafts that reuse the triple's loaded tensors vs
reloading the checkpoints for every variant (what a sweep without lensft's cache would do).

    python benchmarks/bench_study.py [--organism quick] [--variants 8]

Prints the mean seconds per variant of each strategy (model construction only, no probe).
"""

from __future__ import annotations

import argparse
import statistics
import time

from lensft import organism
from lensft.checkpoints.load import load_triple
from lensft.graft import GraftSpec, graft_model
from lensft.study.plan import bands


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--organism", default="quick")
    ap.add_argument("--variants", type=int, default=8)
    a = ap.parse_args()
    b = organism.build(a.organism)
    specs = [GraftSpec.build(mha=m, ffn=h, host=h, layers=band) for h, m in (("short", "long"), ("long", "short"))
             for band in bands(b.config.model.n_layers, 1)][: a.variants]

    triple = load_triple(base=b.base, short=b.short, long=b.long)
    t0 = time.perf_counter()
    graft_model(triple, specs[0])  # first variant reads the checkpoints
    first = time.perf_counter() - t0
    reuse = []
    for s in specs:
        t0 = time.perf_counter()
        graft_model(triple, s)
        reuse.append(time.perf_counter() - t0)

    reload = []
    for s in specs:
        t0 = time.perf_counter()
        fresh = load_triple(base=b.base, short=b.short, long=b.long)  # reopen + reread per variant
        graft_model(fresh, s)
        fresh.release()
        reload.append(time.perf_counter() - t0)
    print(f"organism {a.organism}: {len(specs)} layer-band grafts")
    print(f"  first variant (reads checkpoints):      {first:.3f} s")
    print(f"  reuse loaded tensors, per variant:      {statistics.mean(reuse):.3f} s")
    print(f"  reload checkpoints, per variant:        {statistics.mean(reload):.3f} s")
    print(f"  overhead saved per variant:             {statistics.mean(reload) - statistics.mean(reuse):.3f} s "
          f"({statistics.mean(reload) / max(statistics.mean(reuse), 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
