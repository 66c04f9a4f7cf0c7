"""Prompts as AUTOMATIC1111 reads them: emphasis and BREAK (syntax.py), any length in 75-token chunks, textual
inversion and clip skip (encoder.py), the embeddings folder (embeddings.py), as the `Prompts` extension."""

from extensions.prompts.extension import Prompts

__all__ = ["Prompts"]
