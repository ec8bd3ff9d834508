"""Layer 4, beside the claims: the standard tools of a course (per-position loss, dynamics, OV copying, ablation)."""
