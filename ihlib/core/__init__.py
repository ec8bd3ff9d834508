"""Layer 3, the shared core: factored algebra, weight circuits, reversible edits, the copying test, statistics."""
