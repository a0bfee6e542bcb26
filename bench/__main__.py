"""Run every benchmark, or those named: ``python -m bench [name ...]``."""

from __future__ import annotations

import importlib
import sys

# soak runs on its own: make soak
BENCHMARKS = (
    "generate",
    "publish",
    "insert",
    "consume",
    "kpi",
    "partition_span",
    "load",
    "theft",
    "failover",
    "page",
)


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(
            f"== bench {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}"
        )
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
