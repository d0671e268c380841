"""What a person runs or reads: the `interp` CLI, the report builder, the demo."""
