"""The `corral` command: one module per verb."""
