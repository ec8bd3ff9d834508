"""Layer 3, the shared core: factored algebra, weight circuits, reversible edits, the copying test, statistics, and the
circuits that include a route (`effective_circuits`: empirical token circuits; `mlp_route`: weights through an MLP)."""
