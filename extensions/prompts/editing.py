"""A request's prompts edited over the steps (`[from:to:when]`, `[a|b]`; schedule.py reads them): the embeddings
of each step, as models/step_conditioning.py has the pipeline's caller apply them. Each distinct text is encoded
once, for every pass of the call; each step's prompt and negative prompt are padded to as many chunks."""

from __future__ import annotations

import torch

from extensions.prompts.encoder import PromptEncoder, Tokenized, pad_chunks
from extensions.prompts.schedule import schedule


class EditedPrompts:
    """A StepConditioning: the prompt's and the negative prompt's schedules over one pass."""

    def __init__(self, encoder: PromptEncoder, texts: tuple[str, str], steps: int, clip_skip: int, batch: int,
                 hires_steps: int | None = None, encoded: dict | None = None):
        """`texts`: the prompt and the negative prompt (LoRA tags taken out); `steps`: the first pass's;
        `hires_steps`: this pass is hires fix's second, of that many steps; `encoded`: the texts encoded so far."""
        self.encoder, self.texts, self.steps, self.clip_skip, self.batch = encoder, texts, steps, clip_skip, batch
        self.schedules = [schedule(text, steps, hires_steps) for text in texts]
        self.encoded: dict[str, tuple[Tokenized, torch.Tensor]] = {} if encoded is None else encoded
        self._encode({text for entries in self.schedules for _, text in entries} - self.encoded.keys())
        self._pairs: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _encode(self, texts: set[str]) -> None:
        texts = sorted(texts)
        tokenized = [self.encoder.tokenize(text) for text in texts]
        for text, tokens, tensor in zip(texts, tokenized, self.encoder.encode_all(tokenized, self.clip_skip)):
            self.encoded[text] = tokens, tensor

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As A1111's reconstruct_cond_batch: a schedule's first text whose last step is `step` or later."""
        prompt, negative = (next((text for end, text in entries if step <= end), entries[-1][1])
                            for entries in self.schedules)
        if (prompt, negative) not in self._pairs:
            cond, uncond = self.encoded[prompt][1], self.encoded[negative][1]
            if cond.shape[1] != uncond.shape[1]:
                empty = self.encoder.encode(self.encoder.tokenize(""), self.clip_skip)
                cond, uncond = pad_chunks(cond, uncond, empty)
            self._pairs[prompt, negative] = cond.expand(self.batch, -1, -1), uncond.expand(self.batch, -1, -1)
        return self._pairs[prompt, negative]

    def for_second_pass(self, steps: int) -> EditedPrompts:
        return EditedPrompts(self.encoder, self.texts, self.steps, self.clip_skip, self.batch, steps, self.encoded)

    def embeddings(self) -> dict:
        """The textual-inversion embeddings its texts use, by name."""
        return {name: embedding for tokens, _ in self.encoded.values() for name, embedding in tokens.embeddings.items()}
