"""A TopK sparse autoencoder over a sample matrix (Gao et al. 2024, "Scaling and evaluating
sparse autoencoders"), for dictionaries of hundreds or thousands of directions.

    codes  z = ReLU(TopK(W_enc (x − b_dec) + b_enc))      K latents, at most `active` nonzero
    recon  x̂ = z W_dec + b_dec                            rows of W_dec: unit-norm directions

The TopK replaces an L1 penalty: sparsity is exact and there is no shrinkage to tune. The
decoder rows are renormalized after every step (so a code is the direction's length in the
sample) and the gradient's component along each row is removed before the step, as in the
paper. W_enc starts as the decoder's transpose, b_dec at the samples' mean.

Dead latents — ones that have not fired for `dead_after` steps — are revived by the paper's
auxiliary loss (AuxK): the dead latents' own TopK (of `aux_k`) is asked to reconstruct the
main reconstruction's residual, weighted 1/32, which gives them a gradient towards what the
live latents miss.

Inputs are divided by one scalar (the samples' RMS norm) during training, so that the
learning rate means the same thing on every layer; the scale is folded back into b_enc and
b_dec at the end (TopK and ReLU commute with a positive scale), so the stored encoder takes
raw activations and gives codes in the layer's own units.

Training is a plain loop over seeded mini-batches (the batch of step t is drawn from a
generator seeded by (seed, t), so no generator state needs saving) with Adam written out,
so that the whole state is tensors that a job checkpoints and restores exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from app.engine.analyses.concepts.nmf import wide
from app.engine.runtime.directions import encode_topk as encode

__all__ = ["SAEFit", "encode", "reconstruction_error"]


@dataclass
class SAEFit:
    """A TopK SAE being trained on `a` (n × C); `step(n)` runs n optimizer steps."""

    a: torch.Tensor
    k: int
    active: int
    seed: int
    total_steps: int
    batch: int = 512
    lr: float = 1e-3
    dead_after: int = 0  # steps without firing before a latent counts as dead (0: an epoch)
    aux_k: int = 0  # latents of the auxiliary TopK (0: 2 × active)
    aux_weight: float = 1 / 32  # of the AuxK loss (the paper's); 0 turns dead-latent help off
    iteration: int = 0
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    moments: dict[str, torch.Tensor] = field(default_factory=dict)
    idle: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # steps since fired
    scale: float = 1.0
    loss: float = math.inf
    dead_latents: int = 0  # latents that fire on no sample, counted by `weights()`

    def __post_init__(self) -> None:
        n, c = self.a.shape
        self.dead_after = self.dead_after or max(1, math.ceil(n / self.batch))
        self.aux_k = self.aux_k or 2 * self.active
        if self.params:
            return
        dev = self.a.device
        self.scale = float(self.a.square().sum(1).mean().sqrt()) or 1.0
        g = torch.Generator().manual_seed(self.seed)
        w_dec = torch.randn(self.k, c, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.params = {
            "w_enc": w_dec.clone().to(dev), "b_enc": torch.zeros(self.k, device=dev),
            "w_dec": w_dec.to(dev), "b_dec": (self.a.mean(0) / self.scale).clone(),
        }
        self.moments = {f"{m}.{name}": torch.zeros_like(p)
                        for name, p in self.params.items() for m in ("m", "v")}
        self.idle = torch.zeros(self.k, dtype=torch.int64, device=dev)

    @property
    def converged(self) -> bool:
        return self.iteration >= self.total_steps

    def _batch(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.iteration)
        idx = torch.randint(self.a.shape[0], (min(self.batch, self.a.shape[0]),), generator=g)
        return self.a[idx.to(self.a.device)] / self.scale

    def step(self, steps: int = 1) -> float:
        """Run optimizer steps (up to `total_steps`); returns the last normalized MSE."""
        for _ in range(min(steps, self.total_steps - self.iteration)):
            self._one_step()
        return self.loss

    def _one_step(self) -> None:
        x = self._batch()
        p = {name: t.detach().requires_grad_(True) for name, t in self.params.items()}
        with torch.enable_grad():
            pre = (x - p["b_dec"]) @ p["w_enc"].T + p["b_enc"]
            vals, idx = pre.topk(min(self.active, self.k), dim=1)
            z = torch.zeros_like(pre).scatter(1, idx, vals.clamp_min(0))
            err = x - (z @ p["w_dec"] + p["b_dec"])
            spread = (x - x.mean(0)).square().sum().clamp_min(1e-12)
            loss = err.square().sum() / spread
            dead = self.idle >= self.dead_after
            n_dead = int(dead.sum())
            if n_dead and self.aux_weight:
                masked = pre.masked_fill(~dead, -math.inf)
                v_aux, i_aux = masked.topk(min(self.aux_k, n_dead), dim=1)
                z_aux = torch.zeros_like(pre).scatter(1, i_aux, v_aux.clamp_min(0))
                target = err.detach()
                aux = ((target - z_aux @ p["w_dec"]).square().sum()
                       / target.square().sum().clamp_min(1e-12))
                loss = loss + self.aux_weight * aux
            loss.backward()
        fired = torch.zeros(self.k, dtype=torch.bool, device=x.device)
        fired[idx[vals > 0]] = True
        self.idle = torch.where(fired, 0, self.idle + 1)
        with torch.no_grad():
            w_dec = p["w_dec"]
            assert w_dec.grad is not None
            # the part of the gradient that would only change a row's length is removed:
            # the length is renormalized away after the step anyway
            w_dec.grad -= (w_dec.grad * w_dec).sum(1, keepdim=True) * w_dec
            self.iteration += 1
            b1, b2, eps = 0.9, 0.999, 1e-8
            for name, t in p.items():
                grad = t.grad
                assert grad is not None
                m, v = self.moments[f"m.{name}"], self.moments[f"v.{name}"]
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                m_hat = m / (1 - b1 ** self.iteration)
                v_hat = v / (1 - b2 ** self.iteration)
                self.params[name] = t.detach() - self.lr * m_hat / (v_hat.sqrt() + eps)
            w = self.params["w_dec"]
            self.params["w_dec"] = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.loss = float(loss.detach())

    def weights(self) -> dict[str, torch.Tensor]:
        """The encoder and decoder for raw activations (the scale folded in), latents in
        concept order: by their mean code over the samples, largest first."""
        s = self.scale
        out = {"w_enc": self.params["w_enc"], "b_enc": self.params["b_enc"] * s,
               "w_dec": self.params["w_dec"], "b_dec": self.params["b_dec"] * s}
        mean_code = wide(torch.zeros(self.k, device=self.a.device))
        for i in range(0, self.a.shape[0], 16384):
            z = encode(self.a[i:i + 16384], out["w_enc"], out["b_enc"], out["b_dec"],
                       self.active)
            mean_code += wide(z.sum(0))
        order = torch.argsort(mean_code, descending=True, stable=True)
        self.dead_latents = int((mean_code == 0).sum())
        out["w_enc"], out["b_enc"], out["w_dec"] = (
            out["w_enc"][order].contiguous(), out["b_enc"][order].contiguous(),
            out["w_dec"][order].contiguous())
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {**{f"p.{n}": t for n, t in self.params.items()}, **self.moments,
                "idle": self.idle,
                "progress": torch.tensor([self.iteration, self.scale, self.loss],
                                         dtype=torch.float64)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.a.device
        self.params = {n[2:]: t.to(dev).clone() for n, t in state.items() if n.startswith("p.")}
        self.moments = {n: state[n].to(dev).clone() for n in self.moments}
        self.idle = state["idle"].to(dev).clone()
        it, scale, loss = state["progress"].tolist()
        self.iteration, self.scale, self.loss = int(it), scale, loss


def reconstruction_error(a: torch.Tensor, w: dict[str, torch.Tensor], active: int) -> float:
    """‖A − (Z W_dec + b_dec)‖ / ‖A‖ on the samples."""
    num = den = 0.0
    for i in range(0, a.shape[0], 16384):
        x = a[i:i + 16384]
        z = encode(x, w["w_enc"], w["b_enc"], w["b_dec"], active)
        num += float(wide(x - z @ w["w_dec"] - w["b_dec"]).square().sum())
        den += float(wide(x).square().sum())
    return math.sqrt(num / den) if den else 0.0
