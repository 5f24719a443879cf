"""Entropy coding of a latent vector under the learned prior, with constriction's ANS coder.

The prior's density is turned into integer probability tables once, when a model is
exported (`build_tables`), and the tables are stored in the model file; coding then only
reads integers, so encoder and decoder agree bit for bit on any machine. Per level
(a quantisation step) and latent dimension, a table covers the symbols whose bins hold all
but `TAIL` of the mass; symbols outside are clamped into it (the search sees the clamp).

constriction (a maintained Rust coder with numpy-only Python bindings) does the coding:
each dimension is one categorical symbol, pushed onto an ANS stack; the payload is its
32-bit words, little-endian, less the zero bytes at the very end (the top of the coder's
final state, whose last word is never zero): the decoder puts them back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from codec.prior import FactorizedPrior

#: Probability mass left outside a table, split between the two tails.
TAIL = 1e-6
#: Tables hold integer counts summing to 2^PRECISION, each at least 1.
PRECISION = 16
#: Widest table (symbols per dimension and level).
MAX_SYMBOLS = 1024
#: Stored counts are count - COUNT_BIAS, so that 1..2^PRECISION fits int16.
COUNT_BIAS = (1 << (PRECISION - 1)) + 1


class CodingError(ValueError):
    """A payload that does not decode to exactly one latent vector."""


@dataclass(frozen=True)
class LevelTables:
    """Integer tables of one quantisation step: symbol k of dimension d (offset[d] <= k <
    offset[d] + len) has probability counts[d, k - offset[d]] / 2^PRECISION; columns past
    a dimension's `lengths[d]` are zero."""

    step: float
    offsets: np.ndarray  # (nz,) int64
    lengths: np.ndarray  # (nz,) int64
    counts: np.ndarray  # (nz, K) int32

    def packed(self) -> dict[str, np.ndarray]:
        """The tables as stored in a model file: int16 offsets and lengths, and each dimension's
        counts (1..2^16) back to back, less COUNT_BIAS so that they fit int16 — a quarter of the
        padded int32 table's size, and the same integers."""
        flat = np.concatenate([self.counts[d, :n] for d, n in enumerate(self.lengths)]).astype(np.int64)
        return {
            "offsets": self.offsets.astype(np.int16),
            "lengths": self.lengths.astype(np.int16),
            "packed": (flat - COUNT_BIAS).astype(np.int16),
        }

    @classmethod
    def unpack(cls, step: float, offsets: np.ndarray, lengths: np.ndarray, packed: np.ndarray) -> LevelTables:
        """The inverse of `packed`; ValueError if the parts do not fit together."""
        lengths = lengths.astype(np.int64)
        if len(offsets) != len(lengths) or (lengths < 1).any() or int(lengths.sum()) != len(packed):
            raise ValueError("table parts do not fit together")
        counts = np.zeros((len(lengths), int(lengths.max())), dtype=np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = packed.astype(np.int64) + COUNT_BIAS
        for d, (a, n) in enumerate(zip(starts, lengths, strict=True)):
            counts[d, :n] = flat[a : a + n]
        return cls(step, offsets.astype(np.int64), lengths, counts)

    @cached_property
    def _models(self) -> list:
        import constriction  # native module: its submodules are attributes, not importable paths

        return [
            constriction.stream.model.Categorical(self.counts[d, : self.lengths[d]].astype(np.float64), perfect=False)
            for d in range(len(self.offsets))
        ]

    def bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Each dimension's lowest and highest symbol in the tables, (nz,) each."""
        lo = torch.as_tensor(self.offsets, device=device)
        return lo, lo + torch.as_tensor(self.lengths, device=device) - 1

    def clamp(self, symbols: torch.Tensor) -> torch.Tensor:
        return symbols.clamp(*self.bounds(symbols.device))

    def encode(self, symbols: np.ndarray) -> bytes:
        """One latent's symbols (nz,) -> payload bytes (must lie inside the tables)."""
        coder = new_coder()
        self.push(coder, symbols)
        return finish(coder)

    def push(self, coder: object, symbols: np.ndarray) -> None:
        """Put one latent's symbols (nz,) on an ANS stack (`pop` takes them off in order)."""
        idx = np.asarray(symbols, dtype=np.int64) - self.offsets
        if (idx < 0).any() or (idx >= self.lengths).any():
            raise ValueError("symbol outside its table: clamp first")
        for d in reversed(range(len(idx))):  # a stack: push in reverse so decoding pops in order
            coder.encode_reverse(np.array([idx[d]], dtype=np.int32), self._models[d])

    def pop(self, coder: object) -> np.ndarray:
        """The nz symbols on top of an ANS stack; CodingError when the data runs out."""
        try:  # one scalar at a time (no array per symbol: half the time of decode(model, 1))
            out = np.fromiter((coder.decode(m) for m in self._models), dtype=np.int64, count=len(self._models))
        except Exception as exc:  # constriction raises its own errors on exhausted data
            raise CodingError(f"payload does not decode ({exc})") from None
        return out + self.offsets

    def push_rows(self, coder: object, symbols: np.ndarray, rows: np.ndarray) -> None:
        """Put symbols coded with table rows `rows` (same shape) on an ANS stack, the
        symbols of one row together (`pop_rows` with the same rows takes them off)."""
        symbols, rows = np.asarray(symbols, dtype=np.int64).ravel(), np.asarray(rows).ravel()
        idx = symbols - self.offsets[rows]
        if (idx < 0).any() or (idx >= self.lengths[rows]).any():
            raise ValueError("symbol outside its table: clamp first")
        order = np.argsort(rows, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(rows[order])) + 1)
        for g in reversed(groups):
            coder.encode_reverse(idx[g].astype(np.int32), self._models[rows[g[0]]])

    def pop_rows(self, coder: object, rows: np.ndarray) -> np.ndarray:
        """The symbols `push_rows` put on the stack with these rows, in rows' shape."""
        shape, rows = np.shape(rows), np.asarray(rows).ravel()
        out = np.empty(len(rows), dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        try:
            for g in np.split(order, np.flatnonzero(np.diff(rows[order])) + 1):
                out[g] = coder.decode(self._models[rows[g[0]]], len(g))
        except Exception as exc:  # constriction raises its own errors on exhausted data
            raise CodingError(f"payload does not decode ({exc})") from None
        return (out + self.offsets[rows]).reshape(shape)

    def decode(self, payload: bytes) -> np.ndarray:
        """Payload bytes -> the nz symbols; CodingError unless the payload is exactly one latent."""
        coder = open_payload(payload)
        out = self.pop(coder)
        if not coder.is_empty():
            raise CodingError("payload holds more data than one latent")
        return out

    def bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """Ideal code length in bits of each row of (clamped) symbols (B, nz) -> (B,)."""
        idx = (symbols.cpu() - torch.as_tensor(self.offsets)).numpy()
        c = np.take_along_axis(self.counts, idx.T, axis=1).T
        return torch.from_numpy((PRECISION - np.log2(c)).sum(1))


def new_coder() -> object:
    """An empty ANS stack."""
    import constriction  # native module: its submodules are attributes, not importable paths

    return constriction.stream.stack.AnsCoder()


def finish(coder: object) -> bytes:
    """The stack's payload: its 32-bit words little-endian, less the trailing zero bytes."""
    return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def open_payload(payload: bytes) -> object:
    """An ANS stack holding `payload` (see `finish`); CodingError for one it never writes."""
    import constriction

    if payload.endswith(b"\0"):
        raise CodingError("payload ends in a zero byte, which the encoder never writes")
    padded = payload + bytes(-len(payload) % 4)
    return constriction.stream.stack.AnsCoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))


@torch.no_grad()
def build_tables(prior: FactorizedPrior, step: float) -> LevelTables:
    """Integer tables of the prior at quantisation `step` (see module docstring)."""
    prior = copy.deepcopy(prior).double().cpu()
    half = MAX_SYMBOLS // 2
    k = torch.arange(-half, half, dtype=torch.float64)  # candidate symbols
    v = prior.dequantize(k[:, None].expand(-1, prior.nz).long(), step)  # (K, nz)
    p = prior.likelihood(v, step).t().numpy()  # (nz, K)
    cdf = np.cumsum(p, axis=1) / p.sum(1, keepdims=True)
    first = (cdf < TAIL / 2).sum(1)
    last = np.minimum((cdf < 1 - TAIL / 2).sum(1), p.shape[1] - 1)
    rows = [(int(first[d]) - half, p[d, first[d] : last[d] + 1]) for d in range(prior.nz)]
    return integer_pmf_table(rows, float(step))


def integer_pmf_table(rows: list[tuple[int, np.ndarray]], step: float = 1.0) -> LevelTables:
    """Tables from (lowest symbol, probabilities of it and the symbols above) per row."""
    lengths = np.array([len(p) for _, p in rows], dtype=np.int64)
    counts = np.zeros((len(rows), int(lengths.max())), dtype=np.int32)
    for d, (_, p) in enumerate(rows):
        counts[d, : lengths[d]] = _integer_pmf(p)
    return LevelTables(step, np.array([o for o, _ in rows], dtype=np.int64), lengths, counts)


def _integer_pmf(p: np.ndarray) -> np.ndarray:
    """Probabilities -> integer counts >= 1 summing to 2^PRECISION (largest-remainder rounding)."""
    total = 1 << PRECISION
    if len(p) > total // 2:
        raise ValueError("table too wide for the coder precision")
    free = total - len(p)  # one count each is reserved
    share = p / p.sum() * free
    counts = np.floor(share).astype(np.int64)
    rest = free - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts + 1
