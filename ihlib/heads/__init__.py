"""Layer 2, the heads: induction and shifting scores, other head kinds, which heads count, the score cache."""
