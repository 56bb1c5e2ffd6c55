"""Magnitude pruning, binary masks, diff pruning and lottery tickets.

**Pruning as a mask.** A pruned network is ``θ' = θ ∘ b`` with a binary mask ``b ∈ {0,1}^d``
(``∘``: elementwise product). Magnitude pruning (Han et al. 2015) keeps the largest ``|θ_i|``:
at sparsity ``s`` it zeroes the ``k = round(s · n)`` smallest weights, either over all target
tensors at once (``scope="global"``: one threshold, layers end up with different sparsities) or
in each tensor separately (``scope="layer"``: every layer at sparsity ``s``). Ties are broken
deterministically: among equal magnitudes the weight that comes first (in parameter order, then
row-major) is pruned first, so the sparsity is always exactly ``k / n``. On weights without ties
the global masks equal ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured)`` and the
per-layer masks ``prune.l1_unstructured`` (``tests/test_pruning.py``).

**Schedules.** One-shot prunes once to ``s``. Iterative prune-and-retrain reaches ``s`` in
``rounds`` steps of equal *relative* size (remaining fraction ``(1-s)^{j/rounds}`` after round
``j``) and retrains between rounds while :func:`keep_masked` re-applies the mask after every
optimiser step, so pruned weights stay exactly zero.

**Diff pruning** (Guo et al. 2021) stores a task as a sparse update of the pretrained weights:
``θ_task = θ_0 + b ∘ φ`` with ``φ = θ_ft - θ_0`` (the task vector). The paper learns ``b`` with a
relaxed L0 penalty; here ``b`` keeps the top ``keep`` fraction of ``|φ|`` (magnitude diff pruning),
optionally followed by retraining with the mask fixed (:func:`keep_diff_masked`).

**Lottery tickets** (Frankle & Carbin 2019): train, prune the smallest weights, *rewind* the
survivors to their initial values (or to early-training values, Frankle et al. 2020), retrain the
sparse network; a winning ticket trains as well as the dense network, a random mask of the same
sparsity does not. :func:`lottery_ticket` runs the whole procedure with a training callback.

Shapes: masks are float tensors of the weight's shape and dtype (as torch's ``weight_mask``),
keyed by parameter name.

Why one module of this length: masks, schedules, diff pruning and lottery tickets share the mask
type and its invariants (exact zero counts, ties), and lecture 03 and exercise 03 import them together.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from ..errors import ConfigError
from .catalog import Perspective
from .targets import find_targets, is_linear

Masks = dict[str, torch.Tensor]


@dataclass
class PruningConfig:
    """``sparsity``: fraction of target weights set to zero, ``0 <= sparsity < 1``.
    ``scope``: ``"global"`` or ``"layer"``. ``schedule``: ``"one-shot"`` or ``"iterative"`` (with
    ``rounds >= 2`` and ``retrain_steps`` per round). ``target_modules``: names (or name endings) of
    the modules whose ``weight`` is pruned; ``None``: every linear layer except ``lm_head``."""

    sparsity: float
    scope: str = "global"
    schedule: str = "one-shot"
    rounds: int = 1
    retrain_steps: int = 0
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self):
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) \
                or not 0 <= self.sparsity < 1:
            raise ConfigError(f"sparsity={self.sparsity!r} must be a number with 0 <= sparsity < 1.",
                              "pass the fraction of weights to remove, e.g. sparsity=0.5 for half of them.")
        if self.scope not in ("global", "layer"):
            raise ConfigError(f"unknown scope {self.scope!r}.", "use scope='global' (one threshold) or 'layer'.")
        if self.schedule not in ("one-shot", "iterative"):
            raise ConfigError(f"unknown schedule {self.schedule!r}.", "use schedule='one-shot' or 'iterative'.")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds={self.rounds!r} must be a positive integer.", "use rounds=1 (one-shot) or e.g. 4.")
        if self.schedule == "one-shot" and self.rounds != 1:
            raise ConfigError(f"a one-shot schedule has one round, got rounds={self.rounds}.",
                              "use schedule='iterative' for several rounds, or rounds=1.")
        if self.schedule == "iterative" and self.rounds < 2:
            raise ConfigError("an iterative schedule needs rounds >= 2.", "pass e.g. rounds=4, or schedule='one-shot'.")
        if self.retrain_steps < 0:
            raise ConfigError(f"retrain_steps={self.retrain_steps} must be >= 0.", "pass 0 for no retraining.")
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)

    def schedule_sparsities(self) -> list[float]:
        """Target sparsity after each round: ``1 - (1 - s)^(j / rounds)``, the last one exactly ``s``."""
        out = [1 - (1 - self.sparsity) ** (j / self.rounds) for j in range(1, self.rounds + 1)]
        out[-1] = float(self.sparsity)
        return out


# --------------------------------------------------------------------------------------------- masks
def _has_weight(module) -> bool:
    return isinstance(getattr(module, "weight", None), torch.Tensor)


def prunable_parameters(model: nn.Module, target_modules=None) -> dict[str, nn.Parameter]:
    """The weights pruning acts on, by parameter name: linear layers' weights (``lm_head`` excluded)
    or the ``weight`` of the modules named in ``target_modules`` (peft's rule for a list of names:
    the full name or its dotted suffix; a single string here is one name, not a pattern)."""
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    if target_modules is None:
        names = [n for n, m in model.named_modules() if is_linear(m) and not n.endswith("lm_head")]
    else:
        names = find_targets(model, list(target_modules), method="pruning", accept=_has_weight,
                             what="modules with a weight")
    if not names:
        raise ConfigError("the model has no linear layer to prune.", "pass target_modules=(...) naming layers with weights.")
    return {f"{n}.weight" if n else "weight": model.get_submodule(n).weight for n in names}


def _check_sparsity(sparsity):
    PruningConfig(sparsity=sparsity)  # same validation and message


def _k_of(sparsity: float, n: int) -> int:
    return int(round(sparsity * n))   # torch.nn.utils.prune's rule for a fractional amount


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k smallest entries; ties: the first index goes first (stable sort)."""
    pruned = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k:
        pruned[torch.argsort(scores.flatten(), stable=True)[:k]] = True
    return pruned.view_as(scores)


def magnitude_masks(params, sparsity: float, scope: str = "global", *, scores: dict | None = None,
                    current: Masks | None = None) -> Masks:
    """Binary masks that remove the ``round(sparsity * n)`` smallest-magnitude weights.

    ``params``: a model (its :func:`prunable_parameters`) or a dict ``name -> tensor``.
    ``scores``: what to rank instead of ``|θ|`` (e.g. ``|φ|`` for diff pruning). ``current``:
    masks of an earlier round; weights they removed stay removed (they rank below every other).
    ``sparsity`` is the total fraction removed (``scope="global"``: over all tensors together;
    ``"layer"``: in each tensor).
    """
    _check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ConfigError(f"unknown scope {scope!r}.", "use scope='global' or 'layer'.")
    if isinstance(params, nn.Module):
        params = prunable_parameters(params)
    score = {}
    for name, p in params.items():
        s = (scores[name] if scores is not None else p).detach().abs().float()
        if current is not None and name in current:
            s = torch.where(current[name].bool(), s, torch.full_like(s, -1.0))
        score[name] = s
    if scope == "layer":
        return {n: (~_smallest(s, _k_of(sparsity, s.numel()))).to(params[n].dtype) for n, s in score.items()}
    flat = torch.cat([s.flatten() for s in score.values()])
    pruned = _smallest(flat, _k_of(sparsity, flat.numel()))
    masks, start = {}, 0
    for name, s in score.items():
        masks[name] = (~pruned[start:start + s.numel()]).view_as(s).to(params[name].dtype)
        start += s.numel()
    return masks


def global_mask_problem(weights: dict, masks: Masks, sparsity: float) -> str | None:
    """Why ``masks`` is not a global magnitude mask of ``weights`` at ``sparsity``; None when it is.

    A correct mask zeroes exactly ``round(sparsity * n)`` entries over all tensors together, holds only
    0 and 1, and never keeps an entry of smaller ``|w|`` than one it prunes. Ties at the cutoff may be
    broken any way: bf16 weights (loaded as fp32 or not) tie often, so two correct masks, e.g. this
    module's and ``torch.nn.utils.prune``'s, can differ there. Compares on the CPU in fp32 (exact for
    bf16 and fp16 values).
    """
    names = list(weights)
    if set(masks) != set(names):
        return f"the masks' keys {sorted(masks)[:3]}... are not the weights' keys {names[:3]}..."
    bad = [n for n in names if tuple(masks[n].shape) != tuple(weights[n].shape)]
    if bad:
        return f"the mask of {bad[0]} has shape {tuple(masks[bad[0]].shape)}, its weight {tuple(weights[bad[0]].shape)}"
    mag = torch.cat([weights[n].detach().abs().flatten().float().cpu() for n in names])
    m = torch.cat([masks[n].detach().flatten().float().cpu() for n in names])
    if not bool(((m == 0) | (m == 1)).all()):
        return "a mask holds values other than 0 (prune) and 1 (keep)"
    zeros, want = int((m == 0).sum()), _k_of(sparsity, mag.numel())
    if zeros != want:
        return (f"{zeros:,} zeros; exactly round({sparsity} * {mag.numel():,}) = {want:,} expected "
                "(over all tensors together)")
    if 0 < zeros < mag.numel() and float(mag[m == 0].max()) > float(mag[m == 1].min()):
        return (f"a pruned entry has |w| = {float(mag[m == 0].max()):.3g} but a kept one only "
                f"{float(mag[m == 1].min()):.3g}: prune the smallest |w| over all layers at once")
    return None


def random_masks_like(masks: Masks, seed: int = 0) -> Masks:
    """Random masks with the same number of zeros in every tensor (the lottery ticket's control)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in masks.items():
        flat = m.flatten()
        out[name] = flat[torch.randperm(flat.numel(), generator=g)].view_as(m).clone()
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """``θ ← θ ∘ b`` in place for every masked parameter."""
    params = dict(model.named_parameters())
    for name, m in masks.items():
        if name not in params:
            raise ConfigError(f"mask for {name!r}, which is not a parameter of this model.",
                              "compute the masks on this model (magnitude_masks(model, ...)).")
        params[name].mul_(m.to(params[name].device))


def keep_masked(masks: Masks) -> Callable[[int, nn.Module], None]:
    """An ``after_step`` callback for :func:`course_lib.training.train` that re-applies the masks after
    every optimiser step (Adam's momentum would otherwise revive pruned weights)."""
    def after_step(step: int, model: nn.Module) -> None:
        apply_masks(model, masks)
    return after_step


def sparsity(model_or_params, masks: Masks | None = None) -> float:
    """Fraction of exactly-zero entries among the pruned tensors (or ``1 - mean(b)`` of ``masks``)."""
    if masks is not None:
        return 1 - sum(m.sum().item() for m in masks.values()) / sum(m.numel() for m in masks.values())
    params = prunable_parameters(model_or_params) if isinstance(model_or_params, nn.Module) else model_or_params
    return sum((p == 0).sum().item() for p in params.values()) / sum(p.numel() for p in params.values())


def layer_sparsities(masks: Masks) -> dict[str, float]:
    """Per-tensor sparsity of a set of masks (global pruning spreads it unevenly)."""
    return {n: 1 - m.mean().item() for n, m in masks.items()}


def prune(model: nn.Module, config: PruningConfig, *, current: Masks | None = None) -> Masks:
    """One-shot magnitude pruning: compute the masks of ``config`` and apply them in place."""
    masks = magnitude_masks(prunable_parameters(model, config.target_modules), config.sparsity, config.scope,
                            current=current)
    apply_masks(model, masks)
    return masks


@dataclass
class PruningResult:
    masks: Masks
    history: list[dict] = field(default_factory=list)   # {"round", "sparsity", "accuracy"} per round


def iterative_prune(model: nn.Module, config: PruningConfig, retrain: Callable[[nn.Module, Callable], float | None],
                    *, progress: bool = True) -> PruningResult:
    """Prune in ``config.rounds`` rounds to ``config.sparsity``; after each round call
    ``retrain(model, after_step)`` (which trains with the given ``after_step`` re-masking callback
    and may return an accuracy). A one-shot config runs one round.

    ``retrain`` is usually ``lambda m, cb: train(m, tok, task, TrainConfig(...), after_step=cb,
    progress=False).final_accuracy``.
    """
    from tqdm.auto import tqdm

    masks, history = None, []
    for j, s in enumerate(tqdm(config.schedule_sparsities(), desc="prune rounds", disable=not progress), start=1):
        masks = prune(model, PruningConfig(s, config.scope, target_modules=config.target_modules), current=masks)
        acc = retrain(model, keep_masked(masks))
        apply_masks(model, masks)
        history.append({"round": j, "sparsity": sparsity(model, masks), "accuracy": acc})
    return PruningResult(masks, history)


# --------------------------------------------------------------------------------------------- diff pruning
def task_vector(finetuned: nn.Module, pretrained: nn.Module | dict, names=None) -> dict[str, torch.Tensor]:
    """``φ = θ_ft − θ_0`` for every floating-point parameter (or the given ``names``)."""
    theta0 = pretrained if isinstance(pretrained, dict) else dict(pretrained.named_parameters())
    phi = {}
    for name, p in finetuned.named_parameters():
        if (names is None or name in names) and p.is_floating_point():
            if name not in theta0:
                raise ConfigError(f"{name!r} is missing from the pretrained weights.",
                                  "pass the model (or state dict) the fine-tuned model started from.")
            phi[name] = (p.detach() - theta0[name].detach().to(p.device)).clone()
    return phi


def diff_prune(phi: dict[str, torch.Tensor], keep: float) -> tuple[dict[str, torch.Tensor], Masks]:
    """Keep the top ``keep`` fraction of ``|φ|`` over all tensors; returns ``(b ∘ φ, b)``."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ConfigError(f"keep={keep!r} must be a fraction with 0 < keep <= 1.",
                          "pass the fraction of the task vector to keep, e.g. keep=0.05 for 5%.")
    masks = magnitude_masks(phi, 1 - keep, "global")
    return {n: phi[n] * masks[n] for n in phi}, masks


@torch.no_grad()
def apply_diff(model: nn.Module, theta0: dict[str, torch.Tensor], phi: dict[str, torch.Tensor],
               masks: Masks | None = None) -> None:
    """``θ ← θ_0 + b ∘ φ`` in place (``b = 1`` where no mask is given)."""
    params = dict(model.named_parameters())
    for name, d in phi.items():
        upd = d if masks is None or name not in masks else d * masks[name]
        params[name].copy_(theta0[name].to(params[name].device) + upd.to(params[name].device))


def keep_diff_masked(theta0: dict[str, torch.Tensor], masks: Masks) -> Callable[[int, nn.Module], None]:
    """``after_step`` callback that projects the weights back onto ``θ_0 + b ∘ (θ − θ_0)``."""
    @torch.no_grad()
    def after_step(step: int, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, m in masks.items():
            p = params[name]
            p.copy_(theta0[name] + m * (p - theta0[name]))
    return after_step


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter (``θ_0`` for rewinding and diff pruning)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --------------------------------------------------------------------------------------------- lottery ticket
@dataclass
class LotteryResult:
    dense: float
    ticket: float
    random_mask: float
    sparsity: float
    masks: Masks
    rounds: list[dict] = field(default_factory=list)


def lottery_ticket(model: nn.Module, train_fn: Callable[[nn.Module, Callable | None], float],
                   config: PruningConfig, *, rewind_to: dict[str, torch.Tensor] | None = None,
                   seed: int = 0, progress: bool = True) -> LotteryResult:
    """Find a winning ticket and compare it with a random mask of the same sparsity.

    ``model`` is at initialisation; ``train_fn(model, after_step)`` trains it in place (with the
    re-masking callback, or ``None`` for dense) and returns an accuracy. Procedure: save ``θ_0``
    (or use ``rewind_to``, e.g. weights after a few steps), train dense; then for each round of
    ``config.schedule_sparsities()``: prune the trained weights by magnitude, rewind the survivors to
    ``θ_0`` (``θ = θ_0 ∘ b``) and retrain with the mask fixed. The control starts from the same
    ``θ_0`` with :func:`random_masks_like` (same per-tensor sparsity) and the same training.
    """
    from tqdm.auto import tqdm

    theta0 = rewind_to if rewind_to is not None else snapshot(model)
    dense = train_fn(model, None)
    masks, rounds = None, []
    acc = dense
    for j, s in enumerate(tqdm(config.schedule_sparsities(), desc="ticket rounds", disable=not progress), start=1):
        masks = magnitude_masks(prunable_parameters(model, config.target_modules), s, config.scope, current=masks)
        _load(model, theta0)
        apply_masks(model, masks)
        acc = train_fn(model, keep_masked(masks))
        apply_masks(model, masks)
        rounds.append({"round": j, "sparsity": sparsity(model, masks), "accuracy": acc})
    ticket_weights = snapshot(model)
    control = random_masks_like(masks, seed)
    _load(model, theta0)
    apply_masks(model, control)
    rand = train_fn(model, keep_masked(control))
    _load(model, ticket_weights)
    return LotteryResult(dense, acc, rand, sparsity(model, masks), masks, rounds)


@torch.no_grad()
def _load(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for n, w in weights.items():
        params[n].copy_(w)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (so one pretrained model can be pruned several ways)."""
    return copy.deepcopy(model)


# --------------------------------------------------------------------------------------------- a ticket-sized model
class TinyMLP(nn.Module):
    """``n_in -> hidden -> hidden -> n_out`` with ReLU: small enough to retrain many times on a CPU."""

    def __init__(self, n_in: int, hidden: int = 128, n_out: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.net(x)


def bag_of_words(task, splits=("train", "test"), vocabulary=None):
    """Word-count features of ``task``'s texts: ``{split: (X (n, V) float, y (n,) long)}`` and the vocabulary."""
    if vocabulary is None:
        vocabulary = sorted({w for ex in task[splits[0]] for w in ex.text.split()})
    index = {w: i for i, w in enumerate(vocabulary)}
    out = {}
    for split in splits:
        exs = task[split]
        X = torch.zeros(len(exs), len(vocabulary))
        for i, ex in enumerate(exs):
            for w in ex.text.split():
                if w in index:
                    X[i, index[w]] += 1
        out[split] = (X, torch.tensor([ex.label for ex in exs]))
    return out, vocabulary


def train_classifier(model: nn.Module, data, *, steps: int = 100, lr: float = 3e-3, batch_size: int = 64,
                     seed: int = 0, after_step=None, eval_split: str = "test") -> float:
    """Minibatch AdamW on ``data["train"]`` (from :func:`bag_of_words`); returns ``eval_split`` accuracy."""
    X, y = data["train"]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(X), (batch_size,), generator=g)
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step, model)
    model.eval()
    Xe, ye = data[eval_split]
    with torch.no_grad():
        return (model(Xe).argmax(-1) == ye).float().mean().item()


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("magnitude pruning", "parameter", "selective", "Han et al. 2015",
                "keeps a subset of the weights (a binary mask); it compresses rather than adapts"),
    Perspective("diff pruning", "parameter", "selective", "Guo et al. 2021",
                "a sparse update of the pretrained weights, theta_0 + b * phi"),
    Perspective("lottery ticket", "parameter", "selective", "Frankle & Carbin 2019",
                "a sparse subnetwork rewound to its initial values and retrained"),
)
