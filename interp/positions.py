"""Position selectors: which (sequence, position) pairs of a token batch become cache rows.

Spec strings (used on the CLI and stored in manifests):
    "all"          every position
    "drop:K"       drop the first K positions of each sequence (e.g. the BOS / attention-sink position)
    "last"         only the last position
    "range:A:B"    positions A <= p < B (0 <= A < B; "range:A:" is "drop:A")
A boolean mask `[batch, pos]` (or `[pos]`) selects arbitrary positions in notebooks.
Given the inputs' attention mask, padded positions are never selected and positions count real tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.errors import ConfigError


@dataclass(frozen=True)
class Positions:
    """A position selector; `select` maps `[batch, pos, ...]` activations to `[n_rows, ...]` rows."""

    kind: str = "all"
    start: int = 0
    stop: int | None = None
    mask: torch.Tensor | None = None

    @staticmethod
    def parse(spec: str | Positions | torch.Tensor | None) -> Positions:
        if spec is None:
            return Positions("all")
        if isinstance(spec, Positions):
            return spec
        if isinstance(spec, torch.Tensor):
            if spec.dtype != torch.bool:
                raise ConfigError("a position mask must be a bool tensor", hint="pass mask.bool()")
            return Positions("mask", mask=spec)
        text = str(spec).strip()
        try:
            if text == "all":
                return Positions("all")
            if text == "last":
                return Positions("last")
            if text.startswith("drop:"):
                k = int(text.split(":", 1)[1])
                if k < 0:
                    raise ValueError
                return Positions("range", start=k)
            if text.startswith("range:"):
                _, a, b = text.split(":")
                start, stop = int(a), int(b) if b else None
                if start < 0 or (stop is not None and stop <= start):
                    raise ValueError  # negative or empty ranges select nothing useful (and do not round-trip)
                return Positions("range", start=start, stop=stop)
        except ValueError:
            pass
        raise ConfigError(f"unknown position selector '{spec}'",
                          hint="use all, last, drop:K (K ≥ 0) or range:A:B (0 ≤ A < B; range:A: runs to the end)")

    def spec(self) -> str:
        """The selector as a string for manifests (masks are described, not stored)."""
        if self.kind == "range":
            return f"drop:{self.start}" if self.stop is None else f"range:{self.start}:{self.stop}"
        return self.kind

    def row_mask(self, batch: int, ctx: int, device: torch.device | str = "cpu",
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Bool `[batch, ctx]`: True where a row is kept.

        With an attention mask, padding is never kept and positions count real tokens only: `drop:1` drops each
        sequence's first real token, `last` keeps its last real token, whichever side the padding is on.
        """
        if attention_mask is not None:
            return self._real_row_mask(attention_mask.to(device).bool())
        if self.kind == "all":
            return torch.ones(batch, ctx, dtype=torch.bool, device=device)
        if self.kind == "last":
            m = torch.zeros(batch, ctx, dtype=torch.bool, device=device)
            m[:, -1] = True
            return m
        if self.kind == "range":
            m = torch.zeros(batch, ctx, dtype=torch.bool, device=device)
            m[:, self.start: self.stop] = True
            return m
        mask = self.mask.to(device)
        if mask.dim() == 1:
            mask = mask.expand(batch, -1)
        if mask.shape != (batch, ctx):
            raise ConfigError(f"position mask has shape {tuple(mask.shape)}, activations have {(batch, ctx)}",
                              hint="give a [batch, pos] or [pos] mask matching the tokens")
        return mask

    def _real_row_mask(self, real: torch.Tensor) -> torch.Tensor:
        rank = real.long().cumsum(-1) - 1  # index among the sequence's real tokens
        if self.kind == "all":
            return real
        if self.kind == "last":
            return real & (rank == real.sum(-1, keepdim=True) - 1)
        if self.kind == "range":
            keep = real & (rank >= self.start)
            return keep if self.stop is None else keep & (rank < self.stop)
        return real & self.row_mask(*real.shape, device=real.device)

    def select(self, acts: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`[batch, pos, ...]` -> `[n_rows, ...]` in (sequence, position) order; padding dropped given a mask."""
        b, p = acts.shape[:2]
        if attention_mask is not None:
            return acts[self.row_mask(b, p, acts.device, attention_mask)]
        if self.kind == "all":
            return acts.reshape(b * p, *acts.shape[2:])
        if self.kind == "last":
            return acts[:, -1]
        if self.kind == "range":
            part = acts[:, self.start: self.stop]
            return part.reshape(-1, *acts.shape[2:])
        return acts[self.row_mask(b, p, acts.device)]

    def index(self, batch: int, ctx: int, attention_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence index, position) of every kept row, `[n_rows]` each, matching `select`'s order."""
        seq, pos = self.row_mask(batch, ctx, attention_mask=attention_mask).nonzero(as_tuple=True)
        return seq, pos
