"""Per-caller token buckets and running-job slots, on a hand-driven clock."""

from __future__ import annotations

import pytest

from service.errors import RateLimited
from service.security.quotas import JobSlots, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_next_request_waits_for_its_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    for _ in range(3):
        buckets.take("alice")
    with pytest.raises(RateLimited) as info:
        buckets.take("alice")
    assert info.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    buckets.take("alice")
    with pytest.raises(RateLimited):
        buckets.take("alice")


def test_buckets_are_per_caller_and_refill_only_to_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 2, clock=clock)
    buckets.take("alice")
    buckets.take("alice")
    buckets.take("bob")  # alice's empty bucket is not bob's
    clock.now += 1000
    buckets.take("alice")
    buckets.take("alice")
    with pytest.raises(RateLimited):
        buckets.take("alice")


def test_a_refused_request_does_not_spend_a_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 1, clock=clock)
    buckets.take("alice")
    for _ in range(5):
        with pytest.raises(RateLimited):
            buckets.take("alice")
    clock.now += 1.0
    buckets.take("alice")


def test_rate_zero_is_no_limit() -> None:
    buckets = TokenBuckets(0.0, 1)
    for _ in range(1000):
        buckets.take("alice")


def test_the_least_recently_used_bucket_is_dropped_past_max_keys() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 1, clock=clock, max_keys=2)
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")  # drops a's (empty) bucket
    buckets.take("a")  # a starts full again
    with pytest.raises(RateLimited):
        buckets.take("c")


def test_job_slots_limit_each_caller_and_free_on_exit() -> None:
    slots = JobSlots(2, retry_after_s=3.0)
    with slots.hold("alice"), slots.hold("alice"):
        assert slots.running("alice") == 2
        with pytest.raises(RateLimited) as info:
            slots.acquire("alice")
        assert info.value.retry_after_s == 3.0
        with slots.hold("bob"):
            assert slots.running("bob") == 1
    assert slots.running("alice") == 0


def test_a_job_that_raises_frees_its_slot() -> None:
    slots = JobSlots(1)
    with pytest.raises(ZeroDivisionError), slots.hold("alice"):
        1 / 0  # noqa: B018
    slots.acquire("alice")
    assert slots.running("alice") == 1


def test_job_limit_zero_is_no_limit() -> None:
    slots = JobSlots(0)
    for _ in range(100):
        slots.acquire("alice")
    assert slots.running("alice") == 100


def test_job_slots_count_every_callers_running_jobs_together() -> None:
    slots = JobSlots(2)
    with slots.hold("a"), slots.hold("b"):
        assert slots.total == 2
        with slots.hold("a"):
            assert slots.total == 3
        assert slots.total == 2
    assert slots.total == 0
    slots.release("nobody")  # an unpaired release never drives the count below zero
    assert slots.total == 0
