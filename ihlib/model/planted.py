"""Known-answer models: a plain `GPT2LMHeadModel` whose induction circuit is written by hand (no training, seeded).

Plan (variants, shapes, subspaces) in `ihlib.model.planted_layout`. Every weight starts small and random; then,
layer by layer, the circuit heads (and the MLP of the variant "mlp") are written on top, each scaled by the layer
norm's measured gain on a calibration batch, so that attention is sharp and every written vector has norm ~1.

- Embeddings: token `t` -> its code `tau_t` (unit, in T: two factors of 24 coordinates, each a random unit vector
  of one of ~sqrt(vocab) classes, so that a factor alone does not name the token); position `i` -> `pi_i`
  (unit, in P: cosine/sine pairs of random frequencies, so "`s` steps back" is a fixed rotation `R_s`).
- Shifting head: query `R_1 pi_i`, key `pi_j` (sharp at `j = i - 1`); value `sigma * tau`, output into S1.
- Induction head: query `sigma * tau_i`, key reads S1 (or S2), value `tau`, output into O.
- Positional head (variant "no-composition"): query `R_24 pi_i`, key `pi_j`; value `tau`, output into O.
- Unembedding (untied) reads O: `lm_head[u] = gamma * tau_u` in O, plus a random direct path from T (logits of
  std `PRIOR_LOGIT` given the current token), so that a copy weakened by an edit loses to it, as in trained models.
- Outside the circuit: each circuit head carries `JUNK` coordinates that read (and write) its own dead block
  of D, with singular values `JUNK_GAIN` x the circuit's largest (below its smallest), as trained heads carry
  energy outside the directions their inputs use.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ihlib.model.errors import ParameterError
from ihlib.model.planted_layout import (
    CODE,
    D_HEAD,
    IH,
    JUNK,
    POS,
    SH,
    SHAPES,
    CircuitHead,
    PlantedShape,
    check_shape,
    check_variant,
    placed,
    subspace_sizes,
)

PREFIX = "planted-"
SIGMA = np.geomspace(1.15, 0.85, CODE)  # circuit spectrum over the token-code coordinates (largest first)
JUNK_GAIN = 0.7  # singular values outside the circuit, relative to the circuit's largest (below its smallest)
ATTENTION_GAP = 20.0  # attention logit margin (nats) of a positional (or shifting) head's target key
MATCH_LOGIT = 10.0  # an induction head's attention logit at a key whose previous token is the query's, per SH
LOGIT_SCALE = 25.0  # logit of the copied token
PRIOR_LOGIT = 2.0  # std of a random direct-path logit per (current token, next token): what a weak copy competes with
CIRCUIT_NOISE = 0.05  # circuit heads keep this share of the random weights (so no weight product is exactly 0)
NOISE = {"qk": 0.5, "v": 1.0, "o": 0.03, "fc": 1.0, "proj": 0.05}  # random weights, see `_noise_std`
MLP_BIAS = 8.0  # pre-activation of the MLP route's neurons: GELU is the identity plus 8 there
CALIBRATION = (4, 64)  # sequences x tokens of the batch that measures the layer norms' gains


def planted_model(variant: str = "direct", *, shape: str | PlantedShape = "tiny", seed: int = 0) -> GPT2LMHeadModel:
    """Build the planted `variant` at `shape` (seeded, eval mode, eager attention, CPU, float32)."""
    plan, shape = check_variant(variant), check_shape(shape)
    rng = np.random.default_rng([seed, 22])
    bases = residual_bases(shape, rng)
    code = token_code(shape.vocab_size, rng)
    positions = position_code(shape.n_positions, shape.n_freq, rng)
    config = _config(shape, model_name(variant, shape))
    model = GPT2LMHeadModel._from_config(config, attn_implementation="eager").eval()
    calibration = torch.from_numpy(rng.integers(0, shape.vocab_size, size=CALIBRATION))
    with torch.no_grad():
        _write_noise(model, shape, torch.Generator().manual_seed(int(rng.integers(2**31))))
        body = model.transformer
        body.wte.weight.copy_(_t(code @ bases["T"].T))
        body.wpe.weight.copy_(_t(positions @ bases["P"].T))
        heads = placed(plan, shape)
        junk = {(layer, head): bases["D"][:, i * JUNK : (i + 1) * JUNK] for i, (layer, head, _) in enumerate(heads)}
        x = body.wte(calibration) + body.wpe(torch.arange(calibration.shape[1]))  # residual entering layer 0
        for layer in range(shape.n_layer):
            for l, h, circuit in heads:
                if l == layer:
                    _write_head(model, l, h, circuit, bases, junk[(l, h)], positions, layer_norm_gain(x))
            block = body.h[layer]
            x = x + block.attn(block.ln_1(x))[0]
            if plan.mlp_layer is not None and plan.mlp_layer * (shape.n_layer // 4) == layer:
                _write_mlp_route(model, layer, bases, layer_norm_gain(x))
            x = x + block.mlp(block.ln_2(x))
        copies = sum(c.role in (IH, POS) for *_, c in heads) / (2 if plan.name == "two-circuits" else 1)
        final_gain = layer_norm_gain(x)
        prior = rng.standard_normal((shape.vocab_size, CODE)) @ bases["T"].T * PRIOR_LOGIT / final_gain
        model.lm_head.weight.copy_(_t(LOGIT_SCALE / (final_gain * copies) * code @ bases["O"].T + prior))
    return model


def _config(shape: PlantedShape, name: str) -> GPT2Config:
    """A GPT-2 config of `shape` with an untied unembedding, no dropout, and the model's planted name."""
    return GPT2Config(
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        n_embd=shape.d_model,
        vocab_size=shape.vocab_size,
        n_positions=shape.n_positions,
        n_inner=shape.n_inner,
        tie_word_embeddings=False,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=shape.vocab_size - 1,
        eos_token_id=shape.vocab_size - 1,
        name_or_path=name,
    )


def _t(array: np.ndarray) -> torch.Tensor:
    """`array` as a float32 tensor."""
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)


def residual_bases(shape: PlantedShape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Orthonormal bases `(d_model, width)` of T, P, S1, S2, O, D: disjoint, random, orthogonal to all-ones."""
    d = shape.d_model
    raw = rng.standard_normal((d, d))
    raw[:, 0] = 1.0  # the first column spans all-ones; QR keeps the rest orthogonal to it
    q, _ = np.linalg.qr(raw)
    sizes = {k: v for k, v in subspace_sizes(shape).items() if k != "total"}
    bases, start = {}, 1
    for name, width in sizes.items():
        bases[name] = q[:, start : start + width]
        start += width
    return bases


def factor_classes(vocab_size: int) -> int:
    """Classes per token-code factor: the smallest `g` with `g * g >= vocab_size` (token `t` = class pair)."""
    return int(np.ceil(np.sqrt(vocab_size)))


def token_code(vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """Token codes `(vocab, CODE)`, unit: even coordinates code class `t // g`, odd ones `t % g` (random, / sqrt 2)."""
    g = factor_classes(vocab_size)
    half = CODE // 2
    classes = rng.standard_normal((2, g, half))
    classes /= np.linalg.norm(classes, axis=-1, keepdims=True)
    t = np.arange(vocab_size)
    code = np.zeros((vocab_size, CODE))
    code[:, 0::2] = classes[0, t // g]
    code[:, 1::2] = classes[1, t % g]
    return code / np.sqrt(2.0)


def position_code(n_positions: int, n_freq: int, rng: np.random.Generator) -> np.ndarray:
    """Position codes `(n_positions, 2 n_freq)`, unit: `(cos w_k i, sin w_k i)` pairs, `w_k` random in [pi/3, pi]."""
    w = rng.uniform(np.pi / 3, np.pi, n_freq)
    angles = np.outer(np.arange(n_positions), w)
    code = np.empty((n_positions, 2 * n_freq))
    code[:, 0::2], code[:, 1::2] = np.cos(angles), np.sin(angles)
    return code / np.sqrt(n_freq)


def shift_rotation(n_freq: int, frequencies: np.ndarray, steps: int) -> np.ndarray:
    """`R_s` `(2 n_freq, 2 n_freq)`: maps the code of position `i` to that of `i - steps` (block rotations)."""
    rotation = np.zeros((2 * n_freq, 2 * n_freq))
    for k, w in enumerate(frequencies):
        c, s = np.cos(w * steps), np.sin(w * steps)
        rotation[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = [[c, s], [-s, c]]
    return rotation


def frequencies_of(positions: np.ndarray) -> np.ndarray:
    """The frequencies `w_k` of a position code `(n_positions, 2 n_freq)` (angle of position 1)."""
    return np.arctan2(positions[1, 1::2], positions[1, 0::2])


def position_margin(positions: np.ndarray, steps: int) -> float:
    """1 - the largest `pi_{i-steps} . pi_j` over keys `j != i - steps`, `j <= i`: the position code's sharpness."""
    w = frequencies_of(positions)
    lags = np.arange(-steps, positions.shape[0])
    lags = lags[lags != 0]
    overlap = np.cos(np.outer(lags, w)).mean(axis=1)
    return float(1.0 - overlap.max())


def layer_norm_gain(x: torch.Tensor) -> float:
    """`sqrt(d_model) / median norm` of residuals `x` `(..., d_model)`: what layer norm (gain 1) multiplies them by."""
    return float(np.sqrt(x.shape[-1]) / x.norm(dim=-1).median())


def _noise_std(name: str, shape: PlantedShape) -> float:
    """Std of the random weights: q/k logits ~0.5, v coordinates ~1, head and MLP outputs of norm ~0.03-0.05."""
    d = shape.d_model
    fan = {"qk": d, "v": d, "o": D_HEAD * d, "fc": d, "proj": shape.n_inner * d}[name]
    return float(NOISE[name] / np.sqrt(fan))


def _write_noise(model: GPT2LMHeadModel, shape: PlantedShape, generator: torch.Generator) -> None:
    """Small random weights everywhere; biases 0, layer norms gain 1 bias 0."""
    d = shape.d_model
    for name, param in model.named_parameters():
        param.zero_()
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            param.fill_(1.0)
    for block in model.transformer.h:
        qkv = block.attn.c_attn.weight
        qkv[:, : 2 * d].normal_(0, _noise_std("qk", shape), generator=generator)
        qkv[:, 2 * d :].normal_(0, _noise_std("v", shape), generator=generator)
        block.attn.c_proj.weight.normal_(0, _noise_std("o", shape), generator=generator)
        block.mlp.c_fc.weight.normal_(0, _noise_std("fc", shape), generator=generator)
        block.mlp.c_proj.weight.normal_(0, _noise_std("proj", shape), generator=generator)


def _factor_columns(circuit: CircuitHead) -> np.ndarray:
    """The token-code coordinates a head carries: all, the even or the odd ones."""
    columns = np.arange(CODE)
    return {"both": columns, "even": columns[0::2], "odd": columns[1::2]}[circuit.factor]


def _set_head(model: GPT2LMHeadModel, layer: int, head: int, **parts: np.ndarray) -> None:
    """Write head `[layer, head]`: `q`, `k`, `v` `(d_model, d_head)`, `o` (`W_o^T`) on `CIRCUIT_NOISE` x its noise."""
    attn = model.transformer.h[layer].attn
    d = model.config.n_embd
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
    for index, name in enumerate("qkv"):
        weights = attn.c_attn.weight[:, index * d :][:, cols]
        weights.mul_(CIRCUIT_NOISE).add_(_t(parts[name]))
    attn.c_proj.weight[cols, :].mul_(CIRCUIT_NOISE).add_(_t(parts["o"].T))


def _write_head(
    model: GPT2LMHeadModel,
    layer: int,
    head: int,
    circuit: CircuitHead,
    bases: dict[str, np.ndarray],
    junk: np.ndarray,
    positions: np.ndarray,
    gain: float,
) -> None:
    """Write one circuit head (module docstring) for a layer-norm gain `gain`; its junk reads and writes `junk`."""
    d = model.config.n_embd
    q, k, v, o = (np.zeros((d, D_HEAD)) for _ in range(4))
    j = slice(CODE, CODE + JUNK)
    if circuit.role in (SH, POS):
        n_freq = positions.shape[1] // 2
        rotation = shift_rotation(n_freq, frequencies_of(positions), circuit.shift)
        scale = np.sqrt(ATTENTION_GAP * np.sqrt(D_HEAD) / position_margin(positions, circuit.shift)) / gain
        q[:, : 2 * n_freq] = scale * bases["P"] @ rotation.T
        k[:, : 2 * n_freq] = scale * bases["P"]
        v[:, :CODE] = bases["T"] * (SIGMA if circuit.role == SH else 1.0) / gain
        o[:, :CODE] = bases[circuit.space if circuit.role == SH else "O"]
        v[:, j] = junk * JUNK_GAIN * SIGMA[0] / gain
        o[:, j] = junk
    else:
        # query . key at the exact match: sum_k sigma_k^2 tau_k^2 ~ mean(sigma^2) per shifting head (tau unit)
        scale = np.sqrt(MATCH_LOGIT * np.sqrt(D_HEAD) / float(np.mean(SIGMA**2))) / gain
        q[:, :CODE] = scale * bases["T"] * SIGMA
        k[:, :CODE] = scale * bases[circuit.space]
        q[:, j] = k[:, j] = scale * junk * np.sqrt(JUNK_GAIN * SIGMA[0])
        cols = _factor_columns(circuit)
        v[:, cols] = bases["T"][:, cols] / gain
        o[:, cols] = bases["O"][:, cols]
    _set_head(model, layer, head, q=q, k=k, v=v, o=o)


def _write_mlp_route(model: GPT2LMHeadModel, layer: int, bases: dict[str, np.ndarray], gain: float) -> None:
    """MLP `layer` copies S1 into S2: neuron k reads S1_k with bias `MLP_BIAS` (GELU ~ linear there), writes S2_k."""
    mlp = model.transformer.h[layer].mlp
    mlp.c_fc.weight[:, :CODE].copy_(_t(bases["S1"] / gain))
    mlp.c_fc.bias[:CODE].fill_(MLP_BIAS)
    mlp.c_proj.weight[:CODE, :].copy_(_t(bases["S2"].T))
    mlp.c_proj.bias.copy_(_t(-MLP_BIAS * bases["S2"].sum(axis=1)))


def model_name(variant: str, shape: PlantedShape) -> str:
    """The name `load_model` takes for `variant` at `shape`: "planted-<variant>-<shape>" ("planted-gpt2-small")."""
    label = next((key for key, value in SHAPES.items() if value == shape), "custom")
    return "planted-gpt2-small" if (variant, label) == ("direct", "gpt2-small") else f"{PREFIX}{variant}-{label}"


def planted_name(name: str) -> tuple[str, str] | None:
    """`(variant, shape)` for "planted-<variant>-<shape>" ("planted-gpt2-small" = direct at gpt2-small), else None."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX) :]
    if rest == "gpt2-small":
        return "direct", "gpt2-small"
    for shape in ("gpt2-small", "tiny"):
        if rest.endswith(f"-{shape}"):
            return rest[: -len(shape) - 1], shape
    raise ParameterError(
        f"Planted model name {name!r}: use 'planted-gpt2-small' or 'planted-<variant>-<shape>', shape 'tiny' or "
        "'gpt2-small' (e.g. 'planted-mlp-tiny')."
    )
