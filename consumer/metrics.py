"""Prometheus metrics of a consumer process."""

from __future__ import annotations

from gridlens.metrics import Counter, Gauge, Histogram

READS_INSERTED = Counter(
    "gridlens_consumer_reads_inserted_total", "Reads inserted into meter_reads_electric."
)
READS_DUPLICATE = Counter(
    "gridlens_consumer_reads_duplicate_total",
    "Reads skipped because they were already stored (a redelivery or a re-publish).",
)
MAX_TENANT_LABELS = 50  # tenants are chosen by clients: the series per process stay bounded
_labelled_tenants: set[str] = set()


def tenant_label(tenant_id: str) -> str:
    """The tenant's own label for the first MAX_TENANT_LABELS tenants seen, "other" after."""
    if tenant_id in _labelled_tenants or len(_labelled_tenants) < MAX_TENANT_LABELS:
        _labelled_tenants.add(tenant_id)
        return tenant_id
    return "other"


LATE_READS = Counter(
    "gridlens_consumer_late_reads_total",
    "Reads stored late: a buffered comms outage's missed reads, delivered after it.",
    ["tenant"],
)
LATENESS_SECONDS = Histogram(
    "gridlens_consumer_read_lateness_seconds",
    "Read time to stored time of each late job (a buffered outage's backlog), per tenant"
    " (the first 50 a process sees; the rest as other).",
    ["tenant"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800),
)
JOBS = Counter(
    "gridlens_consumer_jobs_total",
    "Jobs finished, by outcome: inserted, failed (left for redelivery), dead_lettered.",
    ["outcome"],
)
INSERT_SECONDS = Histogram(
    "gridlens_consumer_insert_duration_seconds",
    "Time to insert and commit one job.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INSERT_RETRIES = Counter(
    "gridlens_consumer_insert_retries_total", "Inserts retried after a transient error."
)
IN_FLIGHT_LIMIT = Gauge(
    "gridlens_consumer_in_flight_limit", "Jobs this process may have in flight at once (5-10)."
)
CLAIMS = Counter("gridlens_consumer_claims_total", "Entries taken over from idle (dead) consumers.")
DEAD_LETTERS = Counter(
    "gridlens_consumer_dead_letters_total", "Entries moved to the dead-letter stream."
)
QUEUE_WAITING = Gauge(
    "gridlens_consumer_queue_waiting_jobs",
    "Entries not yet delivered to any consumer, after this process's last job (lag).",
)
QUEUE_PENDING = Gauge(
    "gridlens_consumer_queue_pending_jobs",
    "Entries delivered but not yet acknowledged, after this process's last job.",
)
