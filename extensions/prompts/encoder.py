"""Prompts encoded as AUTOMATIC1111 encodes them (modules/sd_hijack_clip.py): any length, in chunks of 75 tokens,
each with its own start and end tokens; emphasis weights; textual-inversion vectors in place of their names; clip
skip. SD 1.x and 2.x have one text encoder (PromptEncoder), SDXL two (XLPromptEncoder).

Chunking follows A1111's rules: a chunk closes at 75 tokens, but when a comma came among its last 20 tokens, what
follows the comma moves on to the next chunk; BREAK closes a chunk early; an embedding that does not fit moves to
the next chunk whole; every chunk is padded after its end token with the tokenizer's padding (the end token again
for OpenAI's CLIP, "!" for OpenCLIP's). Each chunk goes through the text encoder on its own; with clip skip N > 1 the
output is the N-th layer from the end through the final layer norm (SDXL: the N-th, at least the penultimate,
without the norm, as A1111 and Forge take it); each token's output is scaled by its weight and the chunk then
rescaled to its original mean ("Original" emphasis); the chunks are concatenated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from extensions.prompts.embeddings import Embedding
from extensions.prompts.syntax import BREAK, parse

CHUNK = 75  # prompt tokens per chunk, between its start and end tokens
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    embeddings: list[tuple[int, Embedding]] = field(default_factory=list)  # (offset among the prompt tokens, embedding)


@dataclass(frozen=True)
class Tokenized:
    chunks: list[Chunk]
    count: int  # the tokens A1111's counter shows (a full chunk counts 75)
    plain: bool  # one chunk, no weights, no embeddings: what the text encoder would see from the text as it is

    @property
    def embeddings(self) -> dict[str, Embedding]:
        return {embedding.name: embedding for chunk in self.chunks for _, embedding in chunk.embeddings}


class PromptEncoder:
    minimal_skip = 1  # the layer from the end a clip skip of 1 takes (a larger clip skip takes an earlier one)
    final_norm = True  # whether the layer taken goes through the final layer norm
    columns = slice(None)  # an embedding's columns this text encoder takes (SDXL's pairs hold both encoders')

    def __init__(self, tokenizer, text_encoder, embeddings: Mapping[str, Embedding] | None = None):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.start, self.end = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end
        self.comma = tokenizer.get_vocab().get(",</w>")
        self.layers = text_encoder.config.num_hidden_layers
        # transformers 5's CLIPTextModel holds the layers itself; 4.x's wraps them in `text_model`
        self._final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        self._lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        self._embeddings_key: frozenset | None = None
        self.names: list[str] = []
        self.use_embeddings(embeddings or {})

    def surely_plain(self, text: str) -> bool:
        """True when the text has no syntax, fits one chunk (a token has at least one character) and names no
        embedding, found without tokenizing: such a prompt reaches the pipeline as text."""
        lowered = text.lower()
        return (len(text) <= CHUNK and not any(char in text for char in "()[]\\") and "BREAK" not in text
                and not any(name in lowered for name in self.names))

    def use_embeddings(self, embeddings: Mapping[str, Embedding]) -> None:
        """The embeddings a prompt may name: each found as its name's token sequence, the longest first."""
        key = frozenset((name, embedding.hash) for name, embedding in embeddings.items())
        if key == self._embeddings_key:
            return
        self._embeddings_key = key
        self.names = [name.lower() for name in embeddings]
        lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        for name, embedding in embeddings.items():
            ids = self.tokenizer(name, add_special_tokens=False).input_ids
            if ids:
                lookup.setdefault(ids[0], []).append((ids, embedding))
        self._lookup = {first: sorted(found, key=lambda item: -len(item[0])) for first, found in lookup.items()}

    # -- tokens ---------------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> Tokenized:
        pieces = parse(text)
        ids = self.tokenizer([piece for piece, _ in pieces], add_special_tokens=False).input_ids
        chunks: list[Chunk] = []
        chunk, count, last_comma = Chunk(), 0, -1

        def close(last: bool = False) -> None:
            nonlocal chunk, count, last_comma
            count += len(chunk.tokens) if last else CHUNK
            padding = CHUNK - len(chunk.tokens)
            chunk.tokens = [self.start, *chunk.tokens, *[self.end] * padding, self.end]
            chunk.weights = [1.0, *chunk.weights, *[1.0] * padding, 1.0]
            chunks.append(chunk)
            chunk, last_comma = Chunk(), -1

        for piece_ids, piece in zip(ids, pieces):
            if piece == BREAK:
                close()
                continue
            weight, position = piece[1], 0
            while position < len(piece_ids):
                token = piece_ids[position]
                if token == self.comma:
                    last_comma = len(chunk.tokens)
                elif len(chunk.tokens) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                    # what follows the comma moves on to the next chunk (its embeddings' places stay, as in A1111)
                    cut = last_comma + 1
                    moved = chunk.tokens[cut:], chunk.weights[cut:]
                    chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                    close()
                    chunk.tokens, chunk.weights = list(moved[0]), list(moved[1])
                if len(chunk.tokens) == CHUNK:
                    close()
                found = self._embedding_at(piece_ids, position)
                if found is None:
                    chunk.tokens.append(token)
                    chunk.weights.append(weight)
                    position += 1
                    continue
                ids_length, embedding = found
                vectors = embedding.vectors.shape[0]
                if len(chunk.tokens) + vectors > CHUNK:
                    close()
                chunk.embeddings.append((len(chunk.tokens), embedding))
                chunk.tokens += [0] * vectors
                chunk.weights += [weight] * vectors
                position += ids_length
        if chunk.tokens or not chunks:
            close(last=True)
        plain = pieces == [(text, 1.0)] and len(chunks) == 1 and not chunks[0].embeddings
        return Tokenized(chunks, count, plain)

    def _embedding_at(self, ids: list[int], position: int) -> tuple[int, Embedding] | None:
        for candidate, embedding in self._lookup.get(ids[position], ()):
            if ids[position: position + len(candidate)] == candidate:
                return len(candidate), embedding
        return None

    # -- tensors --------------------------------------------------------------------------------------------

    def encode(self, tokenized: Tokenized, clip_skip: int = 1) -> torch.Tensor:
        """(1, 77 x chunks, width): the conditioning of the prompt."""
        return self.encode_all([tokenized], clip_skip)[0]

    @torch.no_grad()
    def encode_all(self, prompts: list[Tokenized], clip_skip: int = 1) -> list[torch.Tensor]:
        """Each prompt's conditioning, every chunk of every prompt through the text encoder at once (each chunk is
        still encoded on its own: a batch row)."""
        hidden, _ = self.encode_chunks(prompts, clip_skip)
        rows = iter(hidden)
        return [torch.cat([next(rows) for _ in tokenized.chunks]).unsqueeze(0) for tokenized in prompts]

    def encode_chunks(self, prompts: list[Tokenized], clip_skip: int) -> tuple[torch.Tensor, object]:
        """(every chunk's weighted conditioning, (chunks, 77, width); the text encoder's output)."""
        chunks = [chunk for tokenized in prompts for chunk in tokenized.chunks]
        device = self.text_encoder.device
        ids = torch.tensor([self._padded(chunk.tokens) for chunk in chunks], device=device)
        layer = max(clip_skip, self.minimal_skip)
        with self._vectors_in_place([chunk.embeddings for chunk in chunks]):
            output = self.text_encoder(input_ids=ids, output_hidden_states=layer > 1)
        if layer > 1:
            hidden = output.hidden_states[-layer]
            hidden = self._final_layer_norm(hidden) if self.final_norm else hidden
        else:
            hidden = output.last_hidden_state
        weights = torch.tensor([chunk.weights for chunk in chunks], device=device, dtype=torch.float32)
        original_mean = hidden.mean(dim=(1, 2), keepdim=True)  # each chunk's own
        hidden = hidden * weights.to(hidden.dtype).unsqueeze(-1)
        return hidden * (original_mean / hidden.mean(dim=(1, 2), keepdim=True)), output

    def _padded(self, tokens: list[int]) -> list[int]:
        """A chunk's tokens with the padding token after its first end token (A1111's process_tokens)."""
        if self.pad == self.end:
            return tokens
        end = tokens.index(self.end)
        return [*tokens[:end + 1], *[self.pad] * (len(tokens) - end - 1)]

    @contextlib.contextmanager
    def _vectors_in_place(self, embeddings: list[list[tuple[int, Embedding]]]):
        """The token embedding layer's output with each chunk's embedding vectors after its start token at their
        offsets (A1111's EmbeddingsWithFixes), for this call only. `embeddings`: one list per batch row."""
        if not any(embeddings):
            yield
            return

        def replace(module, inputs, output):
            rows = list(output)
            for row, found in enumerate(embeddings):
                for offset, embedding in found:
                    vectors = embedding.vectors[:, self.columns].to(output.device, output.dtype)
                    length = min(output.shape[1] - offset - 1, vectors.shape[0])
                    rows[row] = torch.cat([rows[row][: offset + 1], vectors[:length], rows[row][offset + 1 + length:]])
            return torch.stack(rows)

        handle = self.text_encoder.get_input_embeddings().register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()


class XLPromptEncoder:
    """SDXL's conditioning, as A1111 and Forge make it: each chunk through both text encoders (OpenAI's CLIP ViT-L and
    OpenCLIP's ViT-bigG), their penultimate layers (or earlier ones with clip skip 3 and up) without the final norm,
    weighted each on its own and concatenated; and the pooled vector, the second encoder's projected output of the
    prompt's first chunk, unweighted. Both tokenizers share CLIP's vocabulary, so the chunks are the same. The SDXL
    refiner has the second encoder only (`text_encoder` None)."""

    minimal_skip = 2

    def __init__(self, tokenizer, text_encoder, tokenizer_2, text_encoder_2):
        self.first = PromptEncoder(tokenizer, text_encoder) if text_encoder is not None else None
        self.second = PromptEncoder(tokenizer_2, text_encoder_2)
        self.encoders = [encoder for encoder in (self.first, self.second) if encoder is not None]
        for encoder in self.encoders:
            encoder.minimal_skip, encoder.final_norm = 2, False
        if self.first is not None:  # an embedding's columns: clip_l's, then clip_g's
            width = text_encoder.get_input_embeddings().weight.shape[1]
            self.first.columns, self.second.columns = slice(0, width), slice(width, None)
        self.layers = min(encoder.layers for encoder in self.encoders)
        self.tokenize, self.surely_plain = self.encoders[0].tokenize, self.encoders[0].surely_plain

    @property
    def names(self) -> list[str]:
        return self.encoders[0].names

    def use_embeddings(self, embeddings: Mapping[str, Embedding]) -> None:
        """SDXL's embeddings (clip_l's and clip_g's vectors side by side); the chunks place them once, for both."""
        self.encoders[0].use_embeddings(embeddings)

    @torch.no_grad()
    def encode_all(self, prompts: list[Tokenized], clip_skip: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each prompt's (conditioning (1, 77 x chunks, the encoders' widths), pooled (1, projection))."""
        encoded = [encoder.encode_chunks(prompts, clip_skip) for encoder in self.encoders]
        rows, pooled = torch.cat([hidden for hidden, _ in encoded], dim=-1), encoded[-1][1].text_embeds
        conditionings, start = [], 0
        for tokenized in prompts:
            count = len(tokenized.chunks)
            conditionings.append((torch.cat(list(rows[start:start + count])).unsqueeze(0), pooled[start:start + 1]))
            start += count
        return conditionings


def text_arguments(encoder: PromptEncoder | XLPromptEncoder, prompt: Tokenized, negative: Tokenized,
                   clip_skip: int, batch: int) -> dict[str, torch.Tensor]:
    """A pipeline call's text arguments for a prompt and its negative prompt, encoded A1111's way, padded to as many
    chunks and repeated for the call's batch; SDXL's pooled vectors too (the padding chunks' do not count)."""
    padding = [encoder.tokenize("")] if len(prompt.chunks) != len(negative.chunks) else []
    cond, uncond, *empty = encoder.encode_all([prompt, negative, *padding], clip_skip)
    pooled = {}
    if isinstance(encoder, XLPromptEncoder):
        (cond, pooled["pooled_prompt_embeds"]), (uncond, pooled["negative_pooled_prompt_embeds"]) = cond, uncond
        empty = [tensor for tensor, _ in empty]
    cond, uncond = pad_chunks(cond, uncond, empty[0]) if empty else (cond, uncond)
    return {"prompt_embeds": cond.expand(batch, -1, -1), "negative_prompt_embeds": uncond.expand(batch, -1, -1),
            **{key: tensor.expand(batch, -1) for key, tensor in pooled.items()}}


def pad_chunks(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt and the negative prompt with as many chunks each, the shorter padded with empty-prompt chunks
    (A1111's "pad prompt/negative prompt to be same length"): diffusers batches them together."""
    cond, uncond = padded_alike([cond, uncond], empty)
    return cond, uncond


def padded_alike(tensors: list[torch.Tensor], empty: torch.Tensor) -> list[torch.Tensor]:
    """Conditionings with as many chunks each as the longest, the others padded with `empty` (the empty prompt's
    one chunk)."""
    chunks = max(tensor.shape[1] for tensor in tensors) // empty.shape[1]
    return [torch.cat([tensor, *[empty] * (chunks - tensor.shape[1] // empty.shape[1])], dim=1)
            if tensor.shape[1] // empty.shape[1] < chunks else tensor for tensor in tensors]
