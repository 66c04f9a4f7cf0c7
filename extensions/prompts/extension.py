"""Prompts as AUTOMATIC1111 reads them, as an extension over the text encoder: emphasis, BREAK, any length in
75-token chunks, textual-inversion embeddings by name, and clip skip (the request's "prompts" part, the gradio_client
keyword `clip_skip`, REST's `override_settings.CLIP_stopping_at_last_layers`, infotext `Clip skip: N`).

A prompt that uses none of it (no brackets or BREAK, at most 75 tokens, no embedding, clip skip 1) reaches the
pipeline as text, as before: it costs nothing. Otherwise a manager hook, after LoRA has set its adapters and taken its
tags out, encodes the prompt and the negative prompt here and hands the pipeline their embeddings, padded to the
same number of chunks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from extensions.base import Extension, Panel, PreparedRequest, Route, Settings, TabContext, a1111_names, rename_words
from extensions.prompts.composable import ComposedUNet
from extensions.prompts.editing import EditedPrompts, composed
from extensions.prompts.embeddings import EmbeddingLibrary
from extensions.prompts.encoder import CHUNK, PromptEncoder, XLPromptEncoder, text_arguments
from extensions.prompts.fields import CLIP_SKIP
from extensions.prompts.schedule import edits, schedule, unreached
from extensions.prompts.syntax import parse
from models.fields import read_entries
from models.limits import MAX_PROMPT_CHARS
from models.request import STEPS
from models.step_conditioning import SCHEDULE
from models.validate import did_you_mean

MAX_CHUNKS = 64  # 4,800 tokens of a prompt (A1111's long prompts are a few chunks)
NEAR_MISS = 0.9  # how alike a prompt word and an embedding's name must be to ask "did you mean"


@dataclass(frozen=True)
class PromptsPart:
    clip_skip: int = 1


class Prompts(Extension):
    name = "prompts"
    fields = (CLIP_SKIP,)
    modes = ("txt2img", "img2img", "inpaint", "outpaint")
    placement = "prompt"

    def __init__(self, folder: str | Path):
        self.library = EmbeddingLibrary(folder)
        self.encoder = None  # the installed manager's PromptEncoder
        self.width = 0  # its text encoder's token width

    @classmethod
    def from_settings(cls, settings: Settings) -> Prompts:
        settings.embeddings_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop embeddings
        return cls(settings.embeddings_dir)

    def install(self, manager) -> None:
        pipe = manager.pipelines["txt2img"]
        encoders = [pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]
        if encoders[1] is not None:
            self.encoder = XLPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2)
        else:
            self.encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        # an embedding fits a model as wide as its text encoders together (SDXL's: clip_l's and clip_g's, A1111's sum)
        self.width = sum(encoder.get_input_embeddings().weight.shape[1] for encoder in encoders if encoder is not None)
        manager.pipeline_hooks.append(self._hook)

    # -- the request ------------------------------------------------------------------------------------------

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> PromptsPart | None:
        composed(fields.get("prompt") or "")  # too many AND parts: an error now, not mid-run
        for name in ("prompt", "negative_prompt"):
            parse(fields.get(name) or "")  # a weight that is not a number is an error now, not mid-run
            # every chunk is a text encoder pass and widens the U-Net's cross-attention at every step: bounded, as
            # the characters are (BREAK makes a chunk of each word; some characters are several tokens)
            chunks = len(self.encoder.tokenize(fields.get(name) or "").chunks) if self.encoder is not None else 0
            if chunks > MAX_CHUNKS:
                raise ValueError(f"{name} makes {chunks} chunks of {CHUNK} tokens (BREAK starts a new one); at most "
                                 f"{MAX_CHUNKS} are encoded")
        clip_skip = CLIP_SKIP.check(fields.get("clip_skip", CLIP_SKIP.default))
        layers = self.encoder.layers if self.encoder is not None else CLIP_SKIP.maximum
        if clip_skip > layers:
            raise ValueError(f"clip_skip must be from 1 to {layers} for this model's {layers}-layer text encoder, "
                             f"got {clip_skip}")
        warnings += self._skipped_in(fields) + self._near_misses(fields) + _unreached_edits(fields)
        return PromptsPart(clip_skip) if clip_skip != 1 else None

    def _skipped_in(self, fields: Mapping) -> list[str]:
        """A warning for each embedding the prompts name that cannot be used (and why)."""
        text = f"{fields.get('prompt') or ''} {fields.get('negative_prompt') or ''}"
        return [f"embedding {name!r} is not used: {why}" for name, why in self.library.skipped(self.width).items()
                if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE)]

    def _near_misses(self, fields: Mapping) -> list[str]:
        """A warning for each word of the prompts that is not an embedding's name but nearly one (a typo: the word
        would reach the text encoder as plain text). Only close matches, so that ordinary words pass unremarked."""
        names = [*self.library.loaded(self.width), *self.library.skipped(self.width)]
        if not names:
            return []
        text = f"{fields.get('prompt') or ''} {fields.get('negative_prompt') or ''}"
        lowered = {name.lower() for name in names}
        words = dict.fromkeys(word for word in re.findall(r"[\w-]{4,}", text) if word.lower() not in lowered)
        hints = ((word, did_you_mean(word, names, cutoff=NEAR_MISS)) for word in words)
        return [f"{word!r} is no embedding's name{hint}" for word, hint in hints if hint]

    def prepare(self, job: PreparedRequest) -> None:
        part = job.request.part(self.name)
        if part is not None:
            job.infotext[CLIP_SKIP.infotext] = part.clip_skip

    def _hook(self, pipe, request, arguments: dict, parameters: dict) -> tuple:
        clip_skip = request.part(self.name, PromptsPart()).clip_skip
        self.encoder.use_embeddings(self.library.loaded(self.width))
        texts = arguments["prompt"][0], arguments["negative_prompt"][0]  # the batch repeats one text
        parts, weights = composed(texts[0])
        if len(parts) > 1:  # AND: the sub-prompts' predictions composed by a U-Net of the request's own
            guided = request.guidance_scale > 1
            pipe = type(pipe)(**{**pipe.components, "unet": ComposedUNet(pipe.unet, weights, guided)})
            pipe.set_progress_bar_config(disable=True)
        if len(parts) > 1 or edits(texts[0]) or edits(texts[1]):  # the embeddings change over the steps or compose
            return pipe, self._edited(parts, texts[1], request.steps, clip_skip, arguments, parameters)
        # no syntax, one chunk, no embedding: the pipeline encodes the text itself, as without this extension
        plain_skip = clip_skip <= self.encoder.minimal_skip
        if plain_skip and all(self.encoder.surely_plain(text) for text in texts):
            return pipe, arguments
        prompt, negative = (self.encoder.tokenize(text) for text in texts)
        if plain_skip and prompt.plain and negative.plain:
            return pipe, arguments
        _write_hashes({**prompt.embeddings, **negative.embeddings}, parameters)
        texts = text_arguments(self.encoder, prompt, negative, clip_skip, len(arguments["prompt"]))
        arguments = {key: value for key, value in arguments.items() if key not in ("prompt", "negative_prompt")}
        return pipe, {**arguments, **texts}

    def _edited(self, parts: list[str], negative: str, steps: int, clip_skip: int, arguments: dict,
                parameters: dict) -> dict:
        """The call's arguments with the first step's embeddings and the schedule of the rest (a schedule of its own
        for every request, which therefore never shares a call with another's)."""
        edited = EditedPrompts(self.encoder, parts, negative, steps, clip_skip, len(arguments["prompt"]))
        _write_hashes(edited.embeddings(), parameters)
        arguments = {key: value for key, value in arguments.items() if key not in ("prompt", "negative_prompt")}
        return {**arguments, **edited.at(0), SCHEDULE: edited}

    def token_count(self, text: str, encoder_text=lambda text: text) -> str:
        """A1111's counter: "N/75", "N/150", ... (the tokens of what reaches the text encoder, and the chunks' room).
        A text over the prompt's length bound is not read (the counter runs on every keystroke, outside the queue)."""
        if self.encoder is None:
            return ""
        if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
            return f"over {MAX_PROMPT_CHARS:,} characters"
        count = max(self.encoder.tokenize(shown).count for shown in _counted_texts(encoder_text(text)))
        return f"{count}/{max(1, -(-count // CHUNK)) * CHUNK}"

    # -- infotext and REST ------------------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        return read_entries(self.fields, entries, warnings)

    def in_rest_words(self, message: str) -> str:
        return rename_words(message, a1111_names(self.fields))

    def rest_routes(self) -> list[Route]:
        def refresh() -> None:
            self.library.refresh()

        return [Route("GET", "/sdapi/v1/embeddings", lambda: self.library.listing(self.width)),
                Route("POST", "/sdapi/v1/refresh-embeddings", refresh)]

    def panel(self, tab: TabContext) -> Panel | None:
        from extensions.prompts.panel import prompts_panel

        return prompts_panel(self, tab)


def _write_hashes(used: dict, parameters: dict) -> None:
    """A1111's infotext entry of the embeddings used: TI hashes: "name: 0123456789ab, ..."."""
    if used:
        parameters["TI hashes"] = ", ".join(f"{name.replace(':', '').replace(',', '')}: {embedding.shorthash}"
                                            for name, embedding in used.items())


def _unreached_edits(fields: Mapping) -> list[str]:
    """A note for each prompt edit outside the job's steps (hires fix's pass counts on after the first)."""
    def whole(value) -> int | None:  # the core's and hires fix's checks name a bad one
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return int(value) if number and float(value).is_integer() else None

    steps = whole(fields.get("steps", 20))
    hires = whole(fields.get("hr_second_pass_steps") or steps) if fields.get("enable_hr") is True else None
    if steps is None:
        return []
    return [f"{name}: {note}" for name in ("prompt", "negative_prompt")
            for note in unreached(fields.get(name) or "", steps, hires)]


def _counted_texts(text: str, most: int = 8) -> list[str]:
    """What A1111's counter counts, the longest counting: each AND part's text at every step of a long schedule
    (the counter knows no steps), the longest few of them (it runs at every keystroke)."""
    try:
        parts = composed(text)[0]
    except ValueError:  # too many parts: the request says so
        parts = [text]
    texts = {step_text for part in parts for _, step_text in schedule(part, STEPS.maximum)} if len(parts) > 1 or \
        edits(text) else {text}
    return sorted(texts, key=len, reverse=True)[:most]
