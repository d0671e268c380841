"""Shared maths: streaming least squares (lstsq), R²/FVU (metrics), robust multi-start curve fits (curvefit)."""

from interp.stats.lstsq import StreamingLstsq

__all__ = ["StreamingLstsq"]
