"""Layer 5, beside the report: the trainers of the embedded models, the synthetic language; weights in data/."""
