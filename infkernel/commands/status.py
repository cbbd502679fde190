"""`infkernel status K.zarr`: how far a kernel store has got: chunks done of
the total, those started and not done, the rate of the last run and the time
left, and whether it is complete. Exit status 0 when complete, 1 when not,
2 when K.zarr is not a store."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("store", metavar="K.zarr", help="a store written by `infkernel kernel ... --out K.zarr`")


def run(args) -> int:
    from ..engine.zarr_store import ZarrStore
    store = ZarrStore.open(args.store, mode="r")
    s = store.status()
    meta, plan = store.meta, store.plan
    state = "complete" if s["complete"] else "unfinished (run the same command again to resume it)"
    print(f"{args.store}: {state}")
    percent = 100 * s["done"] / max(s["total"], 1)
    print(f"chunks: {s['done']} of {s['total']} done ({percent:.1f} %), {s['in_flight']} started and not done")
    if s["rate"] is not None:
        runner = meta["runs"][-1]["runner"]
        left = "" if s["complete"] else f", about {(s['total'] - s['done']) / s['rate']:.0f} s left at that rate"
        print(f"rate: {s['rate']:.3g} chunks/s in the last run ({runner}){left}")
    n1, n2 = store.shape
    how = "x2 = x1: tiles on and above the diagonal computed, stored both ways" if store.symmetric else "x2 given"
    print(f"kernel: {' and '.join(store.kinds)} {n1}x{n2} {plan.dtype}, chunks {plan.side}x{plan.side}, {how}")
    return 0 if s["complete"] else 1
