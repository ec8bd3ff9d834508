"""Layer 4, the claims: one module per claim of the seed, the gate that says "not tested", verdicts."""
