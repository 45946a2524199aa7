"""The Layer-7 proxy engine; `corral lb` and the per-node ingress are two configurations of it."""
