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

from app.engine.analyses.concepts.nmf import gram_of, nnls_codes
from app.engine.analyses.concepts.sae import encode

METHODS = ("nmf", "sae")


def concept_layer_name(source_layer: str, method: str, k: int) -> str:
    """`_blocks.11@nmf32`: the concept layer's name in lists and caches."""
    return f"{source_layer}@{method}{k}"


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

    @property
    def path(self) -> Path:
        """The `.npy` of the K × C directions."""
        return self.folder / "dictionary.npy"


@dataclass(frozen=True)
class Decomposition:
    """a = codes · H + residual + rest, all on a's device; see the module doc."""

    codes: torch.Tensor  # (N, K, H, W) ≥ 0
    residual: torch.Tensor  # (N, C, H, W)
    rest: torch.Tensor  # (N, C, H, W): min(a, 0) for NMF, zeros for the SAE


class ConceptLayer:
    """A dictionary's tensors on one device, computing codes and edits batched over positions.

    Build one per dictionary and device (the live view keeps it across frames); every method
    takes (C, H, W) or (N, C, H, W) activations and answers in the same rank.
    """

    def __init__(self, dictionary: ConceptDictionary, device: torch.device) -> None:
        self.dictionary = dictionary
        self.method = dictionary.method
        self.h = torch.from_numpy(dictionary.directions).float().to(device)
        enc = dictionary.encoder or {}
        self.encoder = {n: torch.from_numpy(a).float().to(device) for n, a in enc.items()}
        self.active = dictionary.active
        self.gram, self.lipschitz = gram_of(self.h)  # once per dictionary, not per frame

    def factorized(self, acts: torch.Tensor) -> torch.Tensor:
        """The part of `acts` the codes and the residual add up to (module doc)."""
        return acts.clamp_min(0) if self.method == "nmf" else acts

    def codes(self, acts: torch.Tensor) -> torch.Tensor:
        """The concept layer's activation: (N, K, H, W) codes of (N, C, H, W) acts."""
        one = acts.dim() == 3
        x = acts.unsqueeze(0) if one else acts
        n, c, h, w = x.shape
        if c != self.h.shape[1]:
            raise ValueError(f"the dictionary has {self.h.shape[1]} channels, the layer {c}")
        flat = self.factorized(x).detach().float().permute(0, 2, 3, 1).reshape(-1, c)
        h_ = self.h.to(flat.device)
        if self.method == "nmf":
            z = nnls_codes(flat, h_, gram=self.gram, lipschitz=self.lipschitz)
        else:
            e = {k: t.to(flat.device) for k, t in self.encoder.items()}
            z = encode(flat, e["w_enc"], e["b_enc"], e["b_dec"], self.active)
        out = z.reshape(n, h, w, -1).permute(0, 3, 1, 2).to(acts.dtype)
        return out[0] if one else out

    def component(self, codes: torch.Tensor, concepts: Sequence[int] | None = None
                  ) -> torch.Tensor:
        """Σ_k codes_k H_k over `concepts` (all when None): (N, C, H, W) from (N, K, H, W)."""
        h = self.h.to(codes.device, codes.dtype)
        if concepts is not None:
            idx = torch.as_tensor(list(concepts), dtype=torch.long, device=codes.device)
            codes, h = codes.index_select(-3, idx), h.index_select(0, idx)
        return torch.einsum("...khw,kc->...chw", codes, h)

    def decompose(self, acts: torch.Tensor) -> Decomposition:
        """codes, residual and rest with codes·H + residual + rest = acts exactly."""
        codes = self.codes(acts)
        part = self.factorized(acts)
        return Decomposition(codes, part - self.component(codes), acts - part)

    def delete(self, acts: torch.Tensor, concepts: Sequence[int], residual: bool = False
               ) -> torch.Tensor:
        """`acts` with the components of `concepts` removed (and the residual, if asked)."""
        for k in concepts:
            if not 0 <= k < self.h.shape[0]:
                raise ValueError(f"no concept {k}: the dictionary has {self.h.shape[0]}")
        d = self.decompose(acts)
        out = acts - self.component(d.codes, concepts)
        return out - d.residual if residual else out
