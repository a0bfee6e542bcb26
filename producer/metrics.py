"""Prometheus metrics of publishing (exported by the API process)."""

from __future__ import annotations

from gridlens.metrics import Counter, Gauge, Histogram

READS_ENQUEUED = Counter("gridlens_publish_reads_enqueued_total", "Reads written to the stream.")
JOBS_ENQUEUED = Counter("gridlens_publish_jobs_enqueued_total", "Jobs written to the stream.")
PUBLISHES = Counter(
    "gridlens_publish_requests_total",
    "publish-once requests by outcome: ok, dry_run, refused (429), rejected (400/413), "
    "failed (503).",
    ["outcome"],
)
PUBLISH_SECONDS = Histogram(
    "gridlens_publish_duration_seconds",
    "Time from admission to the last job written, for publishes that ran.",
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 30.0, 60.0),
)
RESERVED_JOBS = Gauge(
    "gridlens_publish_reserved_jobs",
    "Delayed jobs (reserved by publishes in progress) right after this process's last admission.",
)
