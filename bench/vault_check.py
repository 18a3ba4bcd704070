"""What it costs that every seal and unseal asks the vault whether the person was erased.

``SQLiteKeyVault.keys_for`` used to answer from its cache of unwrapped keys alone, so a
process kept sealing and unsealing for a person another process had erased. Now every call
reads the vault's erasure count first (one primary-key read) and forgets its cached keys if
it moved.
This script measures both in the same run, on one vault file, and prints the ratio:

    .venv/bin/python bench/vault_check.py [--people 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ledger.sealing import SQLiteKeyVault


class CacheOnlyVault(SQLiteKeyVault):
    """The old behaviour: cached keys are trusted (the baseline)."""

    def keys_for(self, pseudonyms: Iterable[str], create: bool = True) -> dict[str, Any]:
        wanted = list(pseudonyms)
        if all(p in self._cache for p in wanted):
            return {p: self._cache[p] for p in wanted}
        return super().keys_for(wanted, create)


def per_call(fn: Callable[[], object], repeat: int, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    args = parser.parse_args()
    master = os.urandom(32)
    folder = Path(tempfile.mkdtemp())
    people = [f"p_{i:032d}" for i in range(args.people)]
    checked = SQLiteKeyVault(folder / "vault.db", master)
    baseline = CacheOnlyVault(folder / "vault.db", master)
    for vault in (checked, baseline):
        vault.keys_for(people)
    one = people[len(people) // 2]
    rows = [
        ("one person (an unseal)", lambda v: per_call(lambda: v.keys_for([one], create=False),
                                                      5000)),
        (f"{args.people} people (a publish batch)", lambda v: per_call(
            lambda: v.keys_for(people), 50)),
    ]
    print(f"{'keys_for':<32} {'cache only':>12} {'checked':>12} {'ratio':>7}")
    for label, measure in rows:
        base, new = measure(baseline), measure(checked)
        print(f"{label:<32} {base * 1e6:>10.1f}us {new * 1e6:>10.1f}us {new / base:>6.1f}x")


if __name__ == "__main__":
    main()
