"""Layer 4, beside the claims: the standard tools of a course (per-position loss, dynamics, OV copying, ablation) and
path patching with the route shares it gives (`path_patching`, `routes`, `route_shares`)."""
