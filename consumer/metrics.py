"""Prometheus metrics of a consumer process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READS_INSERTED = Counter(
    "gridlens_consumer_reads_inserted_total", "Reads inserted into meter_reads_electric."
)
READS_DUPLICATE = Counter(
    "gridlens_consumer_reads_duplicate_total", "Reads skipped because they were already stored."
)
JOBS = Counter("gridlens_consumer_jobs_total", "Jobs finished, by outcome.", ["outcome"])
INSERT_SECONDS = Histogram(
    "gridlens_consumer_insert_duration_seconds",
    "Time to insert and commit one job.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT_LIMIT = Gauge(
    "gridlens_consumer_in_flight_limit", "Jobs this process may have in flight at once."
)
