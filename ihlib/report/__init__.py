"""Layer 5, the report: saving results, tables, verdict sentences, figures, the seed-shaped one-call functions."""
