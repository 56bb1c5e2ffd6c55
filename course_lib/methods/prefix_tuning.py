"""Prefix tuning, from scratch: learned keys and values in front of every layer's attention.

Prefix tuning (Li & Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation")
freezes the language model and learns, for every layer ``l``, ``P`` key vectors and ``P`` value
vectors that every real token can attend to. For one head with query ``q`` (a real token)::

    head = softmax(q [P_K ; K]^T / sqrt(d_h)) [P_V ; V]
         = lambda * softmax(q P_K^T / sqrt(d_h)) P_V + (1 - lambda) * softmax(q K^T / sqrt(d_h)) V

with ``lambda = sum_i exp(q.P_K,i / sqrt(d_h)) / (sum_i exp(q.P_K,i / sqrt(d_h)) + sum_j exp(q.K_j / sqrt(d_h)))``:
the prefix mixes a learned value into every attention output, with a weight the query decides.
(He et al., 2022, "Towards a Unified View of PEFT", use this form.) Hence a zero prefix is not a
no-op: ``P_K = 0`` still takes weight ``exp(0) = 1`` per virtual token and ``P_V = 0`` pulls the
output towards zero.

Implementation: the prefixes are exactly a key/value cache of ``P`` tokens that were never
there. Per layer, keys and values have the cache's layout ``(batch, kv_heads, P, head_dim)``
(grouped-query attention stores the KV heads, not the query heads); they go into a transformers
``DynamicCache``, and ``P`` ones are prepended to the attention mask. Real tokens then sit at
positions ``P, P+1, ...``. Labels and logits keep length ``T`` (the prefix has no positions in the
output).

Parameters without reparameterisation: ``L * 2 * P * kv_heads * head_dim`` (``embedding`` of shape
``(P, L * 2 * kv_heads * head_dim)``, per row laid out as ``[layer][key|value][head][dim]``).
With ``prefix_projection=True`` (Li & Liang's MLP, trained for stability, then discarded)::

    prefix = Linear(h, 2 L d_kv)(tanh(Linear(d_kv, h)(E)))     E: (P, d_kv),  d_kv = kv_heads * head_dim

Names mirror peft's (``embedding``, ``transform``) so ``state_dict`` copies across;
``tests/test_prefix_tuning.py`` checks that the logits equal peft's.

Several named prefixes can share one frozen model, and one batch can mix them: row ``b`` attends
to the prefix of its own task (``forward(..., prefix=["sentiment", "reverse", ...])``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import AdaptedModel
from .catalog import Perspective
from .targets import check_fits

INIT_WEIGHTS = ("random", "zero")


@dataclass
class PrefixTuningConfig:
    """``num_virtual_tokens``: P. ``prefix_projection``: reparameterise through an MLP of width
    ``encoder_hidden_size``. ``init_weights``: ``"random"`` (``N(0, 1)``, peft's default) or ``"zero"``
    (zero prefix, or zero last MLP layer; NOT an identity, see the module docstring)."""

    num_virtual_tokens: int = 8
    prefix_projection: bool = False
    encoder_hidden_size: int = 128
    init_weights: str = "random"

    def __post_init__(self):
        if isinstance(self.num_virtual_tokens, bool) or not isinstance(self.num_virtual_tokens, int) \
                or self.num_virtual_tokens <= 0:
            raise ConfigError(f"num_virtual_tokens={self.num_virtual_tokens!r} must be a positive integer.",
                              "use e.g. num_virtual_tokens=8 (Li & Liang use 10 to 200).")
        if self.prefix_projection and (not isinstance(self.encoder_hidden_size, int) or self.encoder_hidden_size <= 0):
            raise ConfigError(f"encoder_hidden_size={self.encoder_hidden_size!r} must be a positive integer.",
                              "use e.g. encoder_hidden_size=128 with prefix_projection=True.")
        if self.init_weights not in INIT_WEIGHTS:
            raise ConfigError(f"unknown init_weights {self.init_weights!r}.", f"use one of {', '.join(INIT_WEIGHTS)}.")


@dataclass(frozen=True)
class KVLayout:
    """What the prefix must match in the model: layers, KV heads and head size."""

    num_layers: int
    kv_heads: int
    head_dim: int

    @property
    def token_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config) -> "KVLayout":
        get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)
        layers, heads = get("num_hidden_layers", "n_layer"), get("num_attention_heads", "n_head")
        hidden = get("hidden_size", "n_embd")
        if None in (layers, heads, hidden):
            raise ConfigError(f"cannot read layers/heads/hidden size from a {type(config).__name__}.",
                              "prefix tuning needs a decoder-only transformers model (Llama, GPT-2, Qwen2, ...).")
        kv_heads = get("num_key_value_heads") or heads
        head_dim = get("head_dim") or hidden // heads
        return cls(layers, kv_heads, head_dim)


def prefix_tuning_cost(layout: KVLayout, config: PrefixTuningConfig) -> int:
    """Trainable parameters: ``L * 2 * P * kv_heads * head_dim`` without the MLP; with it, the
    MLP's ``P d_kv + (d_kv h + h) + (h 2 L d_kv + 2 L d_kv)``."""
    L, P, dkv = layout.num_layers, config.num_virtual_tokens, layout.token_dim
    if not config.prefix_projection:
        return L * 2 * P * dkv
    h = config.encoder_hidden_size
    return P * dkv + dkv * h + h + h * 2 * L * dkv + 2 * L * dkv


class PrefixEncoder(nn.Module):
    """One task's prefix: ``forward()`` returns keys and values, shape ``(L, 2, kv_heads, P, head_dim)``."""

    def __init__(self, layout: KVLayout, config: PrefixTuningConfig):
        super().__init__()
        self.layout, self.config = layout, config
        P, L, dkv = config.num_virtual_tokens, layout.num_layers, layout.token_dim
        if config.prefix_projection:
            self.embedding = nn.Embedding(P, dkv)
            self.transform = nn.Sequential(nn.Linear(dkv, config.encoder_hidden_size), nn.Tanh(),
                                           nn.Linear(config.encoder_hidden_size, L * 2 * dkv))
            if config.init_weights == "zero":
                nn.init.zeros_(self.transform[-1].weight)
                nn.init.zeros_(self.transform[-1].bias)
        else:
            self.embedding = nn.Embedding(P, L * 2 * dkv)
            if config.init_weights == "zero":
                nn.init.zeros_(self.embedding.weight)

    @property
    def num_virtual_tokens(self) -> int:
        return self.config.num_virtual_tokens

    def flat(self) -> torch.Tensor:
        """The prefix as one table, ``(P, L * 2 * kv_heads * head_dim)`` (peft's layout)."""
        x = self.embedding.weight
        return self.transform(x) if self.config.prefix_projection else x

    def forward(self) -> torch.Tensor:
        lay = self.layout
        kv = self.flat().view(self.num_virtual_tokens, lay.num_layers, 2, lay.kv_heads, lay.head_dim)
        return kv.permute(1, 2, 3, 0, 4)  # (L, 2, kv_heads, P, head_dim)


def attention_with_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix_k: torch.Tensor,
                          prefix_v: torch.Tensor) -> dict[str, torch.Tensor]:
    """One head's attention with a prefix, computed both ways (the formula of the module docstring).

    ``q``: (T, d_h) queries; ``k``, ``v``: (T, d_h) the real tokens' keys and values (causal);
    ``prefix_k``, ``prefix_v``: (P, d_h). Returns ``output`` = softmax(q [P_K; K]^T / sqrt(d_h)) [P_V; V],
    ``mixture`` = lambda * prefix_part + (1 - lambda) * plain_part, ``lam`` (T,): the weight on the prefix,
    ``plain`` (T, d_h): the attention without prefix, and ``weights`` (T, P + T).
    """
    T, P, scale = q.shape[0], prefix_k.shape[0], q.shape[-1] ** -0.5
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores_real = (q @ k.T * scale).masked_fill(~causal, float("-inf"))     # (T, T)
    scores_prefix = q @ prefix_k.T * scale                                   # (T, P): every query sees all of them
    weights = torch.softmax(torch.cat([scores_prefix, scores_real], dim=-1), dim=-1)
    output = weights @ torch.cat([prefix_v, v], dim=0)
    lam = torch.exp(torch.logsumexp(scores_prefix, -1) - torch.logsumexp(torch.cat([scores_prefix, scores_real], -1), -1))
    plain = torch.softmax(scores_real, dim=-1) @ v
    mixture = lam[:, None] * (torch.softmax(scores_prefix, dim=-1) @ prefix_v) + (1 - lam[:, None]) * plain
    return {"output": output, "mixture": mixture, "lam": lam, "plain": plain, "weights": weights}


def cache_argument(model) -> str:
    """The keyword a model's ``forward`` takes the KV cache under: ``cache`` (transformers >= 5.24)
    or ``past_key_values`` (earlier versions)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefix_cache(key_values: torch.Tensor, model_config):
    """Put per-row prefixes ``(L, 2, B, kv_heads, P, head_dim)`` into a transformers ``DynamicCache``.

    Layer ``l`` gets keys ``key_values[l, 0]`` and values ``key_values[l, 1]``, each
    ``(B, kv_heads, P, head_dim)``.
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=model_config)
    for layer in range(key_values.shape[0]):
        cache.update(key_values[layer, 0], key_values[layer, 1], layer)
    return cache


class PrefixTuningModel(AdaptedModel):
    """A frozen causal LM with one or more named prefixes (``prefixes``: an ``nn.ModuleDict``)."""

    def __init__(self, base_model, config: PrefixTuningConfig, name: str = "default"):
        super().__init__()
        self.base_model = base_model
        self.layout = KVLayout.from_config(base_model.config)
        self.prefixes = nn.ModuleDict()
        self.active_prefix = name
        self.add_prefix(name, config)

    # -- several tasks on one model --------------------------------------------------------------
    def add_prefix(self, name: str, config: PrefixTuningConfig | None = None) -> PrefixEncoder:
        """Add a new prefix (trainable) for another task; the base model stays shared and frozen."""
        config = config or PrefixTuningConfig()
        if not isinstance(config, PrefixTuningConfig):
            raise ConfigError(f"add_prefix expects a PrefixTuningConfig, got {type(config).__name__}.",
                              "build one: PrefixTuningConfig(num_virtual_tokens=8).")
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"prefix name {name!r} must be a non-empty string without dots.", "use e.g. 'sentiment'.")
        if name in self.prefixes:
            raise ConfigError(f"a prefix named {name!r} exists already.", "pick another name or use model.prefixes[name].")
        check_fits(self.base_model, config.num_virtual_tokens, method="prefix tuning")
        device = next(self.base_model.parameters()).device
        self.prefixes[name] = PrefixEncoder(self.layout, config).to(device)
        return self.prefixes[name]

    def set_prefix(self, name: str) -> None:
        """Make ``name`` the prefix used when ``forward`` gets no ``prefix``."""
        self._check_names([name])
        self.active_prefix = name

    def _check_names(self, names) -> None:
        unknown = sorted({n for n in names if n not in self.prefixes})
        if unknown:
            raise ConfigError(f"unknown prefix name(s) {unknown}.", f"use one of {sorted(self.prefixes)} or add_prefix(name).")

    @property
    def prefix_encoder(self) -> PrefixEncoder:
        """The active prefix."""
        return self.prefixes[self.active_prefix]

    def key_values(self, batch_size: int, prefix=None) -> torch.Tensor:
        """Prefix keys and values for a batch: ``(L, 2, B, kv_heads, P, head_dim)``.

        ``prefix``: ``None`` (the active one), a name, or one name per row (a mixed batch; all
        named prefixes must have the same ``P``).
        """
        names = [prefix or self.active_prefix] * batch_size if prefix is None or isinstance(prefix, str) else list(prefix)
        if len(names) != batch_size:
            raise ConfigError(f"got {len(names)} prefix names for a batch of {batch_size} rows.",
                              "pass one name per row, or a single name for the whole batch.")
        self._check_names(names)
        distinct = list(dict.fromkeys(names))
        lengths = {self.prefixes[n].num_virtual_tokens for n in distinct}
        if len(lengths) > 1:
            raise ConfigError(f"a mixed batch needs prefixes of one length, got {sorted(lengths)} virtual tokens.",
                              "give every task the same num_virtual_tokens, or run the tasks in separate batches.")
        table = torch.stack([self.prefixes[n]() for n in distinct])        # (n_tasks, L, 2, H, P, hd)
        rows = torch.tensor([distinct.index(n) for n in names], device=table.device)
        dtype = next(self.base_model.parameters()).dtype
        return table[rows].permute(1, 2, 0, 3, 4, 5).to(dtype)             # (L, 2, B, H, P, hd)

    def prepare_inputs(self, input_ids, attention_mask=None, prefix=None):
        """``(past_key_values, attention_mask)``: the prefix cache and the mask with P ones in front."""
        B = input_ids.shape[0]
        kv = self.key_values(B, prefix)
        P = kv.shape[4]
        check_fits(self.base_model, P, input_ids.shape[1], method="prefix tuning")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ones = torch.ones(B, P, dtype=attention_mask.dtype, device=attention_mask.device)
        return prefix_cache(kv, self.base_model.config), torch.cat([ones, attention_mask], dim=1)

    def forward(self, input_ids, attention_mask=None, labels=None, prefix=None, **kwargs):
        """Logits ``(B, T, vocab)`` of the frozen model with the prefix(es) in every layer's attention."""
        if kwargs.get("past_key_values") is not None or kwargs.get("cache") is not None:
            raise ConfigError("prefix tuning supplies past_key_values itself.",
                              "call forward without past_key_values; use generate() to decode.")
        cache, mask = self.prepare_inputs(input_ids, attention_mask, prefix)
        kwargs[cache_argument(self.base_model)] = cache
        return self.base_model(input_ids=input_ids, attention_mask=mask, labels=labels, **kwargs)


    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 20, eos_token_id=None,
                 prefix=None) -> torch.Tensor:
        """Greedy decoding behind the prefix, reusing the cache; returns ``input_ids`` plus new tokens.

        For batches of different lengths pad on the left. Rows that produced ``eos_token_id``
        continue with that token.
        """
        if eos_token_id is None:
            eos_token_id = getattr(getattr(self.base_model, "generation_config", None), "eos_token_id", None)
        eos = set(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]) - {None}
        cache, mask = self.prepare_inputs(input_ids, attention_mask, prefix)
        key = cache_argument(self.base_model)
        out, step_input = input_ids, input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            res = self.base_model(input_ids=step_input, attention_mask=mask, use_cache=True, **{key: cache})
            cache = res.cache if getattr(res, "cache", None) is not None else res.past_key_values
            nxt = res.logits[:, -1].argmax(-1)
            if eos:
                fill = next(iter(eos))
                nxt = torch.where(done, torch.full_like(nxt, fill), nxt)
                done |= torch.isin(nxt, torch.tensor(sorted(eos), device=nxt.device))
            out = torch.cat([out, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_input = nxt[:, None]
            if eos and bool(done.all()):
                break
        return out


def apply_prefix_tuning(model, config: PrefixTuningConfig | None = None, name: str = "default") -> PrefixTuningModel:
    """Freeze ``model`` and give it a trainable prefix named ``name``; returns the wrapper."""
    config = config or PrefixTuningConfig()
    if not isinstance(config, PrefixTuningConfig):
        raise ConfigError(f"apply_prefix_tuning expects a PrefixTuningConfig, got {type(config).__name__}.",
                          "build one: PrefixTuningConfig(num_virtual_tokens=8, prefix_projection=True).")
    if not hasattr(model, "config"):
        raise ConfigError(f"{type(model).__name__} has no transformers config to read layers and heads from.",
                          "pass a transformers causal LM (e.g. from course_lib.models.load_model()).")
    for param in model.parameters():
        param.requires_grad_(False)
    return PrefixTuningModel(model, config, name)


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = PrefixTuningConfig
apply = apply_prefix_tuning


def expected_parameters(model, config: PrefixTuningConfig) -> int:
    """:func:`prefix_tuning_cost` for the model's key/value layout."""
    return prefix_tuning_cost(KVLayout.from_config(model.config), config)


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("prefix tuning", "input", "additive", "Li & Liang 2021",
                "learned keys and values of virtual tokens in every layer (soft prompts)"),
)
