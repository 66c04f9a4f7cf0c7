"""Independent reference model of AUTOMATIC1111's prompt -> SD 1.x conditioning.

Tests use this module to check the project's own prompt implementation against
what AUTOMATIC1111's stable-diffusion-webui ("A1111") does.  It is written from
a reading of A1111's source, in its own words and structure (no A1111 code is
copied), and reproduces A1111's behaviour exactly, quirks included, for the
defaults: emphasis "Original", comma_padding_backtrack = 20, chunk length 75,
SD 1.x CLIP (the padding token is the end token).  It imports nothing from the
project; the tokenizer (a transformers ``CLIPTokenizer``) and the text encoder
(a transformers ``CLIPTextModel``) are passed in.

Where each piece comes from (AUTOMATIC1111/stable-diffusion-webui; the versions
read, by the commit of each file):

* ``parse_attention`` -- ``modules/prompt_parser.py``: ``re_attention``,
  ``re_break``, ``parse_prompt_attention`` (commit
  28bd8e142d5f77b71ae8d7d7140b5da1b3a49906; the weight syntax there allows
  blanks around the number, ``(a: 1.5 )``; an older version read, 0674fabd,
  did not).
* ``chunks`` -- ``modules/sd_hijack_clip.py``: ``TextConditionalModel.
  tokenize_line`` with its inner ``next_chunk``, ``empty_chunk``,
  ``FrozenCLIPEmbedderWithCustomWords.__init__`` (``comma_token`` is the
  vocabulary entry ``",</w>"``, ``id_start``/``id_end`` the tokenizer's
  bos/eos, ``id_pad = id_end``) and ``.tokenize`` (the parsed texts tokenized
  in one batch, ``truncation=False, add_special_tokens=False``) (commit
  5ad03e65863b0972e133c00692556752016f10c8).  The token count is the one
  ``modules/sd_hijack.py: StableDiffusionModelHijack.get_prompt_lengths``
  hands the UI's token counter.
* Embedding names -- ``modules/textual_inversion/textual_inversion.py``:
  ``EmbeddingDatabase.register_embedding_by_name`` (the name is tokenized
  like a prompt, keyed by its first token, candidates kept longest first, ties
  in registration order) and ``find_embedding_at_position`` (commit
  22ecb78b51f7e6f0234cbc0efbde4ee9a2dc466f).  An embedding has
  ``vec.shape[0]`` vectors (a 1-D vector counts as one).
* ``conditioning`` -- ``modules/sd_hijack_clip.py``: ``forward`` (chunks
  encoded one by one and joined with ``torch.hstack``), ``process_tokens``,
  ``FrozenCLIPEmbedderWithCustomWords.encode_with_transformers`` (clip skip);
  ``modules/sd_hijack.py``: ``EmbeddingsWithFixes.forward`` (the vectors
  replace the token embeddings, before position embeddings are added, at
  ``offset + 1`` because of the start token, at most ``77 - offset - 1`` of
  them) (commit b55127bbd4071c89f3a322b561ff28668ed2eac2);
  ``modules/sd_emphasis.py``: ``EmphasisOriginal.after_transformers``
  (commit f8391b8a8ff61bf7ebcddc9b387e6c2f206ed056).
* ``pad_to_same_chunks`` -- ``modules/sd_samplers_cfg_denoiser.py``:
  ``pad_cond`` and ``CFGDenoiser.pad_cond_uncond`` (commit
  72632242f7d612c7cb1c1b0b9f86ffcbfeb4e1e8); the empty prompt's
  conditioning is ``sd_model.cond_stage_model_empty_prompt``, i.e.
  ``cond_stage_model([""])`` (``modules/sd_models.py: get_empty_cond``).
* Defaults -- ``modules/shared_options.py`` (commit
  488d6943b9de1629a29b393be9819dd346168964): ``comma_padding_backtrack`` 20,
  ``CLIP_stop_at_last_layers`` 1; newer versions add ``emphasis`` =
  "Original".

Quirks reproduced on purpose (see also the asserts at the bottom):

* Brackets still open at the end of the prompt are applied there: every
  unclosed ``(`` multiplies everything from it to the end by 1.1 (in the order
  they were opened), then every unclosed ``[`` by 1/1.1.
* ``:w)`` closes the innermost open ``(`` with weight ``w``; with no ``(`` open
  it is literal text, as are a stray ``)``, ``]`` and ``:``.  The weight is
  ``float()`` of ``[+-]?[.\\d]+``, so ``(a:1.2.3)`` raises ``ValueError``, as in
  A1111.
* ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\\\`` give the character; any other
  backslash vanishes (it becomes an empty piece of weight 1.0).
* Adjacent pieces with exactly equal weights (float ``==``) are merged, so the
  order of the float multiplications matters and is kept: ``[x]`` multiplies
  by ``1 / 1.1``, it does not divide by 1.1.
* ``BREAK`` (a whole word, with the blanks around it) inside a plain-text run
  becomes the piece ``["BREAK", -1]``; inside brackets that piece gets
  multiplied like any other, stops being ``-1`` and is then just the word
  "BREAK" (``(a BREAK b)`` gives the word with weight -1.1, ``(BREAK:-1)`` the
  word with weight 1).  Conversely pieces that merge into the text "BREAK"
  with weight exactly -1, as in ``(BRE\\AK:-1)``, make a break.  A break
  always closes the current chunk, even an empty one, and adds 75 to the
  token count.
* An empty prompt (or one that tokenizes to nothing) gives one chunk, all
  padding, token count 0.
* When a chunk is full (75 tokens) and the next token is not a comma, and the
  last comma in the chunk is at most 20 tokens back, the tokens after that
  comma move to the next chunk.  Embedding fixes are not moved with them: an
  embedding among the moved tokens keeps its fix on the old chunk (whose
  vectors then land on the old chunk's padding) and its placeholders (token id
  0) are encoded as plain token 0 in the new chunk.
* An embedding that does not fit in the rest of the chunk starts a new chunk.
  One longer than 75 vectors first closes the current chunk, even an empty
  one, then makes an over-long chunk, which CLIP then rejects.
* Token count (the UI's counter): 75 for every chunk but the last, plus the
  tokens of the last one; a prompt ending in BREAK has no last chunk of its
  own.
* Emphasis "Original": the chunk's output is multiplied token by token by the
  multipliers (a float32 tensor, so a float16 output comes back float32),
  then scaled by ``old_mean / new_mean`` (means over the whole chunk tensor).
* Clip skip N > 1: ``hidden_states[-N]`` passed through the final layer norm;
  N <= 1: ``last_hidden_state``.
"""

from __future__ import annotations

import re

import torch

CHUNK_LENGTH = 75  # prompt tokens per chunk; a chunk is 77 with start and end
COMMA_PADDING_BACKTRACK = 20  # shared_options.comma_padding_backtrack default
ROUND_FACTOR = 1.1
SQUARE_FACTOR = 1 / 1.1  # applied by multiplication, as A1111 does
BREAK_PIECE = ("BREAK", -1)

# One alternative per kind of piece.  Any character starts exactly one of them
# except ":", where the weight form is tried before the bare colon.
_PIECE = re.compile(
    r"""
      (?P<escaped>\\[()\[\]\\])            # \( \) \[ \] \\  -> that character
    | (?P<stray>\\)                        # any other backslash -> nothing
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)     # ":1.2)" / ": 1.2 )"
    | (?P<close>[)\]])
    | (?P<colon>:)
    | (?P<plain>[^\\()\[\]:]+)
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_attention(text: str) -> list[list]:
    """Split a prompt into ``[text, weight]`` pieces, as A1111's parse_prompt_attention."""
    pieces: list[list] = []
    open_round: list[int] = []  # index into pieces where each open "(" starts
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    def add_text(run: str) -> None:
        for n, part in enumerate(_BREAK.split(run)):
            if n:
                pieces.append(list(BREAK_PIECE))
            pieces.append([part, 1.0])

    for match in _PIECE.finditer(text):
        kind, run = match.lastgroup, match.group()
        if kind == "escaped":
            pieces.append([run[1], 1.0])
        elif kind == "stray":
            pieces.append(["", 1.0])
        elif kind == "open":
            (open_round if run == "(" else open_square).append(len(pieces))
        elif kind == "weight" and open_round:
            scale_from(open_round.pop(), float(match.group("weight")))
        elif run == ")" and open_round:
            scale_from(open_round.pop(), ROUND_FACTOR)
        elif run == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_FACTOR)
        else:
            add_text(run)

    for start in open_round:
        scale_from(start, ROUND_FACTOR)
    for start in open_square:
        scale_from(start, SQUARE_FACTOR)

    if not pieces:
        return [["", 1.0]]

    merged: list[list] = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == merged[-1][1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return merged


def _as_matrix(vectors: torch.Tensor) -> torch.Tensor:
    return vectors.reshape(1, -1) if vectors.dim() == 1 else vectors


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]]


def _name_index(tokenizer, embeddings) -> dict[int, list[tuple[list[int], str, int]]]:
    """first token id -> [(name's token ids, name, vector count)], longest first, ties in dict order."""
    index: dict[int, list[tuple[list[int], str, int]]] = {}
    for name, vectors in (embeddings or {}).items():
        ids = _tokenize(tokenizer, [name])[0]
        if not ids:  # A1111 fails on ids[0] while registering; the embedding is reported and skipped
            continue
        index.setdefault(ids[0], []).append((ids, name, int(_as_matrix(vectors).shape[0])))
    for candidates in index.values():
        candidates.sort(key=lambda candidate: len(candidate[0]), reverse=True)  # stable
    return index


class _ChunkWriter:
    """Fills 75-token chunks the way tokenize_line does and keeps the UI token count."""

    def __init__(self, start_id: int, end_id: int):
        self.start_id, self.end_id = start_id, end_id
        self.done: list[tuple[list[int], list[float], list[tuple[int, str]]]] = []
        self.count = 0
        self._open()

    def _open(self) -> None:
        self.tokens: list[int] = []
        self.weights: list[float] = []
        self.fixes: list[tuple[int, str]] = []
        self.last_comma = -1  # position of the chunk's last comma, -1: none

    def close(self, final: bool = False) -> None:
        self.count += len(self.tokens) if final else CHUNK_LENGTH
        room = max(CHUNK_LENGTH - len(self.tokens), 0)
        tokens = [self.start_id, *self.tokens, *[self.end_id] * room, self.end_id]
        weights = [1.0, *self.weights, *[1.0] * room, 1.0]
        self.done.append((tokens, weights, self.fixes))
        self._open()

    def wrap_at_last_comma(self) -> None:
        """Move what follows the last comma into a new chunk; the fixes stay behind."""
        cut = self.last_comma + 1
        moved_tokens, moved_weights = self.tokens[cut:], self.weights[cut:]
        del self.tokens[cut:], self.weights[cut:]
        self.close()
        self.tokens, self.weights = moved_tokens, moved_weights


def chunks(
    tokenizer, text: str, embeddings: dict[str, torch.Tensor] | None = None
) -> tuple[list[tuple[list[int], list[float], list[tuple[int, str]]]], int]:
    """A1111's tokenize_line: ([(77 token ids, 77 multipliers, fixes)], UI token count).

    A fix is ``(offset, embedding name)``; ``offset`` counts from the first
    prompt token, so the embedding's vectors go to positions ``offset + 1``...
    of the 77 (the start token comes first); its placeholder ids are 0.
    """
    comma_id = tokenizer.get_vocab().get(",</w>")
    names = _name_index(tokenizer, embeddings)
    pieces = parse_attention(text)
    writer = _ChunkWriter(tokenizer.bos_token_id, tokenizer.eos_token_id)

    for ids, (piece, weight) in zip(_tokenize(tokenizer, [p for p, _ in pieces]), pieces):
        if piece == BREAK_PIECE[0] and weight == BREAK_PIECE[1]:
            writer.close()
            continue
        at = 0
        while at < len(ids):
            token = ids[at]
            full = len(writer.tokens) == CHUNK_LENGTH
            if token == comma_id:
                writer.last_comma = len(writer.tokens)
            elif (
                COMMA_PADDING_BACKTRACK
                and full
                and writer.last_comma != -1
                and CHUNK_LENGTH - writer.last_comma <= COMMA_PADDING_BACKTRACK
            ):
                writer.wrap_at_last_comma()
            if len(writer.tokens) == CHUNK_LENGTH:
                writer.close()

            found = next(
                (c for c in names.get(token, ()) if ids[at : at + len(c[0])] == c[0]),
                None,
            )
            if found is None:
                writer.tokens.append(token)
                writer.weights.append(weight)
                at += 1
                continue

            name_ids, name, count = found
            if len(writer.tokens) + count > CHUNK_LENGTH:
                writer.close()
            writer.fixes.append((len(writer.tokens), name))
            writer.tokens += [0] * count
            writer.weights += [weight] * count
            at += len(name_ids)

    if writer.tokens or not writer.done:
        writer.close(final=True)
    return writer.done, writer.count


@torch.no_grad()
def conditioning(
    tokenizer,
    text_encoder,
    text: str,
    clip_skip: int = 1,
    embeddings: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(1, 77 * chunks, width): A1111's cond_stage_model([text]) for SD 1.x, emphasis "Original"."""
    built, _ = chunks(tokenizer, text, embeddings)
    vectors = {name: _as_matrix(v) for name, v in (embeddings or {}).items()}
    token_embedding = text_encoder.get_input_embeddings()
    device = token_embedding.weight.device
    encoded = []
    for tokens, weights, fixes in built:

        def place_vectors(_module, _inputs, output, fixes=fixes):
            if not fixes:
                return None
            output = output.clone()
            row = output[0]
            for offset, name in fixes:
                vec = vectors[name].to(device=output.device, dtype=output.dtype)
                n = min(row.shape[0] - offset - 1, vec.shape[0])
                row[offset + 1 : offset + 1 + n] = vec[:n]
            return output

        hook = token_embedding.register_forward_hook(place_vectors)
        try:
            out = text_encoder(
                input_ids=torch.tensor([tokens], dtype=torch.long, device=device),
                output_hidden_states=True,
            )
        finally:
            hook.remove()
        if clip_skip > 1:
            # transformers < 5 nests the layers under .text_model; 5.x has them on the model itself
            final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
            z = final_layer_norm(out.hidden_states[-clip_skip])
        else:
            z = out.last_hidden_state

        multipliers = torch.asarray([weights]).to(z.device)  # default dtype (float32)
        mean_before = z.mean()
        z = z * multipliers[..., None].expand(z.shape)
        mean_after = z.mean()
        encoded.append(z * (mean_before / mean_after))
    return torch.hstack(encoded)


@torch.no_grad()
def conditioning_xl(
    tokenizer_l, text_encoder_l, tokenizer_g, text_encoder_g, text: str, clip_skip: int = 1,
    embeddings: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond (1, 77 * chunks, width_l + width_g), pooled (1, projection)): A1111's SDXL conditioner
    (``repositories/generative-models/sgm/modules/encoders/modules.py: GeneralConditioner``, its crossattn
    outputs concatenated on the last dimension) over the hijacked embedders of ``modules/sd_hijack_clip.py``
    (``FrozenCLIPEmbedderForSDXLWithCustomWords``: ViT-L, padding with the end token) and
    ``modules/sd_hijack_open_clip.py`` (``FrozenOpenCLIPEmbedder2WithCustomWords``: bigG, ``id_pad = 0``, the
    tokens after the first end token replaced by it in ``process_tokens``); the pooled vector is the first
    chunk's, before emphasis. The layer is Forge's (``backend/text_processing/classic_engine.py``: hidden
    state ``-max(clip_skip, 2)`` for SDXL, no final layer norm), which at clip skip 1 and 2 is A1111's
    penultimate layer. ``embeddings``: name -> (clip_l's vectors, clip_g's), each embedder placing its own
    (``modules/sd_hijack.py: EmbeddingsWithFixes`` on each of SDXL's embedders, as for SD 1.x)."""

    def embedder(tokenizer, text_encoder, pad: int, vectors: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        built, _ = chunks(tokenizer, text, vectors)
        end = tokenizer.eos_token_id
        token_embedding = text_encoder.get_input_embeddings()
        encoded, pooled = [], None
        for index, (tokens, weights, fixes) in enumerate(built):
            ids = list(tokens)
            first_end = ids.index(end)
            ids[first_end + 1:] = [pad] * (len(ids) - first_end - 1)

            def place_vectors(_module, _inputs, output, fixes=fixes):
                output = output.clone()
                for offset, name in fixes:
                    vec = _as_matrix(vectors[name])
                    n = min(output.shape[1] - offset - 1, vec.shape[0])
                    output[0, offset + 1: offset + 1 + n] = vec[:n]
                return output

            hook = token_embedding.register_forward_hook(place_vectors)
            try:
                out = text_encoder(input_ids=torch.tensor([ids]), output_hidden_states=True)
            finally:
                hook.remove()
            z = out.hidden_states[-max(clip_skip, 2)]
            if index == 0:
                pooled = getattr(out, "text_embeds", None)
            multipliers = torch.asarray([weights])
            mean_before = z.mean()
            z = z * multipliers[..., None].expand(z.shape)
            encoded.append(z * (mean_before / z.mean()))
        return torch.hstack(encoded), pooled

    embeddings = embeddings or {}
    cond_l, _ = embedder(tokenizer_l, text_encoder_l, tokenizer_l.eos_token_id,
                         {name: pair[0] for name, pair in embeddings.items()})
    cond_g, pooled = embedder(tokenizer_g, text_encoder_g, 0, {name: pair[1] for name, pair in embeddings.items()})
    return torch.cat([cond_l, cond_g], dim=-1), pooled


def pad_to_same_chunks(
    cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A1111's pad_cond_uncond: pad the shorter with the empty prompt's chunk, repeated."""
    missing = (cond.shape[1] - uncond.shape[1]) // empty.shape[1]

    def padded(tensor: torch.Tensor, repeats: int) -> torch.Tensor:
        return torch.cat([tensor, empty.repeat((tensor.shape[0], repeats, 1))], dim=1)

    if missing < 0:
        cond = padded(cond, -missing)
    elif missing > 0:
        uncond = padded(uncond, missing)
    return cond, uncond


if __name__ == "__main__":
    # parse_prompt_attention's documented examples
    assert parse_attention("normal text") == [["normal text", 1.0]]
    assert parse_attention("an (important) word") == [["an ", 1.0], ["important", 1.1], [" word", 1.0]]
    assert parse_attention("(unbalanced") == [["unbalanced", 1.1]]
    assert parse_attention("\\(literal\\]") == [["(literal]", 1.0]]
    assert parse_attention("(unnecessary)(parens)") == [["unnecessaryparens", 1.1]]
    assert parse_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ["a ", 1.0],
        ["house", 1.5730000000000004],
        [" ", 1.1],
        ["on", 1.0],
        [" a ", 1.1],
        ["hill", 0.55],
        [", sun, ", 1.1],
        ["sky", 1.4641000000000006],
        [".", 1.1],
    ]
    # quirks
    assert parse_attention("") == [["", 1.0]]
    assert parse_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]  # the word, weight -1.1
    assert parse_attention("(BREAK:-1)") == [["", -1.0], ["BREAK", 1.0], ["", -1.0]]  # the word, weight 1
    assert parse_attention("a:1.2) b") == [["a:1.2) b", 1.0]]
    assert parse_attention("(a: 1.5 )") == [["a", 1.5]]
    assert parse_attention("a\\b") == [["ab", 1.0]]
    assert parse_attention("[a") == [["a", 1 / 1.1]]
    print("a1111_reference: parse_attention examples pass")
