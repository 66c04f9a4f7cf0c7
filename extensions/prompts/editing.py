"""A request's prompts over the steps: edited (`[from:to:when]`, `[a|b]`; schedule.py reads them) and composed
(`a AND b:0.5`; composable.py combines them), as models/step_conditioning.py has the pipeline's caller apply them.

Each step's texts (each sub-prompt's, and the negative prompt's) are encoded once for every pass of the call and
padded to as many chunks; the sub-prompts travel side by side along the token axis of the prompt's embeddings (the
negative prompt's repeated as often, so that the two still batch), which composable.py takes apart again."""

from __future__ import annotations

import re

import torch

from extensions.prompts.encoder import PromptEncoder, Tokenized, XLPromptEncoder, padded_alike
from extensions.prompts.schedule import schedule

_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")  # A1111's: "text :1.5"
MAX_PARTS = 8  # sub-prompts of one prompt: each is another U-Net pass at every step


def composed(prompt: str) -> tuple[list[str], list[float]]:
    """A1111's composable prompt: the sub-prompts between `AND`s, each with the weight after its last colon (1 when
    none); a prompt without AND is one part of weight 1."""
    texts, weights = [], []
    for part in _AND.split(prompt):
        text, weight = _WEIGHT.fullmatch(part).groups()
        texts.append(text)
        weights.append(float(weight) if weight is not None else 1.0)
    if len(texts) > MAX_PARTS:
        raise ValueError(f"prompt: {len(texts)} parts joined by AND; at most {MAX_PARTS} (each is a U-Net pass at "
                         "every step)")
    return texts, weights


class EditedPrompts:
    """A StepConditioning: the sub-prompts' and the negative prompt's schedules over one pass."""

    def __init__(self, encoder: PromptEncoder | XLPromptEncoder, prompts: list[str], negative: str, steps: int,
                 clip_skip: int, batch: int, hires_steps: int | None = None, encoded: dict | None = None):
        """`prompts`: the sub-prompts (one without AND), LoRA tags taken out; `steps`: the first pass's;
        `hires_steps`: this pass is hires fix's second, of that many steps; `encoded`: the texts encoded so far."""
        self.encoder, self.prompts, self.negative = encoder, prompts, negative
        self.steps, self.clip_skip, self.batch = steps, clip_skip, batch
        self.schedules = [schedule(text, steps, hires_steps) for text in (*prompts, negative)]
        # text -> (its tokens, its conditioning, SDXL's pooled vector or None)
        self.encoded: dict[str, tuple[Tokenized, torch.Tensor, torch.Tensor | None]] = {} if encoded is None else \
            encoded
        self._encode(({text for entries in self.schedules for _, text in entries} | {""}) - self.encoded.keys())
        self._steps: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    def _encode(self, texts: set[str]) -> None:
        if not texts:  # hires fix's pass: often every text is encoded already
            return
        texts = sorted(texts)
        tokenized = [self.encoder.tokenize(text) for text in texts]
        for text, tokens, encoded in zip(texts, tokenized, self.encoder.encode_all(tokenized, self.clip_skip)):
            tensor, pooled = encoded if isinstance(encoded, tuple) else (encoded, None)  # SDXL's: with its pooled
            self.encoded[text] = tokens, tensor, pooled

    def at(self, step: int) -> dict[str, torch.Tensor]:
        """As A1111's reconstruct_cond_batch: each schedule's first text whose last step is `step` or later."""
        texts = tuple(next((text for end, text in entries if step <= end), entries[-1][1])
                      for entries in self.schedules)
        if texts not in self._steps:
            padded = padded_alike([self.encoded[text][1] for text in texts], self.encoded[""][1])
            cond, uncond = torch.cat(padded[:-1], dim=1), torch.cat([padded[-1]] * (len(padded) - 1), dim=1)
            arguments = {"prompt_embeds": cond.expand(self.batch, -1, -1),
                         "negative_prompt_embeds": uncond.expand(self.batch, -1, -1)}
            if self.encoded[texts[0]][2] is not None:  # SDXL: the parts' pooled vectors side by side (composable.py)
                pooled = torch.cat([self.encoded[text][2] for text in texts[:-1]], dim=1)
                negative_pooled = torch.cat([self.encoded[texts[-1]][2]] * (len(texts) - 1), dim=1)
                arguments.update(pooled_prompt_embeds=pooled.expand(self.batch, -1),
                                 negative_pooled_prompt_embeds=negative_pooled.expand(self.batch, -1))
            self._steps[texts] = arguments
        return self._steps[texts]

    def for_second_pass(self, steps: int) -> EditedPrompts:
        return EditedPrompts(self.encoder, self.prompts, self.negative, self.steps, self.clip_skip, self.batch, steps,
                             self.encoded)

    def embeddings(self) -> dict:
        """The textual-inversion embeddings its texts use, by name."""
        return {name: embedding for tokens, *_ in self.encoded.values()
                for name, embedding in tokens.embeddings.items()}
