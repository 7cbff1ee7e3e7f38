"""What is explained: a score computed from the model's output, per image.

A score is any callable from the model's output to one value per image, `(N, K) → (N,)`;
attribution back-propagates it. `ClassScore` is the one the building blocks use: the logit of
a class, or the difference of two logits ("why A rather than B"). Because a score sees the
model's output and nothing else, a later `logits` layer (class units) changes nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.core.class_names import find_class

Score = Callable[[torch.Tensor], torch.Tensor]


class BlocksError(ValueError):
    """A layer, class or input the building blocks cannot work with; one line for the user."""


def output_logits(output: Any) -> torch.Tensor:
    """The (N, K) tensor of a model's output (the first element of a tuple output)."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise BlocksError(f"the model must output (N, classes) logits, got {shape}")
    return output


@dataclass(frozen=True)
class ClassScore:
    """logit[target] − logit[vs] (vs None: logit[target]); target None: each image's top-1.

    Immutable and hashable, so a live request holding one compares by value.
    """

    target: int | None = None
    vs: int | None = None

    def targets(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,) long: the class each image's score is about."""
        if self.target is None:
            return logits.detach().argmax(1)
        return torch.full((logits.shape[0],), self.target, dtype=torch.long,
                          device=logits.device)

    def __call__(self, output: Any) -> torch.Tensor:
        logits = output_logits(output)
        rows = torch.arange(logits.shape[0], device=logits.device)
        score = logits[rows, self.targets(logits)]
        if self.vs is not None:
            score = score - logits[:, self.vs]
        return score

    def describe(self, class_names: Sequence[str]) -> str:
        """`tabby (281)`, `tabby (281) vs Egyptian cat (285)`, or `the top-1 class`."""
        def one(i: int | None) -> str:
            if i is None:
                return "the top-1 class"
            return f"{class_names[i]} ({i})" if i < len(class_names) else str(i)

        return one(self.target) + ("" if self.vs is None else f" vs {one(self.vs)}")


def class_score(target: str | int | None, class_names: Sequence[str],
                vs: str | int | None = None) -> ClassScore:
    """A ClassScore from user input: classes by index or name (ClassNameError if neither)."""
    return ClassScore(None if target is None else find_class(target, class_names),
                      None if vs is None else find_class(vs, class_names))
