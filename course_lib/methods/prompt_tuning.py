"""Prompt tuning (soft prompts) and P-tuning's prompt encoder, from scratch.

Prompt tuning (Lester, Al-Rfou & Constant, 2021, "The Power of Scale for Parameter-Efficient
Prompt Tuning") freezes the whole language model and learns only ``p`` continuous vectors
``P = [p_1, ..., p_p]`` (shape ``(p, d)``) that are prepended to the embedded input::

    x = [e(t_1), ..., e(t_T)]                (B, T, d)    the frozen word embeddings
    h = [P ; x]                              (B, p + T, d)
    mask' = [1 ... 1 ; mask]                 (B, p + T)    the virtual tokens are always visible
    labels' = [-100 ... -100 ; labels]       (B, p + T)    virtual positions never carry a loss

Cost: ``p * d`` trainable parameters per task (20 tokens x 4096 dims = 81,920 for a 7B model).

Initialisation (Lester et al. compare them; they matter most for small models):

* ``"random"``: ``N(0, 1)`` like ``nn.Embedding`` (and peft's ``RANDOM``). Far larger than the
  model's word embeddings, which is part of why it trains worse;
* ``"vocab"``: embeddings of ``p`` token ids sampled uniformly from the vocabulary (peft's
  ``SAMPLE_VOCAB``);
* ``"text"``: the embeddings of a text tokenised with the model's tokenizer (label words or a task
  description), truncated or repeated to ``p`` tokens (peft's ``TEXT``).

These follow peft, not the paper in two details: Lester et al. (2021, section 2.1 "Design Decisions", and
the initialisation ablation) draw random prompts from uniform[-0.5, 0.5], and for class-label init fill
the slots beyond the labels with sampled common vocabulary rather than repeating the labels.

P-tuning (Liu et al., 2021, "GPT Understands, Too") places its virtual tokens anywhere in a template
(around and between the input and the answer) and produces them with a bidirectional LSTM + MLP
prompt encoder, keeping a few task-related *anchor* tokens as real words; that method, with its
template, is :mod:`course_lib.methods.p_tuning`. Here (like peft's ``PromptEncoderConfig``) the
encoder is kept but the tokens go in front of the input; the encoder couples the tokens and
makes training more stable:
``encoder="mlp"``: ``Linear(d, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, d)``;
``encoder="lstm"``: a bidirectional LSTM (``h`` per direction) followed by
``Linear(2h, 2h) -> ReLU -> Linear(2h, d)``. After training only the encoder's output is needed.

Multitask prompt tuning (Wang et al., 2023, "Multitask Prompt Tuning Enables Parameter-Efficient
Transfer Learning", eq. 1) shares one prompt ``P* (p, d)`` between tasks and gives task ``k`` a rank-``r``
multiplier: ``P_k = P* ∘ (U_k V_k)`` with ``U_k (p, r)``, ``V_k (r, d)`` (rank one: ``u_k v_k^T``). Trained
on ``n`` tasks it holds ``p d + n (p + d) r`` numbers (:func:`multitask_prompt_cost`); a new task starts from
``P*`` and learns only its ``(p + d) r``. The course uses peft's ``MultitaskPromptTuningConfig`` (its
``prefix_task_cols`` are the ``U_k``, ``prefix_task_rows`` the ``V_k``), which needs a ``task_ids`` tensor
``(batch,)`` on every call: :class:`course_lib.tasks.TaskMixture` supplies it while training,
:class:`TaskIdModel` binds one task's id for evaluation.

The module and parameter names mirror peft's (``prompt_encoder.embedding``, ``mlp_head``,
``lstm_head``), so ``state_dict`` copies across in both directions; ``tests/test_prompt_tuning.py``
checks that the logits equal peft's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .base import AdaptedModel, freeze_for_input_method
from .catalog import Perspective
from .targets import check_fits

INITS = ("random", "vocab", "text")
ENCODERS = ("none", "mlp", "lstm")


@dataclass
class PromptTuningConfig:
    """Settings of prompt tuning / P-tuning.

    ``num_virtual_tokens``: p, the soft prompt's length. ``init``: ``"random"``, ``"vocab"`` or
    ``"text"`` (then ``init_text`` is tokenised with ``tokenizer``, or the one passed to
    :func:`apply_prompt_tuning`; peft's config names it by ``tokenizer_name_or_path``). ``encoder``: ``"none"`` (prompt tuning), ``"mlp"`` or ``"lstm"``
    (P-tuning's prompt encoder, hidden size ``encoder_hidden_size``; the LSTM has
    ``encoder_num_layers`` layers and ``encoder_dropout``).
    """

    num_virtual_tokens: int = 8
    init: str = "random"
    init_text: str | None = None
    encoder: str = "none"
    encoder_hidden_size: int = 128
    encoder_num_layers: int = 2
    encoder_dropout: float = 0.0
    tokenizer: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.num_virtual_tokens, bool) or not isinstance(self.num_virtual_tokens, int) \
                or self.num_virtual_tokens <= 0:
            raise ConfigError(f"num_virtual_tokens={self.num_virtual_tokens!r} must be a positive integer.",
                              "use e.g. num_virtual_tokens=8 (Lester et al. use 5 to 100).")
        if self.init not in INITS:
            raise ConfigError(f"unknown init {self.init!r}.", f"use one of {', '.join(INITS)}.")
        if self.init == "text" and not self.init_text:
            raise ConfigError("init='text' needs the text to start from, but init_text is empty.",
                              "pass init_text='plus minus' (label words) or a task description, "
                              "and the model's tokenizer to apply_prompt_tuning.")
        if self.encoder is None:
            self.encoder = "none"
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}.",
                              "use 'none' (prompt tuning), 'mlp' or 'lstm' (P-tuning's prompt encoder).")
        if self.encoder != "none" and self.encoder_hidden_size <= 0:
            raise ConfigError(f"encoder_hidden_size={self.encoder_hidden_size} must be positive.",
                              "use e.g. encoder_hidden_size=128.")
        if self.encoder == "lstm" and self.encoder_num_layers <= 0:
            raise ConfigError(f"encoder_num_layers={self.encoder_num_layers} must be positive.",
                              "use encoder_num_layers=2 (P-tuning's default).")
        if not 0.0 <= self.encoder_dropout < 1.0:
            raise ConfigError(f"encoder_dropout={self.encoder_dropout} must be in [0, 1).", "use 0.0.")


def prompt_tuning_cost(num_virtual_tokens: int, hidden_size: int) -> int:
    """Trainable parameters of plain prompt tuning: ``p * d``."""
    return num_virtual_tokens * hidden_size


def init_token_ids(config: PromptTuningConfig, vocab_size: int, tokenizer=None) -> torch.Tensor | None:
    """The token ids whose embeddings start the soft prompt (``None`` for ``"random"``).

    ``"vocab"`` draws ``p`` ids uniformly with the global torch RNG; ``"text"`` tokenises
    ``init_text`` exactly as the tokenizer does by default (special tokens included) and truncates or
    repeats the ids to ``p``.
    """
    p = config.num_virtual_tokens
    if config.init == "vocab":
        return torch.randint(0, vocab_size, (p,), dtype=torch.long)
    if config.init == "text":
        if tokenizer is None:
            raise ConfigError("init='text' needs the model's tokenizer to turn init_text into token ids.",
                              "call apply_prompt_tuning(model, config, tokenizer=tokenizer).")
        ids = list(tokenizer(config.init_text)["input_ids"])
        if not ids:
            raise ConfigError(f"init_text={config.init_text!r} tokenises to nothing.", "use a non-empty text.")
        ids = (ids * math.ceil(p / len(ids)))[:p]
        return torch.tensor(ids, dtype=torch.long)
    return None


class SoftPrompt(nn.Module):
    """The trainable virtual tokens: ``forward()`` returns the soft prompt, shape ``(p, d)``.

    ``embedding``: ``nn.Embedding(p, d)``; with P-tuning its rows pass through ``mlp_head`` (and
    ``lstm_head`` first, for the LSTM encoder).
    """

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Embedding, tokenizer=None):
        super().__init__()
        p, d = config.num_virtual_tokens, word_embeddings.embedding_dim
        self.config = config
        self.embedding = nn.Embedding(p, d)  # N(0, 1): the "random" initialisation
        ids = init_token_ids(config, word_embeddings.num_embeddings, tokenizer)
        if ids is not None:
            with torch.no_grad():
                start = word_embeddings(ids.to(word_embeddings.weight.device)).detach().float()
            self.embedding.weight = nn.Parameter(start.clone())
        h = config.encoder_hidden_size
        if config.encoder == "lstm":
            self.lstm_head = nn.LSTM(input_size=d, hidden_size=h, num_layers=config.encoder_num_layers,
                                     dropout=config.encoder_dropout, bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.ReLU(), nn.Linear(2 * h, d))
        elif config.encoder == "mlp":
            self.mlp_head = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self) -> torch.Tensor:
        x = self.embedding.weight  # (p, d)
        if self.config.encoder == "lstm":
            x = self.mlp_head(self.lstm_head(x.unsqueeze(0))[0][0])
        elif self.config.encoder == "mlp":
            x = self.mlp_head(x)
        return x


class PromptTuningModel(AdaptedModel):
    """A frozen causal LM behind a soft prompt.

    ``forward(input_ids, attention_mask, labels)`` returns the base model's output on
    ``[soft prompt ; embedded input]``: logits of shape ``(B, p + T, vocab)`` (the first ``p``
    belong to the virtual tokens, as in peft) and the loss over the real tokens' labels only.
    """

    def __init__(self, base_model, config: PromptTuningConfig, tokenizer=None):
        super().__init__()
        self.base_model = base_model
        self.config = config
        check_fits(base_model, config.num_virtual_tokens, method="prompt tuning")
        self.prompt_encoder = SoftPrompt(config, base_model.get_input_embeddings(), tokenizer).to(
            base_model.get_input_embeddings().weight.device)

    @property
    def num_virtual_tokens(self) -> int:
        return self.config.num_virtual_tokens

    def prepare_inputs(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None):
        """``(inputs_embeds, attention_mask, labels)`` with the soft prompt prepended.

        Shapes: ``(B, p + T, d)``, ``(B, p + T)``, ``(B, p + T)`` (labels ``None`` stays ``None``).
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise ConfigError("the prompt-tuning model got neither input_ids nor inputs_embeds.",
                                  "call model(input_ids=..., attention_mask=...).")
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)
        B, p = inputs_embeds.shape[0], self.num_virtual_tokens
        check_fits(self.base_model, p, inputs_embeds.shape[1], method="prompt tuning")
        prompt = self.prompt_encoder().to(inputs_embeds.dtype)
        inputs_embeds = torch.cat([prompt.unsqueeze(0).expand(B, -1, -1), inputs_embeds], dim=1)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        else:
            ones = torch.ones(B, p, dtype=attention_mask.dtype, device=attention_mask.device)
            attention_mask = torch.cat([ones, attention_mask], dim=1)
        if labels is not None:
            ignore = torch.full((B, p), -100, dtype=labels.dtype, device=labels.device)
            labels = torch.cat([ignore, labels], dim=1)
        return inputs_embeds, attention_mask, labels

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None, **kwargs):
        if kwargs.pop("position_ids", None) is not None:
            raise ConfigError("position_ids cannot be combined with a soft prompt (the prompt shifts every position).",
                              "leave position_ids out; the model numbers the p + T positions itself.")
        embeds, mask, labels = self.prepare_inputs(input_ids, attention_mask, labels, inputs_embeds)
        return self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        """``base_model.generate`` behind the soft prompt; returns ``input_ids`` followed by the new tokens."""
        embeds, mask, _ = self.prepare_inputs(input_ids, attention_mask)
        new = self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)



def apply_prompt_tuning(model, config: PromptTuningConfig | None = None, tokenizer=None) -> PromptTuningModel:
    """Freeze ``model`` and wrap it behind a new soft prompt; only the prompt (and encoder) train."""
    config = config or PromptTuningConfig()
    freeze_for_input_method(model, config, PromptTuningConfig, apply_name="apply_prompt_tuning",
                            example="PromptTuningConfig(num_virtual_tokens=8, init='text', init_text='plus minus')",
                            purpose="put a soft prompt in front of")
    return PromptTuningModel(model, config, tokenizer if tokenizer is not None else config.tokenizer)


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = PromptTuningConfig
apply = apply_prompt_tuning


def expected_parameters(model, config: PromptTuningConfig) -> int:
    """``p d`` for the soft prompt, plus P-tuning's encoder: an MLP ``d -> h -> h -> d``, or a
    bidirectional LSTM (``encoder_num_layers`` layers of width ``h``) and an MLP ``2h -> 2h -> d``."""
    d, h = model.get_input_embeddings().embedding_dim, config.encoder_hidden_size
    total = prompt_tuning_cost(config.num_virtual_tokens, d)
    if config.encoder == "mlp":
        total += (d * h + h) + (h * h + h) + (h * d + d)
    elif config.encoder == "lstm":
        for layer in range(config.encoder_num_layers):
            inp = d if layer == 0 else 2 * h
            total += 2 * 4 * h * (inp + h + 2)               # two directions: W_ih, W_hh, b_ih, b_hh
        total += (2 * h * 2 * h + 2 * h) + (2 * h * d + d)
    return total


def multitask_prompt_cost(num_virtual_tokens: int, hidden_size: int, num_tasks: int, rank: int = 1) -> dict[str, int]:
    """Multitask prompt tuning's counts: the shared prompt ``p d``, each task's factors ``(p + d) r``, and
    the total ``p d + n (p + d) r`` for ``n`` tasks."""
    for name, value in (("num_virtual_tokens", num_virtual_tokens), ("hidden_size", hidden_size),
                        ("num_tasks", num_tasks), ("rank", rank)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer.",
                              "e.g. multitask_prompt_cost(8, 64, num_tasks=2, rank=1).")
    shared = prompt_tuning_cost(num_virtual_tokens, hidden_size)
    per_task = (num_virtual_tokens + hidden_size) * rank
    return {"shared": shared, "per_task": per_task, "total": shared + num_tasks * per_task}


def multitask_prompt_tuning(model: nn.Module, config: PromptTuningConfig, num_tasks: int, rank: int = 1,
                            tokenizer=None) -> nn.Module:
    """peft's multitask prompt tuning on ``model`` (changed in place: pass a copy to keep it): a shared prompt of
    ``config.num_virtual_tokens`` vectors and rank-``rank`` factors for ``num_tasks`` tasks.

    The shared prompt starts like the course's soft prompt (``config.init``: ``"vocab"`` or ``"text"`` copy
    those tokens' embeddings, ``"random"`` keeps peft's); peft starts the factors near one
    (``N(1, 0.02)``), so at step 0 every task sees about the shared prompt. Call the result with
    ``task_ids`` of shape ``(batch,)``.
    """
    from ..errors import require

    peft = require("peft", "multitask prompt tuning")
    if not isinstance(config, PromptTuningConfig) or config.encoder != "none":
        raise ConfigError("multitask prompt tuning takes a PromptTuningConfig without an encoder.",
                          "pass e.g. PromptTuningConfig(8, init='vocab').")
    multitask_prompt_cost(config.num_virtual_tokens, model.get_input_embeddings().embedding_dim, num_tasks, rank)
    mpt = peft.get_peft_model(model, peft.MultitaskPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens, num_tasks=num_tasks, num_ranks=rank))
    ids = init_token_ids(config, model.get_input_embeddings().num_embeddings, tokenizer)
    if ids is not None:
        with torch.no_grad():
            mpt.prompt_encoder["default"].embedding.weight.copy_(model.get_input_embeddings().weight[ids])
    return mpt


class TaskIdModel(nn.Module):
    """``model`` called with ``task_ids = task_id`` for every row, so code that calls a model with
    ``input_ids`` and ``attention_mask`` alone (``training.accuracy``) scores one task of a multitask
    prompt. Shares ``model``'s parameters (no copy)."""

    def __init__(self, model: nn.Module, task_id: int):
        super().__init__()
        if not isinstance(task_id, int) or task_id < 0:
            raise ConfigError(f"task_id={task_id!r} must be an integer >= 0.", "pass the row's task index, e.g. 0.")
        self.model, self.task_id = model, task_id

    def forward(self, input_ids: torch.Tensor, **kwargs):
        task_ids = torch.full((input_ids.shape[0],), self.task_id, dtype=torch.long, device=input_ids.device)
        return self.model(input_ids=input_ids, task_ids=task_ids, **kwargs)



# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("prompt tuning", "input", "additive", "Lester et al. 2021",
                "learned input embeddings of virtual tokens (soft prompts)"),
    Perspective("P-tuning (tokens in front)", "input", "additive", "Liu et al. 2021",
                "soft prompts produced by a prompt encoder while training, all in front of the input (peft's placement)"),
    Perspective("multitask prompt tuning", "input", "additive", "Wang et al. 2023",
                "one shared soft prompt, rescaled per task by a rank-one factor (peft's MultitaskPromptTuning)"),
)
