"""Direction layers: a layer whose units are directions in another layer's channel space.

A direction layer is named `SOURCE@TAG` (`_blocks.11@nmf32`). Its K units are K directions
d_k of the source layer's C channels, and its activation at a position is a code per
direction computed from the source's activation vector a there:

    nmf     codes = NNLS of relu(a) on the directions       (a concept dictionary, NMF)
    sae     codes = ReLU(TopK(W_enc (a − b_dec) + b_enc))   (a sparse autoencoder's encoder)
    linear  codes = a · d_k                                  (CAVs, activation-atlas cells)

Every view that takes a layer name takes a direction layer through this one mechanism: it
runs the model to the source layer (the recorder, truncated forwards, the scan's cache all
see only real modules) and maps the source's activation through `DirectionLayer.codes`.
The concept analysis that learns dictionaries, TCAV and the atlas only *write* direction
sets (`write_direction_set`); reading them, coding, deleting and rendering live here, below
the analyses, which may not import each other.

Decomposition. Every source activation splits exactly into what the codes explain and the
rest: a = Σ_k codes_k w_k + residual + rest, with w_k the direction a code *writes* (d_k for
nmf and sae, whose codes are lengths along unit directions; d_k/‖d_k‖² for linear, whose code
a·d_k is the projection's length times ‖d_k‖), rest = min(a, 0) for nmf (NMF factorizes the
positive part, see `analyses.concepts.layer`) and zero otherwise, and the residual defined as
what is left, so the identity holds to rounding. Deleting units S subtracts Σ_{k∈S} codes_k w_k
from the source activation (codes of the unedited activation) and changes nothing else.

Objective. What a renderer or a gradient reads of unit k is one C-vector
(`objective_direction`): d_k for nmf and linear, the encoder row W_enc[k] for the SAE (its
pre-activation is exactly linear in a along that row). An NMF code is an NNLS solution:
piecewise linear in a, with kinks wherever the support changes and a zero gradient off
the support, so it is not a usable objective; the renderer maximizes the direction itself
(dot × cosine^p, as Lucid and horama do).

On disk. One folder per set, never pickled; `meta.json` is written last, so its presence
means the folder is complete:

    <cache>/{concepts,directions}/<model key>/<source layer>/<tag>-<key>/
        dictionary.npy   K × C float32 directions, in unit order
        encoder.npz      sae only: w_enc (K × C), b_enc (K), b_dec (C)
        names.json       one name per unit, renamable
        meta.json        at least: kind (or method), source_layer, the layer's name
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from app.core.atomic import atomic_write, atomic_write_json, atomic_write_npz
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.nnls import NNLSDictionary, nnls_codes

KINDS = ("nmf", "sae", "linear")
SEPARATOR = "@"
STORE_FORMAT = 1  # bump when a file's layout changes
STORE_ROOTS = ("concepts", "directions")  # under the cache root: who writes sets where
DIRECTION_KIND = "concepts"  # what `deepvis layers` calls such a layer


class UnknownDirectionLayer(ValueError):
    """A `SOURCE@TAG` name with no complete set stored for this model; one line."""


def split_direction_layer(name: str) -> tuple[str, str]:
    """`a.b@nmf32` → ("a.b", "nmf32"); a plain layer name → (name, "")."""
    source, sep, tag = name.rpartition(SEPARATOR)
    return (source, tag) if sep and source and tag else (name, "")


def is_direction_layer(name: str) -> bool:
    return bool(split_direction_layer(name)[1])


def direction_layer_name(source: str, tag: str) -> str:
    return f"{source}{SEPARATOR}{tag}"


def encode_topk(x: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor,
                b_dec: torch.Tensor, active: int) -> torch.Tensor:
    """(P, C) → (P, K) SAE codes: ReLU of the `active` largest pre-activations, 0 elsewhere."""
    pre = (x - b_dec) @ w_enc.T + b_enc
    vals, idx = pre.topk(min(active, pre.shape[1]), dim=1)
    return torch.zeros_like(pre).scatter_(1, idx, vals.clamp_min(0))


@dataclass(frozen=True, eq=False)
class DirectionSet:
    """K directions of `source`, making the layer `name` (`SOURCE@TAG`); see the module doc."""

    name: str
    source: str
    kind: str  # "nmf", "sae" or "linear"
    directions: np.ndarray  # (K, C) float32, in unit order
    names: tuple[str, ...]  # one per unit
    encoder: Mapping[str, np.ndarray] | None = None  # sae: w_enc, b_enc, b_dec
    active: int = 0  # sae: its TopK
    folder: Path | None = None  # where it is stored (None: made in memory)
    meta: Mapping[str, Any] = field(default_factory=dict)  # the writer's own record

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown direction kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.directions.ndim != 2 or len(self.names) != self.directions.shape[0]:
            raise ValueError("directions must be K × C with one name per direction")
        if self.kind == "sae" and (self.encoder is None or self.active <= 0):
            raise ValueError("an SAE direction set needs its encoder and TopK")

    @property
    def k(self) -> int:
        return int(self.directions.shape[0])

    @property
    def channels(self) -> int:
        return int(self.directions.shape[1])

    @property
    def tag(self) -> str:
        return split_direction_layer(self.name)[1]


@dataclass(frozen=True)
class Decomposition:
    """a = Σ codes_k w_k + residual + rest, all on a's device (module doc)."""

    codes: torch.Tensor  # (N, K, H, W)
    residual: torch.Tensor  # (N, C, H, W)
    rest: torch.Tensor  # (N, C, H, W): min(a, 0) for nmf, zeros otherwise


class DirectionLayer:
    """A direction set's tensors on one device: codes, components, deletion, objectives.

    Build one per set and device and keep it (an NMF set's Gram matrix, its eigenvalues
    and inverse are computed once here, not per frame). Every method takes (C, H, W) or
    (N, C, H, W) and answers in the same rank.
    """

    def __init__(self, directions: DirectionSet, device: torch.device) -> None:
        self.set = directions
        self.kind = directions.kind
        self.device = device
        self.h = torch.from_numpy(np.asarray(directions.directions)).float().to(device)
        enc = directions.encoder or {}
        self.encoder = {n: torch.from_numpy(np.asarray(a)).float().to(device)
                        for n, a in enc.items()}
        self.active = directions.active
        if self.kind == "linear":
            norms2 = self.h.square().sum(1, keepdim=True)
            self.writes = self.h / norms2.clamp_min(torch.finfo(torch.float32).tiny)
        else:
            self.writes = self.h
        # an NMF set's K × K work (Gram matrix, eigenvalues, inverse) once, not per frame
        self.nnls = NNLSDictionary.of(self.h) if self.kind == "nmf" else None
        self.gram = self.nnls.gram if self.nnls is not None else self.h @ self.h.T
        self.lipschitz = self.nnls.lipschitz if self.nnls is not None else 1.0

    @property
    def k(self) -> int:
        return int(self.h.shape[0])

    def factorized(self, acts: torch.Tensor) -> torch.Tensor:
        """The part of `acts` the codes and the residual add up to (module doc)."""
        return acts.clamp_min(0) if self.kind == "nmf" else acts

    def codes(self, acts: torch.Tensor) -> torch.Tensor:
        """The direction layer's activation: (N, K, H, W) codes of (N, C, H, W) `acts`.

        Not differentiable (nmf, sae): gradients go through `objective_direction`."""
        one = acts.dim() == 3
        x = acts.unsqueeze(0) if one else acts
        n, c, h, w = x.shape
        if c != self.h.shape[1]:
            raise ValueError(f"the direction set {self.set.name} has {self.h.shape[1]} "
                             f"channels, the layer {c}")
        flat = self.factorized(x).detach().float().permute(0, 2, 3, 1).reshape(-1, c)
        h_ = self.h.to(flat.device)
        if self.kind == "nmf":
            z = nnls_codes(flat, h_, prepared=self.nnls)
        elif self.kind == "sae":
            e = {k: t.to(flat.device) for k, t in self.encoder.items()}
            z = encode_topk(flat, e["w_enc"], e["b_enc"], e["b_dec"], self.active)
        else:
            z = flat @ h_.T
        # contiguous like a layer's own map: views flatten and view it
        out = z.reshape(n, h, w, -1).permute(0, 3, 1, 2).to(acts.dtype).contiguous()
        return out[0] if one else out

    def check_units(self, units: Sequence[int]) -> None:
        for k in units:
            if not 0 <= k < self.k:
                raise ValueError(f"no unit {k} in {self.set.name}: it has {self.k}")

    def component(self, codes: torch.Tensor, units: Sequence[int] | None = None
                  ) -> torch.Tensor:
        """Σ_k codes_k w_k over `units` (all when None): (N, C, H, W) from (N, K, H, W)."""
        h = self.writes.to(codes.device, codes.dtype)
        if units is not None:
            idx = torch.as_tensor(list(units), dtype=torch.long, device=codes.device)
            codes, h = codes.index_select(-3, idx), h.index_select(0, idx)
        return torch.einsum("...khw,kc->...chw", codes, h)

    def decompose(self, acts: torch.Tensor) -> Decomposition:
        """codes, residual and rest with Σ codes·w + residual + rest = acts exactly."""
        codes = self.codes(acts)
        part = self.factorized(acts)
        return Decomposition(codes, part - self.component(codes), acts - part)

    def delete(self, acts: torch.Tensor, units: Sequence[int], residual: bool = False
               ) -> torch.Tensor:
        """`acts` with the components of `units` removed (and the residual, if asked)."""
        units = list(units)
        self.check_units(units)
        d = self.decompose(acts)
        out = acts - self.component(d.codes, units)
        return out - d.residual if residual else out

    def objective_direction(self, unit: int) -> torch.Tensor:
        """The C-vector a renderer or a gradient reads of `unit` (module doc)."""
        self.check_units([unit])
        if self.kind == "sae":
            return self.encoder["w_enc"][unit]
        return self.h[unit]

    def unit_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) w_k · grad from the source's (N, C, H, W) gradient: with the codes,
        Σ_k codes_k (w_k · g) + (residual + rest) · g = a · g, act × grad in unit space."""
        return torch.einsum("...chw,kc->...khw", grad, self.writes.to(grad.device, grad.dtype))


# -- the store ------------------------------------------------------------------------------------


def default_names(k: int, word: str = "concept") -> tuple[str, ...]:
    return tuple(f"{word} {i}" for i in range(k))


def write_direction_set(folder: Path, directions: np.ndarray, names: Sequence[str],
                        meta: Mapping[str, Any],
                        encoder: Mapping[str, np.ndarray] | None = None) -> None:
    """Write a finished set; meta.json goes last, so a reader never sees half of one.

    `meta` must hold `kind` (or `method`), `source_layer` and the layer's name
    (`direction_layer`, or `concept_layer` as the concept dictionaries call it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete from here until rewritten

    def write_npy(f: IO[bytes]) -> None:
        np.save(f, np.ascontiguousarray(directions, dtype=np.float32), allow_pickle=False)

    atomic_write(folder / "dictionary.npy", write_npy)
    if encoder is not None:
        atomic_write_npz(folder / "encoder.npz",
                         {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in encoder.items()})
    atomic_write_json(folder / "names.json", list(names))
    atomic_write_json(folder / "meta.json", {**meta, "store_format": STORE_FORMAT})


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / "meta.json").read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def read_names(folder: Path, k: int) -> tuple[str, ...]:
    """Stored names, or the defaults when the file is missing or does not fit K."""
    try:
        names = json.loads((folder / "names.json").read_text())
    except (OSError, ValueError):
        return default_names(k)
    if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
        return tuple(names)
    return default_names(k)


def load_direction_set(folder: str | Path) -> DirectionSet | None:
    """The set stored in `folder`, or None when there is no complete one."""
    base = Path(folder)
    meta = read_meta(base)
    if meta is None or meta.get("store_format") != STORE_FORMAT:
        return None
    try:
        kind = str(meta.get("kind", meta.get("method")))
        source = str(meta["source_layer"])
        name = str(meta.get("direction_layer", meta.get("concept_layer")))
        if kind not in KINDS or split_direction_layer(name)[0] != source:
            return None
        directions = np.load(base / "dictionary.npy", allow_pickle=False)
        encoder = None
        if kind == "sae":
            with np.load(base / "encoder.npz", allow_pickle=False) as z:
                encoder = {n: z[n] for n in ("w_enc", "b_enc", "b_dec")}
        return DirectionSet(name=name, source=source, kind=kind, directions=directions,
                            names=read_names(base, int(directions.shape[0])),
                            encoder=encoder, active=int(meta.get("active", 0)),
                            folder=base, meta=meta)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def rename_direction(directions: DirectionSet, index: int, name: str,
                     word: str = "concept") -> DirectionSet:
    """Give unit `index` the name `name` (stored beside the set; empty: the default)."""
    if not 0 <= index < directions.k:
        raise ValueError(f"no unit {index}: {directions.name} has {directions.k}")
    text = " ".join(name.split()) or f"{word} {index}"
    names = list(directions.names)
    if directions.folder is not None:
        names = list(read_names(directions.folder, directions.k))
    names[index] = text
    if directions.folder is not None:
        atomic_write_json(directions.folder / "names.json", names)
    return replace(directions, names=tuple(names))


def direction_sets(cache_root: Path, model_key: str) -> dict[str, DirectionSet]:
    """Every complete set stored for this model, by layer name; for a name learned several
    times (other folders, other settings) the newest finished one (its meta.json's time)."""
    found: dict[str, tuple[float, DirectionSet]] = {}
    for root in STORE_ROOTS:
        base = cache_root / root / model_key
        if not base.is_dir():
            continue
        for meta in base.glob("*/*/meta.json"):
            ds = load_direction_set(meta.parent)
            if ds is None:
                continue
            try:
                when = meta.stat().st_mtime
            except OSError:
                continue
            if ds.name not in found or when > found[ds.name][0]:
                found[ds.name] = (when, ds)
    return {name: found[name][1] for name in sorted(found)}


def resolve(name: str, sets: Mapping[str, DirectionSet]) -> DirectionSet:
    """The set making the layer `name`, with a one-line error naming the ones there are."""
    if name in sets:
        return sets[name]
    source, _tag = split_direction_layer(name)
    here = [n for n in sets if split_direction_layer(n)[0] == source]
    hint = (f"this model has {', '.join(here)}" if here else
            "learn one with `deepvis concepts DATASET --layer " + source + "`")
    raise UnknownDirectionLayer(f"no direction layer {name!r} ({hint})")


def model_direction_sets(loaded: LoadedModel, cache_dir: str = "") -> dict[str, DirectionSet]:
    """`direction_sets` of `loaded` in the configured cache (`[cache].dir`, "" = default)."""
    return direction_sets(cache_root(cache_dir), model_key(loaded))


def direction_layers(loaded: LoadedModel, layers: Iterable[str], cache_dir: str = "",
                     sets: Mapping[str, DirectionSet] | None = None,
                     ) -> dict[str, DirectionLayer]:
    """The `DirectionLayer`s (on the model's device) of the direction layers among `layers`,
    from `sets` or the cache; `UnknownDirectionLayer` for one that is not there. What a view
    passes to `ActivationRecorder` (and uses for deletion or objectives)."""
    wanted = [n for n in dict.fromkeys(layers) if is_direction_layer(n)]
    if not wanted:
        return {}
    found = model_direction_sets(loaded, cache_dir) if sets is None else sets
    return {n: DirectionLayer(resolve(n, found), loaded.device) for n in wanted}
