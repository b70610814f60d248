"""A plain eager PyTorch MMoE and seven balancing methods, the baseline of ``benchmarks.step_time``.

    trainer = TorchTrainer("pcgrad", num_tasks=2, num_numeric=400, num_experts=8,
                           expert_hidden=(256, 128), tower_hidden=(64,))
    losses = trainer.step(numeric, categorical, labels)      # one Adam step, (T,) losses

Needs the optional ``bench-torch`` extra (``torch==2.13.0``, CPU build); nothing
in ``mtl`` imports this module.

The model is the same function as ``mtl.models.get("mmoe", ...)``: embedding
tables laid end to end in one table (``N(0, 0.01)``), input ``h = [numeric,
embeddings]``; ``E`` experts ``h -> expert_hidden`` with ReLU after every layer,
held as batched weights ``(E, in, out)`` and applied with ``torch.baddbmm`` (the
faster of the two eager variants in the field notes); one bias-free softmax gate
per task over the experts; towers ``d -> tower_hidden -> 1`` as batched weights
``(T, in, out)``; sigmoid cross-entropy per task, averaged over the batch; Adam
(lr 1e-3, PyTorch defaults = optax defaults). Weights start from
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, biases from zero, as in mtl.

Per-task gradients are taken the way LibMTL does it: one forward pass, then T
``torch.autograd.grad(loss_t, params, retain_graph=True)`` calls. The shared
parameters (the experts, as in mtl's default) get the method's combination of
the T flattened gradient rows (``J``, ``(T, D)``); every other parameter (gates,
towers, embedding table) gets the plain sum of the task gradients, so each
tower gets its own task's gradient. The Jacobian methods work on the Gramian
``G = J J^T`` (one matmul), solved on the host in float64 numpy, and apply
``w @ J``, like mtl's ``gramian_balancer``:

* ``ew``: one backward pass of ``sum_t L_t``.
* ``uw``: learnable log-variances ``s`` (in the same Adam), loss
  ``sum_t 0.5 exp(-s_t) L_t + 0.5 s_t`` (Kendall et al.; mtl's ``uw``).
* ``gradnorm``: T ``autograd.grad`` calls restricted to the last shared layer
  (the experts' last layer) give ``|grad L_t|``; the task weights take one Adam
  step (lr 0.025) on ``sum_t |w_t n_t - mean(w n) r_t^alpha|``, alpha 1.5, and are
  renormalised to sum to T; the network takes one backward pass of
  ``sum_t w_t L_t`` with the weights before that step (mtl's ``gradnorm``).
* ``pcgrad``: each task's gradient is projected, in an independent random
  order, onto the normal plane of every conflicting original gradient; the
  update is the sum. Done on the Gramian (``g_i^PC = sum_k C_ik g_k``), which is
  the same arithmetic as LibMTL's loop over vectors but costs one ``(T, D) @ (D,
  T)`` product instead of ``T (T - 1)`` dot products and axpys (the stronger baseline).
* ``mgda``: min-norm point of the convex hull; exact closed form for T = 2,
  Frank-Wolfe with exact line search from the best pair for T > 2 (the
  official ``find_min_norm_element_FW``: 250 iterations, stop at an L1 change
  below 1e-5); no gradient normalisation (mtl's default).
* ``cagrad``: c = 0.5, rescale 1; the dual over the simplex
  ``min_w w^T G 1/T + c |g_0| sqrt(w^T G w)`` solved as the official code does,
  with ``scipy.optimize.minimize`` (SLSQP) on the host when scipy is installed,
  else by 300 projected-gradient steps in numpy (``CAGRAD_SOLVER`` says which),
  on the Gramian divided by its mean diagonal (see :func:`cagrad_weights`).
* ``nash_mtl``: the official code's sequence of cvxpy programs is not available
  here; ``G alpha = 1 / alpha`` is solved on the host in numpy by 20 damped
  Newton steps on ``0.5 a^T G a - sum log a`` (on ``G / |G|_F + 1e-8 I``, warm
  started on the ray of the previous weights, mapped back to ``G``'s scale), the
  same fixed point and solver as mtl's ``nash_mtl``; the shared gradient is
  clipped to norm 1 (``max_norm``), the heads get the plain sum (mtl's default).

The host solvers synchronise once per step (``G`` to numpy), as LibMTL and the
official code do; on a CPU that costs nothing extra.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

try:
    import scipy.optimize as _scipy_optimize
except ImportError:  # pragma: no cover - scipy comes with the dev extra
    _scipy_optimize = None

METHODS = ("ew", "uw", "gradnorm", "pcgrad", "mgda", "cagrad", "nash_mtl")
CAGRAD_SOLVER = "scipy SLSQP (official)" if _scipy_optimize is not None else "numpy projected gradient"


def set_threads() -> int:
    """Uses every core this process may run on; returns the count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def _uniform(shape, fan_in, gen):
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


class MMoE(torch.nn.Module):
    """MMoE with batched experts and towers; ``forward`` returns ``(B, T)`` logits."""

    def __init__(self, *, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
                 num_experts: int = 8, expert_hidden: Sequence[int] = (16,), tower_hidden: Sequence[int] = (8,),
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.num_tasks, self.num_experts = num_tasks, num_experts
        total = sum(vocab_sizes)
        self.table = torch.nn.Parameter(torch.randn(total, embed_dim, generator=gen) * 0.01) if total else None
        offsets = np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]) if vocab_sizes else np.zeros(0)
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
        d_in = num_numeric + len(vocab_sizes) * embed_dim
        sizes = (d_in, *expert_hidden)
        self.expert_w = torch.nn.ParameterList(
            [torch.nn.Parameter(_uniform((num_experts, i, o), i, gen)) for i, o in zip(sizes[:-1], sizes[1:])])
        self.expert_b = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(num_experts, 1, o)) for o in sizes[1:]])
        self.gate_w = torch.nn.Parameter(_uniform((num_tasks, d_in, num_experts), d_in, gen))
        sizes = (expert_hidden[-1], *tower_hidden, 1)
        self.tower_w = torch.nn.ParameterList(
            [torch.nn.Parameter(_uniform((num_tasks, i, o), i, gen)) for i, o in zip(sizes[:-1], sizes[1:])])
        self.tower_b = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(num_tasks, 1, o)) for o in sizes[1:]])

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the Jacobian methods balance: the experts (mtl's default)."""
        return [*self.expert_w, *self.expert_b]

    def last_shared_parameters(self) -> list[torch.nn.Parameter]:
        """The experts' last layer (GradNorm's ``W``)."""
        return [self.expert_w[-1], self.expert_b[-1]]

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        h = numeric
        if self.table is not None:
            e = F.embedding(categorical + self.offsets, self.table)  # (B, C, k)
            h = torch.cat([numeric, e.flatten(1)], dim=1)
        x = h.unsqueeze(0).expand(self.num_experts, *h.shape)  # (E, B, d_in), no copy
        for w, b in zip(self.expert_w, self.expert_b):
            x = torch.relu(torch.baddbmm(b, x, w))  # (E, B, d)
        g = torch.softmax(torch.matmul(h, self.gate_w), dim=-1)  # (T, B, E)
        y = torch.einsum("tbe,ebd->tbd", g, x)  # (T, B, d)
        n = len(self.tower_w)
        for i, (w, b) in enumerate(zip(self.tower_w, self.tower_b)):
            y = torch.baddbmm(b, y, w)
            if i < n - 1:
                y = torch.relu(y)
        return y[..., 0].T  # (B, T)


def task_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid cross-entropy of each task: ``(T,)``."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)


# ---------------------------------------------------------------------------
# Host solvers on the T x T Gramian (float64 numpy)
# ---------------------------------------------------------------------------


def pcgrad_weights(gram: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``w = 1^T C`` with ``g_i^PC = sum_k C_ik g_k`` (random order per task)."""
    t = gram.shape[0]
    diag = np.diagonal(gram)
    coeffs = np.eye(t)
    for i in range(t):
        for j in rng.permutation(t):
            if j == i or diag[j] <= 0:
                continue
            dot = coeffs[i] @ gram[:, j]
            if dot < 0:
                coeffs[i, j] -= dot / diag[j]
    return coeffs.sum(0)


def _min_norm_2(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """``argmin_{g in [0, 1]} |g v1 + (1 - g) v2|^2`` and its value."""
    denom = v11 + v22 - 2.0 * v12
    gamma = 0.5 if denom <= 1e-12 * max(v11 + v22, 1e-300) else min(max((v22 - v12) / denom, 0.0), 1.0)
    return gamma, gamma * gamma * v11 + 2 * gamma * (1 - gamma) * v12 + (1 - gamma) ** 2 * v22


def mgda_weights(gram: np.ndarray, *, max_iter: int = 250, stop: float = 1e-5) -> np.ndarray:
    """Min-norm weights on the simplex: closed form (T = 2), Frank-Wolfe (T > 2)."""
    t = gram.shape[0]
    if t == 1:
        return np.ones(1)
    best = None
    for i in range(t):
        for j in range(i + 1, t):
            gamma, cost = _min_norm_2(gram[i, i], gram[i, j], gram[j, j])
            if best is None or cost < best[0]:
                best = (cost, i, j, gamma)
    _, i, j, gamma = best
    w = np.zeros(t)
    w[i], w[j] = gamma, 1.0 - gamma
    for _ in range(max_iter if t > 2 else 0):
        k = int(np.argmin(gram @ w))
        gamma, _ = _min_norm_2(w @ gram @ w, w @ gram[:, k], gram[k, k])
        new = gamma * w
        new[k] += 1.0 - gamma
        if np.abs(new - w).sum() < stop:
            return new
        w = new
    return w


def _project_simplex(v: np.ndarray) -> np.ndarray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def cagrad_weights(gram: np.ndarray, *, c: float = 0.5, rescale: int = 1) -> np.ndarray:
    """Coefficients ``alpha`` of the CAGrad update ``d = sum_i alpha_i g_i``.

    The dual as in the official code (``A = G``, ``b = 1/T``, ``c = c |g_0|``),
    by SLSQP when scipy is installed, else by projected gradient, but on ``G``
    divided by its mean diagonal, as mtl does: with the raw Gramian of small
    gradients SLSQP's absolute tolerance stops at the starting point (uniform
    weights), as the official code then does.
    """
    t = gram.shape[0]
    b = np.full(t, 1.0 / t)
    scale = np.trace(gram) / t
    g = gram / scale if scale > 0 else gram  # the minimiser is scale invariant
    cn = c * math.sqrt(max(g.mean(), 0.0) + 1e-8) + 1e-8

    def objective(x):
        return x @ g @ b + cn * math.sqrt(max(x @ g @ x, 0.0) + 1e-8)

    if _scipy_optimize is not None:
        res = _scipy_optimize.minimize(objective, b.copy(), bounds=[(0.0, 1.0)] * t,
                                       constraints=({"type": "eq", "fun": lambda x: 1.0 - x.sum()},))
        w = res.x
    else:
        w, lip = b.copy(), np.sqrt((g * g).sum()) + 1e-12
        for _ in range(300):
            norm = math.sqrt(max(w @ g @ w, 0.0) + 1e-8)
            grad = g @ b + cn * (g @ w) / norm
            w = _project_simplex(w - grad / (lip * (1.0 + cn / norm)))
    cc = c * math.sqrt(max(gram.mean(), 0.0) + 1e-8) + 1e-8
    gw_norm = math.sqrt(max(w @ gram @ w, 0.0))
    coeffs = b + (cc / (gw_norm + 1e-8)) * w
    return coeffs / {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]


def nash_weights(gram: np.ndarray, init: np.ndarray | None = None, *, num_iters: int = 20,
                 ridge: float = 1e-8) -> np.ndarray:
    """``alpha > 0`` with ``(G alpha)_i = 1 / alpha_i``: damped Newton on ``G / |G|_F``."""
    t = gram.shape[0]
    s = math.sqrt((gram * gram).sum())
    if not s > 0:
        return np.ones(t)
    g = gram / s + ridge * np.eye(t)

    def f(w):
        return 0.5 * w @ g @ w - np.log(w).sum()

    d = np.ones(t) if init is None or not np.all(np.isfinite(init) & (init > 0)) else np.asarray(init, float)
    w = d * math.sqrt(t / max(d @ g @ d, 1e-300))  # best point on the ray through d
    for _ in range(num_iters):
        grad = g @ w - 1.0 / w
        delta = np.linalg.solve(g + np.diag(1.0 / (w * w)), grad)
        pos = delta > 0
        step = min(1.0, float(np.min(np.where(pos, 0.99 * w / np.where(pos, delta, 1.0), 1.0))))
        fw = f(w)
        for _ in range(12):
            cand = w - step * delta
            if np.all(cand > 0) and f(cand) <= fw - 1e-4 * step * (grad @ delta):
                w = cand
                break
            step *= 0.5
    return w / math.sqrt(s)


# ---------------------------------------------------------------------------
# The train step
# ---------------------------------------------------------------------------


class TorchTrainer:
    """An eager MMoE train step with one balancing method (see the module docstring).

    Args:
      method: one of :data:`METHODS`.
      num_tasks, num_numeric, vocab_sizes, embed_dim, num_experts, expert_hidden,
        tower_hidden: the MMoE's sizes (as ``mtl.models.get("mmoe", ...)``).
      learning_rate: Adam's step size.
      seed: initialisation and PCGrad's order.
      device: ``"cpu"`` or ``"cuda"`` (the T x T solvers run on the host, as in the official code).
    """

    def __init__(self, method: str, *, learning_rate: float = 1e-3, seed: int = 0, device: str = "cpu",
                 **model_kwargs):
        if method not in METHODS:
            raise ValueError(f"no PyTorch implementation of {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        self.device = torch.device(device)
        self.model = MMoE(seed=seed, **model_kwargs).to(self.device)
        self.t = self.model.num_tasks
        self.shared = self.model.shared_parameters()
        shared_ids = {id(p) for p in self.shared}
        self.rest = [p for p in self.model.parameters() if id(p) not in shared_ids]
        self.params = [*self.shared, *self.rest]
        extra = []
        if method == "uw":
            self.log_vars = torch.nn.Parameter(torch.zeros(self.t, device=self.device))
            extra = [self.log_vars]
        self.opt = torch.optim.Adam([*self.params, *extra], lr=learning_rate)
        if method == "gradnorm":
            self.gn_weights = torch.ones(self.t, requires_grad=True, device=self.device)
            self.gn_opt = torch.optim.Adam([self.gn_weights], lr=0.025)
            self.gn_l0 = None
        self.rng = np.random.default_rng(seed)
        self.nash_alpha = None

    def step(self, numeric: torch.Tensor, categorical: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One Adam step on the batch; returns the ``(T,)`` task losses before it."""
        self.opt.zero_grad(set_to_none=True)
        losses = task_losses(self.model(numeric, categorical), labels)
        if self.method == "ew":
            losses.sum().backward()
        elif self.method == "uw":
            s = self.log_vars
            (0.5 * torch.exp(-s) * losses + 0.5 * s).sum().backward()
        elif self.method == "gradnorm":
            self._gradnorm(losses)
        else:
            self._jacobian_step(losses)
        self.opt.step()
        return losses.detach()

    def _gradnorm(self, losses):
        last = self.model.last_shared_parameters()
        norms = torch.stack([
            torch.sqrt(sum((g * g).sum() for g in torch.autograd.grad(losses[i], last, retain_graph=True)))
            for i in range(self.t)])
        l_det = losses.detach()
        if self.gn_l0 is None:
            self.gn_l0 = l_det.clone()
        w_before = self.gn_weights.detach().clone()
        ratio = l_det / torch.where(self.gn_l0 > 0, self.gn_l0, torch.ones_like(self.gn_l0))
        r = ratio / ratio.mean().clamp_min(1e-12)
        g = self.gn_weights * norms
        target = (g.mean() * r ** 1.5).detach()
        self.gn_opt.zero_grad(set_to_none=True)
        (g - target).abs().sum().backward(inputs=[self.gn_weights])
        self.gn_opt.step()
        with torch.no_grad():
            w = self.gn_weights.clamp_min_(1e-6)
            w.mul_(self.t / w.sum())
        (w_before * losses).sum().backward()

    def _jacobian_step(self, losses):
        t, ns = self.t, len(self.shared)
        rows, rest = [], [None] * len(self.rest)
        for i in range(t):
            grads = torch.autograd.grad(losses[i], self.params, retain_graph=i < t - 1)
            rows.append(torch.cat([g.reshape(-1) for g in grads[:ns]]))
            rest = [g if r is None else r + g for r, g in zip(rest, grads[ns:])]
        jac = torch.stack(rows)  # (T, D)
        gram = (jac @ jac.T).double().numpy()
        if self.method == "pcgrad":
            w = pcgrad_weights(gram, self.rng)
        elif self.method == "mgda":
            w = mgda_weights(gram)
        elif self.method == "cagrad":
            w = cagrad_weights(gram)
        else:  # nash_mtl
            w = self.nash_alpha = nash_weights(gram, self.nash_alpha)
        combined = torch.as_tensor(w, dtype=jac.dtype) @ jac
        if self.method == "nash_mtl":
            norm = float(w @ gram @ w) ** 0.5
            if norm > 1.0:
                combined = combined * (1.0 / norm)
        offset = 0
        for p in self.shared:
            p.grad = combined[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        for p, g in zip(self.rest, rest):
            p.grad = g


def matmul_gflops(shapes: Sequence[tuple[int, int, int]], *, reps: int = 3) -> dict[str, float]:
    """GFLOP/s of ``torch.matmul`` for each ``(M, K, N)`` (best of ``reps`` after one warm-up)."""
    import time

    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.matmul(a, b)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - t0)
        out[f"{m}x{k}x{n}"] = 2.0 * m * k * n / best / 1e9
    return out
