"""A learned dictionary, and the concept layer it makes: K units whose maps are codes.

For a layer's activation a (C, H, W) and a dictionary of K directions H (K × C), every
position's activation vector is split into the part the dictionary explains and the rest:

    nmf:  a = codes · H + residual + min(a, 0)     codes = NNLS of relu(a) on H
    sae:  a = codes · H + residual                 codes = the SAE's encoder of a

(`codes · H` is Σ_k codes_k H_k at each position; the residual holds whatever the codes miss,
for the SAE including its decoder bias.) Both identities are exact: the residual is defined
as what is left. `factorized(a)` — relu(a) for NMF, a for the SAE — is the part the codes
and the residual add up to.

Why the positive part for NMF: NMF needs nonnegative data, and a signed layer (an
EfficientNet block's linear projection, a ResNet sum before its ReLU) has to give up
something. Building Blocks factorize relu(a) and so do we: what a unit "detects" is its
positive activation, what the next ReLU passes on, and a direction stays a C-vector of the
layer itself (the two-sided split [relu(a), relu(−a)] doubles C and makes a concept's
direction live in a space the network never computes). The negative part min(a, 0) is kept
aside untouched: no concept explains it and deleting concepts never changes it. Deleting
every concept and the residual therefore leaves min(a, 0), exactly the layer with its
positive part deleted. The SAE, trained on the raw signed activations (token layers of a
transformer are signed residual streams), needs no such choice: there min(a, 0) is folded
into its codes and residual.

The math (codes, components, deletion) is the runtime's `DirectionLayer`, shared with every
view and with other direction layers (CAVs, atlas cells); this package learns dictionaries.

Deletion: deleting concepts S subtracts Σ_{k∈S} codes_k H_k from the source activation and
changes nothing else; the codes are those of the unedited activation (they are what the
concepts contributed there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.engine.runtime.directions import (
    Decomposition,
    DirectionLayer,
    DirectionSet,
    direction_layer_name,
)

__all__ = ["METHODS", "ConceptDictionary", "ConceptLayer", "Decomposition",
           "concept_layer_name"]

METHODS = ("nmf", "sae")


def concept_layer_name(source_layer: str, method: str, k: int) -> str:
    """`_blocks.11@nmf32`: the concept layer's name in lists and caches."""
    return direction_layer_name(source_layer, f"{method}{k}")


@dataclass(frozen=True, eq=False)
class ConceptDictionary:
    """A finished dictionary of K directions of `source_layer`, as stored on disk."""

    source_layer: str
    method: str  # "nmf" or "sae"
    directions: np.ndarray  # (K, C) float32, unit rows, in concept order
    names: tuple[str, ...]  # one per concept
    folder: Path  # where it is stored
    images: int  # images the samples came from
    samples: int  # sample vectors it was learned on
    relative_error: float  # ‖A − WH‖/‖A‖ on those samples
    signed: bool  # the samples had negative values (NMF then factorized relu(a))
    encoder: dict[str, np.ndarray] | None = None  # sae: w_enc, b_enc, b_dec
    active: int = 0  # sae: latents kept per sample (its TopK)
    dead: int = 0  # concepts that no sample uses (an SAE's dead latents)
    cached: bool = False  # loaded from the cache rather than learned now
    seconds: float = 0.0
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def k(self) -> int:
        return int(self.directions.shape[0])

    @property
    def channels(self) -> int:
        return int(self.directions.shape[1])

    @property
    def concept_layer(self) -> str:
        return concept_layer_name(self.source_layer, self.method, self.k)

    def direction_set(self) -> DirectionSet:
        """The concept layer as the runtime's direction set, which every view takes."""
        return DirectionSet(name=self.concept_layer, source=self.source_layer,
                            kind=self.method, directions=self.directions, names=self.names,
                            encoder=self.encoder, active=self.active, folder=self.folder)

    @property
    def path(self) -> Path:
        """The `.npy` of the K × C directions."""
        return self.folder / "dictionary.npy"


class ConceptLayer(DirectionLayer):
    """A dictionary's concept layer on one device: the runtime's `DirectionLayer` (codes,
    components, deletion, objectives), which every view uses, plus the dictionary."""

    def __init__(self, dictionary: ConceptDictionary, device: torch.device) -> None:
        super().__init__(dictionary.direction_set(), device)
        self.dictionary = dictionary
        self.method = dictionary.method

    def delete(self, acts: torch.Tensor, concepts: Sequence[int], residual: bool = False
               ) -> torch.Tensor:
        """`acts` with the components of `concepts` removed (and the residual, if asked)."""
        for k in concepts:
            if not 0 <= k < self.k:
                raise ValueError(f"no concept {k}: the dictionary has {self.k}")
        return super().delete(acts, concepts, residual)
