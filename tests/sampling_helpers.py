"""Helpers shared by the sampling tests: a sampling job killed part-way through its batches."""
from __future__ import annotations

from sparse_guidance import sample_set


def kill_sampling_at(monkeypatch, call: int) -> list:
    """Make the `call`-th batch of sampling raise KeyboardInterrupt (a job killed after call - 1
    finished batches; every later call samples again). Returns the list that counts the calls."""
    real, calls = sample_set.sample, []

    def dies(*a, **k):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(sample_set, "sample", dies)
    return calls
