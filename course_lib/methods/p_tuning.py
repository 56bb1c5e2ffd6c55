"""P-tuning v1: virtual tokens placed anywhere in a template, produced by a BiLSTM + MLP prompt encoder.

Liu et al., 2021, "GPT Understands, Too" (arXiv:2103.10385), section 2. A *template* mixes the input
``x``, pseudo tokens ``[P_i]`` and real *anchor* words (task words kept as text, e.g. "verdict:" or "?")::

    T = {[P_0:i], x, [P_i+1:m], y}

Each pseudo token is replaced by a trainable vector, not by a row of the embedding table::

    h_0..h_m = MLP(BiLSTM(e_0..e_m))     e: the m learned slot embeddings            (m, d)
    BiLSTM: hidden size h per direction   -> (m, 2h)
    MLP:    Linear(2h, 2h) -> ReLU -> Linear(2h, d)                                  (m, d)

and the frozen language model reads ``[e(x_1) ... h_0 ... e(x_t) ... h_m ...]`` as ``inputs_embeds``
``(B, T, d)``: the i-th slot of every row (in reading order) gets ``h_i``, every other position keeps the
frozen word embedding of its token. Only the slot embeddings, the LSTM and the MLP train; after training the
``m`` output vectors are all that is needed. The encoder is the one of
:class:`course_lib.methods.prompt_tuning.SoftPrompt` with ``encoder="lstm"`` (peft's ``PromptEncoder`` with
``encoder_reparameterization_type="LSTM"``; ``tests/test_p_tuning.py`` loads its state dict into peft's and
compares). What is new here is the placement: peft, and the course's prompt tuning, put every virtual
token in front of the input.

How the slots reach the model: :func:`apply` copies the tokenizer and adds one special token, the *slot*
(as the paper's code adds ``[PROMPT]``); :meth:`PTuningModel.task` gives a copy of a classification task
whose prompt is the template with ``[P]`` rendered as that token. :func:`course_lib.training.train`,
``accuracy`` and ``label_scores`` then work unchanged with ``(model, model.tokenizer, model.task(task))``:
the input keeps its length ``T`` (the slots are tokens of it), so the logits are ``(B, T, vocab)``, the
labels and attention mask need no change, and the label words are scored right after the prompt as for
every other method.

Trainable parameters (:func:`expected_parameters`): ``m d`` for the slot embeddings plus the encoder,
``sum_l 2 * 4h (in_l + h + 2)`` for the LSTM layers (``in_0 = d``, ``in_l = 2h``) and
``(2h * 2h + 2h) + (2h * d + d)`` for the MLP.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from . import prompt_tuning
from .base import AdaptedModel, freeze_for_input_method
from .catalog import Perspective
from .prompt_tuning import PromptTuningConfig, SoftPrompt
from .targets import check_fits

SLOT = "[P]"                       # how a template marks a virtual token
SLOT_TOKEN = "<p-tuning-slot>"     # the special token that stands for it in the tokenised input


@dataclass
class PTuningConfig:
    """Settings of P-tuning v1.

    ``template``: the prompt with ``{text}`` where the input goes and ``[P]`` for every virtual token, e.g.
    ``"[P][P] review: {text} [P] verdict:"`` ("review:" and "verdict:" are anchors: real words kept). The label
    word follows the template after a space, as with every task of the course. ``encoder_hidden_size`` (h per
    LSTM direction), ``encoder_num_layers``, ``encoder_dropout``, ``init`` and ``init_text`` as in
    :class:`~course_lib.methods.prompt_tuning.PromptTuningConfig` (``init`` starts the slot embeddings).
    """

    template: str = "[P][P] review: {text} [P] verdict:"
    encoder_hidden_size: int = 128
    encoder_num_layers: int = 2
    encoder_dropout: float = 0.0
    init: str = "random"
    init_text: str | None = None
    tokenizer: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.template, str) or "{text}" not in self.template:
            raise ConfigError(f"the template {self.template!r} has no {{text}} slot for the input.",
                              "write where the input goes, e.g. template='[P][P] review: {text} [P] verdict:'.")
        if self.num_virtual_tokens == 0:
            raise ConfigError(f"the template {self.template!r} has no virtual token {SLOT}.",
                              f"put at least one {SLOT} in it, e.g. '{SLOT}{SLOT} ' + template "
                              "(with no virtual token, use the task's own prompt).")
        try:
            self.template.format(text="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"the template {self.template!r} has braces other than {{text}} ({err!r}).",
                              "write literal braces as {{ and }}, and the input as {text}.") from None
        self.encoder_config()   # the encoder's settings are checked where they are defined

    @property
    def num_virtual_tokens(self) -> int:
        """m, the number of ``[P]`` in the template."""
        return self.template.count(SLOT)

    def encoder_config(self) -> PromptTuningConfig:
        """The prompt encoder's settings: m slots, the BiLSTM + MLP encoder."""
        return PromptTuningConfig(self.num_virtual_tokens, init=self.init, init_text=self.init_text, encoder="lstm",
                                  encoder_hidden_size=self.encoder_hidden_size,
                                  encoder_num_layers=self.encoder_num_layers, encoder_dropout=self.encoder_dropout,
                                  tokenizer=self.tokenizer)

    def render(self, slot_token: str = SLOT_TOKEN) -> str:
        """The template with every ``[P]`` written as ``slot_token`` (``{text}`` kept for the input)."""
        return self.template.replace(SLOT, slot_token)


def slot_tokenizer(tokenizer):
    """A copy of ``tokenizer`` with :data:`SLOT_TOKEN` added as a special token, and that token's id.

    The original is left unchanged (other methods keep using it)."""
    if tokenizer is None or not hasattr(tokenizer, "add_special_tokens"):
        raise ConfigError("P-tuning needs the model's tokenizer to mark the virtual tokens in the template.",
                          "call apply(model, config, tokenizer=tokenizer) with a transformers tokenizer.")
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": [SLOT_TOKEN]})
    slot_id = tok.convert_tokens_to_ids(SLOT_TOKEN)
    if tok(SLOT_TOKEN, add_special_tokens=False).input_ids != [slot_id]:
        raise ConfigError(f"the tokenizer does not keep {SLOT_TOKEN!r} as one token.",
                          "use a transformers tokenizer that supports add_special_tokens.")
    return tok, slot_id


class PTuningModel(AdaptedModel):
    """A frozen causal LM whose input has virtual-token slots filled by the prompt encoder.

    ``forward(input_ids, attention_mask, labels)``: ``input_ids`` ``(B, T)`` contain exactly m slot ids per
    row (``model.slot_id``); the base model runs on ``inputs_embeds`` ``(B, T, d)`` with them filled in, and
    returns logits ``(B, T, vocab)``. ``tokenizer``: the tokenizer with the slot token; ``task(task)``: the task
    posed through the template.
    """

    def __init__(self, base_model, config: PTuningConfig, tokenizer):
        super().__init__()
        self.base_model = base_model
        self.config = config
        check_fits(base_model, config.num_virtual_tokens, method="P-tuning")
        embeddings = base_model.get_input_embeddings()
        self.tokenizer, self.slot_id = slot_tokenizer(tokenizer)
        self.prompt_encoder = SoftPrompt(config.encoder_config(), embeddings, tokenizer).to(embeddings.weight.device)

    @property
    def num_virtual_tokens(self) -> int:
        return self.config.num_virtual_tokens

    def task(self, task):
        """A copy of ``task`` (a :class:`course_lib.tasks.ClassificationTask`) whose prompt is the template, its
        ``[P]`` written as the slot token; the splits and label words are shared."""
        if not dataclasses.is_dataclass(task) or not hasattr(task, "template"):
            raise ConfigError(f"P-tuning poses a classification task through its template; got {type(task).__name__}.",
                              "pass a course_lib.tasks.ClassificationTask, e.g. downstream_task(runtime).")
        return dataclasses.replace(task, name=f"{task.name} (P-tuning template)", template=self.config.render())

    def prepare_inputs(self, input_ids, attention_mask=None, labels=None):
        """``(inputs_embeds, attention_mask, labels)``: the slots filled with the encoder's ``h_0..h_m`` in
        reading order, every other position its frozen word embedding. Shapes ``(B, T, d)``, ``(B, T)``,
        ``(B, T)``: the mask and labels are returned as given (a slot is a position of the input)."""
        if input_ids is None:
            raise ConfigError("the P-tuning model needs input_ids (it finds the virtual tokens among them).",
                              "call model(input_ids=..., attention_mask=...), the ids from model.tokenizer.")
        is_slot = input_ids == self.slot_id                           # (B, T)
        counts = is_slot.sum(dim=1)
        m = self.num_virtual_tokens
        if bool((counts != m).any()):
            raise ConfigError(f"every row must hold the template's {m} virtual tokens; found {sorted(set(counts.tolist()))}.",
                              "encode with model.tokenizer and model.task(task), and keep max_length long enough "
                              "that no slot is cut off.")
        check_fits(self.base_model, 0, input_ids.shape[1], method="P-tuning")
        embed = self.base_model.get_input_embeddings()
        words = embed(input_ids.masked_fill(is_slot, 0))              # the slot id may lie outside the table
        prompt = self.prompt_encoder().to(words.dtype)                # (m, d)
        order = is_slot.long().cumsum(dim=1) - 1                      # i for the i-th slot of a row
        filled = prompt[order.clamp(min=0)]                           # (B, T, d)
        inputs_embeds = torch.where(is_slot.unsqueeze(-1), filled, words)
        return inputs_embeds, attention_mask, labels

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        embeds, mask, labels = self.prepare_inputs(input_ids, attention_mask, labels)
        return self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)


def apply_p_tuning(model, config: PTuningConfig | None = None, tokenizer=None) -> PTuningModel:
    """Freeze ``model`` and wrap it for P-tuning v1; only the slot embeddings, the BiLSTM and the MLP train.

    ``tokenizer`` (or ``config.tokenizer``): the model's tokenizer; the wrapper keeps a copy with the slot token.
    Train and score with ``training.train(wrapped, wrapped.tokenizer, wrapped.task(task), ...)``.
    """
    config = config or PTuningConfig()
    freeze_for_input_method(model, config, PTuningConfig, apply_name="apply_p_tuning",
                            example="PTuningConfig(template='[P][P] review: {text} [P] verdict:')",
                            purpose="fill virtual tokens into")
    return PTuningModel(model, config, tokenizer if tokenizer is not None else config.tokenizer)


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = PTuningConfig
apply = apply_p_tuning


def expected_parameters(model, config: PTuningConfig) -> int:
    """``m d`` for the slot embeddings plus the BiLSTM + MLP encoder (the formula of
    :func:`course_lib.methods.prompt_tuning.expected_parameters` with ``encoder="lstm"``)."""
    return prompt_tuning.expected_parameters(model, config.encoder_config())


# where the method of this module sits (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("P-tuning v1 (free template)", "input", "additive", "Liu et al. 2021",
                "virtual tokens anywhere in a template between real anchor words, from a BiLSTM + MLP prompt encoder"),
)
