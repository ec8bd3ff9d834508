"""A seeded synthetic language with topics, per-document names and repeated spans, and its entropies.

Tokens `0 .. n_words - 1` are words; the top `n_names` ids are name parts. A document picks a topic; its
words follow a sparse first-order Markov chain of that topic (Zipfian successors, a little noise); after a
word, with probability `name_rate`, one of the document's `names_per_doc` two-token names follows
(first part, then its last part: predicting the last part from the first one is induction); with
probability `copy_rate` a span of the document is repeated later (a natural repeat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.model.errors import IHLibError

WORD, NAME_FIRST, NAME_LAST, COPIED = 0, 1, 2, 3


@dataclass(frozen=True)
class LanguageConfig:
    """The language's shape and its seed (which successors each word has in each topic)."""

    vocab_size: int = 512
    n_names: int = 128
    n_topics: int = 8
    successors: int = 6
    zipf: float = 1.0
    noise: float = 0.05
    names_per_doc: int = 4
    name_rate: float = 0.08
    copy_rate: float = 0.5
    min_copy: int = 8
    max_copy: int = 24
    seed: int = 1234

    def __post_init__(self) -> None:
        """Reject shapes that leave no words, no names, or copies that cannot fit."""
        if not 2 <= self.n_names < self.vocab_size - self.successors:
            raise IHLibError(
                f"n_names={self.n_names} must lie in 2..{self.vocab_size - self.successors - 1} "
                f"for vocab_size={self.vocab_size} and successors={self.successors}."
            )
        if not 2 <= self.min_copy <= self.max_copy:
            raise IHLibError(f"Need 2 <= min_copy <= max_copy, got {self.min_copy}, {self.max_copy}.")
        for name in ("noise", "name_rate", "copy_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise IHLibError(f"{name}={getattr(self, name)} must be a probability in [0, 1].")

    @property
    def n_words(self) -> int:
        """Number of word tokens (the ids below the names)."""
        return self.vocab_size - self.n_names


@dataclass(frozen=True)
class LanguageBatch:
    """Sampled documents `ids` `(batch, seq_len)` and each token's kind `(batch, seq_len)` (WORD, NAME_*, COPIED)."""

    ids: np.ndarray
    kinds: np.ndarray


class SyntheticLanguage:
    """The language's fixed tables, built once from `LanguageConfig.seed`; `sample` draws documents."""

    def __init__(self, cfg: LanguageConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        ranks = np.arange(1, cfg.n_words + 1, dtype=np.float64)
        self.word_probs = ranks ** (-cfg.zipf) / np.sum(ranks ** (-cfg.zipf))
        shape = (cfg.n_topics, cfg.n_words, cfg.successors)
        self.successor_table = rng.choice(cfg.n_words, size=shape, p=self.word_probs)
        slots = np.arange(1, cfg.successors + 1, dtype=np.float64)
        self.successor_probs = (1.0 / slots) / np.sum(1.0 / slots)

    def sample(self, n: int, seq_len: int, rng: np.random.Generator) -> LanguageBatch:
        """Draw `n` documents of `seq_len` tokens: Markov words with names inserted, then one repeated span."""
        words = self._markov_words(n, seq_len, rng)
        ids, kinds = self._insert_names(words, seq_len, rng)
        self._repeat_spans(ids, kinds, rng)
        return LanguageBatch(ids=ids, kinds=kinds)

    def _markov_words(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """Return `(n, length)` word ids: per row a topic, then its Markov chain with `noise` uniform jumps."""
        cfg = self.cfg
        topic = rng.integers(cfg.n_topics, size=n)
        words = np.empty((n, length), dtype=np.int64)
        words[:, 0] = rng.choice(cfg.n_words, size=n, p=self.word_probs)
        for t in range(1, length):
            slot = rng.choice(cfg.successors, size=n, p=self.successor_probs)
            follow = self.successor_table[topic, words[:, t - 1], slot]
            jump = rng.random(n) < cfg.noise
            words[:, t] = np.where(jump, rng.choice(cfg.n_words, size=n, p=self.word_probs), follow)
        return words

    def _insert_names(self, words: np.ndarray, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Insert a document name (two tokens) after each word with probability `name_rate`; cut to `seq_len`."""
        cfg = self.cfg
        n, length = words.shape
        names = cfg.n_words + rng.integers(cfg.n_names, size=(n, cfg.names_per_doc, 2))
        insert = rng.random((n, length)) < cfg.name_rate
        which = rng.integers(cfg.names_per_doc, size=(n, length))
        width = 1 + 2 * insert
        start = np.cumsum(width, axis=1) - width
        ids = np.full((n, 3 * length), -1, dtype=np.int64)
        kinds = np.full((n, 3 * length), WORD, dtype=np.int8)
        rows = np.arange(n)[:, None]
        ids[rows, start] = words
        r, t = np.nonzero(insert)
        for part, kind in ((0, NAME_FIRST), (1, NAME_LAST)):
            ids[r, start[r, t] + 1 + part] = names[r, which[r, t], part]
            kinds[r, start[r, t] + 1 + part] = kind
        return ids[:, :seq_len], kinds[:, :seq_len]

    def _repeat_spans(self, ids: np.ndarray, kinds: np.ndarray, rng: np.random.Generator) -> None:
        """In place: with probability `copy_rate` per row, repeat a span of `min_copy..max_copy` tokens later."""
        cfg = self.cfg
        n, seq_len = ids.shape
        for row in np.nonzero(rng.random(n) < cfg.copy_rate)[0]:
            span = int(rng.integers(cfg.min_copy, min(cfg.max_copy, seq_len // 2) + 1))
            source = int(rng.integers(0, seq_len - 2 * span + 1))
            target = int(rng.integers(source + span, seq_len - span + 1))
            ids[row, target : target + span] = ids[row, source : source + span]
            kinds[row, target : target + span] = COPIED


def provenance(cfg: LanguageConfig) -> dict[str, str]:
    """Where the training documents come from, for `training.json`: generated, seeded, no external data."""
    return {
        "source": "synthetic: generated by ihlib.training.synthetic_language.SyntheticLanguage, no external data",
        "tables": f"successor tables drawn once from numpy default_rng({cfg.seed}) (LanguageConfig.seed)",
        "documents": "drawn during training from numpy default_rng(train seed); copy-task rows from torch.Generator",
        "words": f"{cfg.n_words} word ids, Zipf({cfg.zipf}) frequencies, {cfg.n_topics} topics, "
        f"{cfg.successors} successors per word and topic, noise {cfg.noise}",
        "names": f"{cfg.n_names} name ids; {cfg.names_per_doc} two-token names per document, rate {cfg.name_rate}",
        "repeats": f"a span of {cfg.min_copy}-{cfg.max_copy} tokens repeated in {cfg.copy_rate:.0%} of documents",
    }


@dataclass(frozen=True)
class LanguageEntropies:
    """Plug-in entropies (nats) of the ordinary word tokens of a sample: unigram and bigram (given the previous)."""

    unigram: float
    bigram: float
    n_tokens: int


def word_entropies(batch: LanguageBatch) -> LanguageEntropies:
    """Unigram entropy of WORD tokens and conditional entropy of a WORD given the previous token, from counts."""
    ids, kinds = batch.ids, batch.kinds
    words = ids[kinds == WORD]
    _, counts = np.unique(words, return_counts=True)
    unigram = _entropy(counts)
    mask = kinds[:, 1:] == WORD
    pairs = ids[:, :-1][mask] * (int(ids.max()) + 1) + ids[:, 1:][mask]
    _, pair_counts = np.unique(pairs, return_counts=True)
    _, prev_counts = np.unique(ids[:, :-1][mask], return_counts=True)
    bigram = _entropy(pair_counts) - _entropy(prev_counts)
    return LanguageEntropies(unigram=unigram, bigram=bigram, n_tokens=int(words.size))


def _entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution proportional to `counts`."""
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())
