"""Shared maths: streaming least squares (lstsq), R²/FVU (metrics), robust multi-start curve fits (curvefit)."""
