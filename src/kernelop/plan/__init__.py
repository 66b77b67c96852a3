"""The launch plan: one derivation of a spec's parameters, shapes and geometry, as expressions."""
