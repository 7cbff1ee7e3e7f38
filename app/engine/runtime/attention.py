"""Attention maps of a vision transformer: per block and head, for one query token; rollout.

torchvision's ViT calls its `nn.MultiheadAttention` with `need_weights=False` (the fused
kernel never forms the weights), and timm's `Attention` uses fused scaled-dot-product
attention. Neither model is changed here: a forward pre-hook on each attention module keeps
its inputs, and the weights are recomputed afterwards from those inputs with the module's own
projections, softmax(q·kᵀ/√d) per head, exactly as the module computes them. The hooks are
removed whatever happens, and the model runs unmodified; call it on a private copy when a
live recorder hooks the model (its hooks would record this pass).

Global attention only (ViT, DeiT, timm's ViT family): Swin's and MaxViT's windows attend
within windows and have no one (tokens × tokens) matrix, so `attention_maps` raises
AttentionError for them.

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): each block's
head-averaged attention with the residual added, Â = ½A + ½I, rows renormalised; the rollout
is Â_L ⋯ Â_1, so its row t says how much each input token flows into token t at the top.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.runtime.layout import TOKENS, layout_of

CLS_QUERY = "cls"


class AttentionError(RuntimeError):
    """No global attention to show (a CNN, windowed attention, an unsupported module)."""


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """Every block's attention for one image.

    `weights` is (blocks, heads, T, T) float32, row = query token, column = key token, rows
    summing to 1; T = `prefix` + h·w with `grid` = (h, w); `blocks` names the attention
    modules in call order.
    """

    blocks: tuple[str, ...]
    weights: np.ndarray
    prefix: int
    grid: tuple[int, int]

    def query_index(self, query: str | tuple[int, int]) -> int:
        """Token index of `query`: "cls" (the first prefix token) or a grid (y, x)."""
        if isinstance(query, str):
            if query != CLS_QUERY:
                raise AttentionError(f"unknown query {query!r}: use 'cls' or (y, x)")
            if not self.prefix:
                raise AttentionError("this model has no class token: pick a grid position")
            return 0
        y, x = query
        h, w = self.grid
        if not (0 <= y < h and 0 <= x < w):
            raise AttentionError(f"query ({y}, {x}) is outside the {h}×{w} token grid")
        return self.prefix + y * w + x

    def for_query(self, block: int, query: str | tuple[int, int]) -> np.ndarray:
        """(heads, h, w): where each head of `block` looks from `query` (grid keys only)."""
        row = self.weights[block, :, self.query_index(query), self.prefix:]
        return row.reshape(row.shape[0], *self.grid)

    def rollout(self, query: str | tuple[int, int], upto: int | None = None,
                head_fusion: str = "mean") -> np.ndarray:
        """(h, w) attention rollout of `query` through blocks 0..upto (all by default);
        heads fused by "mean" (the paper's) or "max"."""
        last = len(self.blocks) - 1 if upto is None else upto
        return rollout(self.weights[: last + 1], head_fusion)[self.query_index(query),
                                                               self.prefix:].reshape(self.grid)


def rollout(weights: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """(blocks, heads, T, T) attention → (T, T) rollout, Â_L ⋯ Â_1 with Â = norm(½A + ½I)."""
    if head_fusion not in ("mean", "max"):
        raise ValueError(f"unknown head fusion {head_fusion!r}: use mean or max")
    fused = weights.mean(1) if head_fusion == "mean" else weights.max(1)
    t = fused.shape[-1]
    out = np.eye(t, dtype=np.float64)
    for a in fused.astype(np.float64):
        a = 0.5 * a + 0.5 * np.eye(t)
        a /= a.sum(-1, keepdims=True)
        out = a @ out
    return out.astype(np.float32)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The global self-attention modules of `model`, in definition order."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m):
            found.append((name, m))
    return found


def _is_timm_attention(m: nn.Module) -> bool:
    return (type(m).__name__ == "Attention" and isinstance(getattr(m, "qkv", None), nn.Linear)
            and isinstance(getattr(m, "num_heads", None), int))


class AttentionProbe(AbstractContextManager["AttentionProbe"]):
    """Keeps the inputs of every attention module during the passes run while entered, so
    that a pass the caller runs anyway (the live recorder's) also gives the attention:

        with AttentionProbe(model) as probe:
            recorder.run(x)
        maps = probe.maps()   # image 0 of the last pass

    Hooks come off on exit, whatever happens. AttentionError if the model has no global
    self-attention.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = attention_modules(model)
        if not self.modules:
            raise AttentionError("the model has no global self-attention (a ViT-style "
                                 "transformer): Swin and MaxViT attend within windows")
        self._inputs: dict[str, tuple[Any, Any]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> AttentionProbe:
        try:
            for name, m in self.modules:
                self._handles.append(m.register_forward_pre_hook(self._keep(name),
                                                                 with_kwargs=True))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _keep(self, name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            # a new pass starts at the first module: forget the last pass's inputs
            if name == self.modules[0][0]:
                self._inputs.clear()
            if name not in self._inputs:  # a module reused in one pass: its first call
                query = args[0] if args else kwargs.get("query", kwargs.get("x"))
                key = args[1] if len(args) > 1 else kwargs.get("key", query)
                self._inputs[name] = (query, key)

        return hook

    def maps(self) -> AttentionMaps:
        """Every block's attention for image 0 of the last pass."""
        ran = [(n, m) for n, m in self.modules if n in self._inputs]
        if not ran:
            raise AttentionError("no attention module ran in the forward pass")
        with torch.no_grad():
            weights = [_weights(m, *self._inputs[n]) for n, m in ran]
        layout = layout_of(self._inputs[ran[0][0]][0])
        if layout is None or layout.kind != TOKENS:
            raise AttentionError("the attention's tokens make no square grid")
        stacked = torch.stack(weights).float().cpu().numpy()
        return AttentionMaps(tuple(n for n, _ in ran), stacked, layout.prefix, layout.grid)


def attention_maps(model: nn.Module, x: torch.Tensor) -> AttentionMaps:
    """Run `model` on one (1, 3, H, W) input and return every block's attention weights."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise AttentionError(f"expected a (1, 3, H, W) input, got {tuple(x.shape)}")
    with AttentionProbe(model) as probe, torch.no_grad():
        model(x)
    return probe.maps()


def _weights(m: nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(heads, T, T) softmax attention weights of image 0, recomputed from the inputs."""
    if isinstance(m, nn.MultiheadAttention):
        return _mha_weights(m, query, key)
    return _timm_weights(m, query)


def _mha_weights(m: nn.MultiheadAttention, query: torch.Tensor,
                 key: torch.Tensor) -> torch.Tensor:
    if m.bias_k is not None or m.add_zero_attn:
        raise AttentionError("nn.MultiheadAttention with bias_k or add_zero_attn is not "
                             "supported")
    if not m.batch_first:  # (T, N, E) → (N, T, E)
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, heads = m.embed_dim, m.num_heads
    bias = m.in_proj_bias
    bq = bias[:e] if bias is not None else None
    bk = bias[e:2 * e] if bias is not None else None
    if m._qkv_same_embed_dim:
        wq, wk = m.in_proj_weight[:e], m.in_proj_weight[e:2 * e]
    else:
        wq, wk = m.q_proj_weight, m.k_proj_weight
    q = F.linear(query[:1], wq, bq)
    k = F.linear(key[:1], wk, bk)
    return _softmax_heads(q, k, heads, 1.0 / math.sqrt(e // heads))


def _timm_weights(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    heads = int(getattr(m, "num_heads"))  # noqa: B009 - checked by _is_timm_attention
    qkv_linear = getattr(m, "qkv")  # noqa: B009
    n, t, _ = x[:1].shape
    qkv = qkv_linear(x[:1]).reshape(n, t, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]  # (1, heads, T, d)
    q_norm, k_norm = getattr(m, "q_norm", None), getattr(m, "k_norm", None)
    if isinstance(q_norm, nn.Module):
        q = q_norm(q)
    if isinstance(k_norm, nn.Module):
        k = k_norm(k)
    scale = float(getattr(m, "scale", q.shape[-1] ** -0.5))
    return (q @ k.transpose(-2, -1) * scale).softmax(-1)[0]


def _softmax_heads(q: torch.Tensor, k: torch.Tensor, heads: int,
                   scale: float) -> torch.Tensor:
    """(1, T, E) queries and keys → (heads, T, T) softmax(q·kᵀ·scale) per head."""
    _, t, e = q.shape
    qh = q.reshape(t, heads, e // heads).transpose(0, 1)
    kh = k.reshape(k.shape[1], heads, e // heads).transpose(0, 1)
    return (qh @ kh.transpose(1, 2) * scale).softmax(-1)
