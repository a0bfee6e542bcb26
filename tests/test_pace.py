"""The rate figures a publish reports, from its own jobs' server times (pure)."""

from __future__ import annotations

from producer.pace import PaceLog, fullest_window


def paced(cap: int, jobs: int, reads: int, jitter_us: int = 0) -> PaceLog:
    """Jobs written exactly as the limiter spaces them: n / cap seconds apart, or later."""
    log = PaceLog(cap)
    written = 1_700_000_000_000_000
    for job in range(jobs):
        log.add(written, reads)
        written += reads * 1_000_000 // cap + (jitter_us if job % 3 else 0)
    return log


def test_a_publish_paced_at_the_cap_reports_the_cap_and_never_more() -> None:
    log = paced(2_500, jobs=50, reads=500)
    assert log.fullest_second() == 2_500
    assert log.average_per_second() == 2_500.0


def test_slower_writes_report_less() -> None:
    log = paced(2_500, jobs=50, reads=500, jitter_us=50_000)
    assert log.fullest_second() == 2_500
    assert 2_000 < (log.average_per_second() or 0) < 2_500


def test_the_span_from_the_first_write_to_the_last_would_overstate_the_rate() -> None:
    log = paced(2_500, jobs=50, reads=500)
    span_s = (log.written_us[-1] - log.written_us[0]) / 1e6
    assert 25_000 / span_s > 2_500  # the figure the API used to report
    assert (log.average_per_second() or 0) <= 2_500


def test_no_job_written_has_no_average() -> None:
    assert PaceLog(2_500).average_per_second() is None
    assert PaceLog(2_500).fullest_second() == 0


def test_the_fullest_window_is_half_open() -> None:
    assert fullest_window([(0, 5), (999, 5), (1_000, 5)], 1_000) == 10
    assert fullest_window([(0, 5), (1_000, 5), (1_999, 5), (2_000, 1)], 1_000) == 10
