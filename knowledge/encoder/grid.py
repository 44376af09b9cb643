"""Fine-tune on the engine's 4-bit grid, so that what was trained is what the engine will run.

A plain float32 fine-tune moves each weight by far less than one 4-bit step (Adam at 5e-5 moves a weight
about 1e-4 in five steps; a step is about 0.01), but in the same direction across whole rows, which moves
the embeddings a lot: rounding back to the grid then erases most of the change (measured: after 5 steps the
engine's vectors had cosine 0.93 to the fine-tuned model's). Training through the grid avoids that: each
trainable matrix is used in its ``block_q4_0`` form (ggml's rounding, as :func:`.fileformat.quantise_q4_0`),
while the gradient updates the float32 weight underneath (a straight-through estimator). The model
starts on the grid already (it was dequantised from it), so it starts exactly where the engine is.

Biases, layer norms and position embeddings are float32 in the engine's file and need nothing.
Freeze the word embeddings unless they must move (they are 96M of the 118M parameters; putting them on the
grid costs about a second per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils import parametrize

from knowledge.encoder.fileformat import BLOCK
from knowledge.encoder.pairs import Pair, batches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class Q4Grid(torch.nn.Module):
    """Forward: the weight rounded to ``block_q4_0`` and back. Backward: the identity."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        blocks = weight.reshape(-1, BLOCK)
        extreme = blocks.gather(1, blocks.abs().argmax(dim=1, keepdim=True))
        scale = extreme / -8.0
        inverse = torch.where(scale != 0, 1.0 / scale, torch.zeros_like(scale))
        levels = torch.clamp(torch.floor(blocks * inverse + 8.5), 0, 15)
        on_grid = (levels - 8) * scale.to(torch.float16).to(torch.float32)
        return (blocks + (on_grid - blocks).detach()).reshape(weight.shape)


def _grid_modules(model: SentenceTransformer) -> list[tuple[str, torch.nn.Module]]:
    encoder: Any = model[0].auto_model
    chosen = [("embeddings.word_embeddings", encoder.embeddings.word_embeddings)]
    for name, module in encoder.encoder.named_modules():
        if isinstance(module, torch.nn.Linear):
            chosen.append((f"encoder.{name}", module))
    return chosen


def freeze_word_embeddings(model: SentenceTransformer) -> None:
    """Keep the 250k-row word embedding table fixed (most of the model's memory and optimiser time).

    Call it before :func:`train_on_engine_grid`, which then leaves the table off the grid (it is on it already).
    """
    encoder: Any = model[0].auto_model
    table: Any = encoder.embeddings.word_embeddings
    if parametrize.is_parametrized(table, "weight"):
        table.parametrizations.weight.original.requires_grad_(False)
    else:
        table.weight.requires_grad_(False)


def train_on_engine_grid(model: SentenceTransformer) -> int:
    """Put every trainable matrix the engine stores in 4 bits on the grid; returns how many."""
    count = 0
    for _, module in _grid_modules(model):
        weight = module.weight
        if weight.requires_grad and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", Q4Grid())
            count += 1
    return count


def bake_engine_grid(model: SentenceTransformer) -> None:
    """Replace each grid-trained weight by its on-grid value (before ``save`` or :func:`.quantise.quantise`)."""
    for _, module in _grid_modules(model):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def fine_tune(
    model: SentenceTransformer,
    pairs: Sequence[Pair],
    *,
    steps: int,
    lr: float,
    batch: int,
    seed: int,
    neighbours: Mapping[str, Sequence[str]] | None = None,
    seconds: float | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Contrastive training on the engine's grid, word embeddings frozen, then baked: ready for ``quantise``.

    ``MultipleNegativesRankingLoss`` over batches of distinct entries (``pairs.batches``; with ``neighbours``, one
    hard-negative passage per pair). At most ``steps`` steps, or until ``seconds`` have passed; ``on_step(step,
    loss)`` after each. Returns the loss of each step taken. Runs on the model's device.
    """
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device

    torch.manual_seed(seed)
    freeze_word_embeddings(model)
    train_on_engine_grid(model)
    loss = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    stream = batches(pairs, batch, seed, neighbours)
    started = time.monotonic()
    losses: list[float] = []
    model.train()
    for step in range(1, steps + 1):
        chosen, negatives = next(stream)
        columns = [[p.query for p in chosen], [p.passage for p in chosen], *([negatives] if negatives else [])]
        features = [batch_to_device(model.preprocess(texts), model.device) for texts in columns]
        value = loss(features, torch.zeros(len(chosen), device=model.device))
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        losses.append(round(float(value.item()), 4))
        if on_step is not None:
            on_step(step, losses[-1])
        if seconds is not None and time.monotonic() - started > seconds:
            break
    model.eval()
    bake_engine_grid(model)
    return losses
