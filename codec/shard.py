"""Running one command as several processes under torchrun, on one machine or many.

`Shard` is this process's place in the run (torchrun's RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE; one process alone is rank 0 of 1): the one place that reads them, for
encode, decode, bench and train alike.

`Board` is what a sharded batch command shares, with no process group: torchrun's own
key-value store (the TCPStore every worker reaches at MASTER_ADDR:MASTER_PORT, on every node)
holds a queue of batches (`claim`: a process that is slow, or on a slower machine, simply
claims fewer), the count of inputs done (rank 0 draws the one progress bar from it), a
barrier, and each rank's report rows for rank 0 to merge. A process that dies loses only
the batch it held; its files already written stay, and `--skip-existing` finishes the run.
One process alone gets the same Board in memory.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from codec.errors import PercodecError

#: How long a process waits for the others at a barrier or for their rows (a dead process
#: makes torchrun stop the rest well before this).
WAIT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Shard:
    """This process's place in a torchrun run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        """From torchrun's variables; a malformed or inconsistent one is a PercodecError."""
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
        defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
        try:
            rank, world, local_rank = (int(os.environ.get(n, defaults[n])) for n in names[:3])
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            raise PercodecError(f"{', '.join(names)} must be whole numbers (torchrun sets them)") from None
        if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
            raise PercodecError(f"RANK {rank}, WORLD_SIZE {world}, LOCAL_RANK {local_rank} do not fit together")
        return cls(rank, world, local_rank, local_world)

    @property
    def main(self) -> bool:
        """Rank 0: the process that draws the progress bar and writes the merged report."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def cpu_threads(self) -> int:
        """This process's share of the machine's cores (torchrun runs local_world on it)."""
        return max(1, (os.cpu_count() or 1) // self.local_world)


class Board:
    """What the processes of one sharded command share (see the module doc); `name` keeps
    two commands of one torchrun run apart."""

    def __init__(self, shard: Shard, name: str) -> None:
        self.shard = shard
        # torch's Store under torchrun, else the same calls in memory (no torch import: the
        # command line starts its face finder before torch loads)
        self.store: Any = _store(name) if shard.sharded else _LocalStore()

    def claim(self) -> int:
        """The next batch's number (0, 1, ...): each is handed to exactly one process."""
        return self.store.add("next", 1) - 1

    def batches(self, todo: Sequence[int], size: int) -> Iterator[list[int]]:
        """The batches of `todo` (consecutive runs of `size`) this process claims, as it asks
        for them; every process gets a disjoint share and together they cover `todo`."""
        n = -(-len(todo) // size)
        while (b := self.claim()) < n:
            yield list(todo[b * size : (b + 1) * size])

    def done(self, n: int = 0) -> int:
        """Add n inputs finished by this process; the count over every process."""
        return self.store.add("done", n)

    def barrier(self, name: str) -> None:
        """Wait until every process has reached this point."""
        self.store.set(f"{name}/{self.shard.rank}", "1")
        self.store.wait([f"{name}/{r}" for r in range(self.shard.world)], WAIT)

    def gather(self, rows: list[dict]) -> list[list[dict]] | None:
        """Every process's rows, by rank, on rank 0 (None on the others)."""
        self.store.set(f"rows/{self.shard.rank}", json.dumps(rows))
        if not self.shard.main:
            return None
        keys = [f"rows/{r}" for r in range(self.shard.world)]
        self.store.wait(keys, WAIT)
        return [json.loads(self.store.get(k)) for k in keys]


def _store(name: str) -> Any:
    """A client of torchrun's store, under a prefix of this command (and restart)."""
    import torch.distributed as dist

    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError):
        raise PercodecError("a sharded run needs torchrun's MASTER_ADDR and MASTER_PORT") from None
    store = dist.TCPStore(host, port, is_master=False, timeout=WAIT, wait_for_workers=False)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"percodec/{name}/{attempt}", store)


class _LocalStore:
    """The part of a torch Store that Board uses, in memory, for one process alone."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def add(self, key: str, n: int) -> int:
        self.values[key] = int(self.values.get(key, 0)) + n
        return int(self.values[key])

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def get(self, key: str) -> bytes:
        return str(self.values[key]).encode()

    def wait(self, keys: list[str], timeout: datetime.timedelta) -> None:
        missing = [k for k in keys if k not in self.values]  # one process: its own keys, set already
        if missing:
            raise PercodecError(f"no process set {missing[0]} (a one-process run waited for another)")
