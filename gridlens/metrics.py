"""Prometheus metric types for every GridLens process, without *_created series.

prometheus-client adds a `_created` timestamp series to each counter and
histogram; no dashboard or alert here uses them, and they double what each
scrape carries. Define metrics with the types imported from here.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

__all__ = ["Counter", "Gauge", "Histogram"]
