"""Test harnesses that know the whole constellation (and so live above the services):
``chaos``, the replicated constellation, faults, workload and invariants of ``tests/chaos``."""

__all__: list[str] = []
