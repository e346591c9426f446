"""``python -m lhtrio.bench NAME [NAME ...]``: run the named benchmarks and print their tables."""

from __future__ import annotations

import argparse
import importlib
import sys

from lhtrio.process import tune_gc

SUITES = {
    "wire": "lhtrio.bench.wire",
    "rpc": "lhtrio.bench.rpc",
    "replica": "lhtrio.bench.replica",
    "nbd": "lhtrio.bench.nbd",
    "rebuild": "lhtrio.bench.rebuild",
    "node": "lhtrio.bench.node",
    "store": "lhtrio.bench.store",
    "control": "lhtrio.bench.control",
    "api": "lhtrio.bench.api",
    "scale": "lhtrio.bench.scale",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lhtrio.bench")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--volumes",
        type=int,
        metavar="N",
        help="control, scale: how many volumes (control: 100; scale: a curve)",
    )
    parser.add_argument(
        "--nodes", type=int, metavar="N", help="scale: one run of N nodes (and --volumes)"
    )
    parser.add_argument(
        "--losses",
        type=int,
        metavar="N",
        help="scale: nodes lost one after another in the run of --nodes (default 2)",
    )
    parser.add_argument("--profile", action="store_true", help="scale: cProfile's top functions")
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="URL",
        help="store: also measure the store at URL (kubernetes:KUBECONFIG, etcd://HOST:PORT)",
    )
    args = parser.parse_args(argv)
    tune_gc()  # as in lhtrio's own processes; applies to the yardsticks' clients alike
    unknown = [name for name in args.names if name not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    for name in args.names or list(SUITES):
        module = importlib.import_module(SUITES[name])
        if name == "scale":
            module.main(
                quick=args.quick,
                volumes=args.volumes,
                nodes=args.nodes,
                losses=args.losses,
                profile=args.profile,
            )
        elif name == "control" and args.volumes:
            module.main(quick=args.quick, volumes=args.volumes)
        elif name == "store" and args.store:
            module.main(quick=args.quick, urls=args.store)
        else:
            module.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
