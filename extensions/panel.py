"""The panels' shared part (gradio lives in panel modules only): what an extension's gradio handler tells its
client when it fails. A ValueError (bad input) by its message, which names the field and the value; anything else
by its kind only, since its message may hold server paths (the log has it whole)."""

from __future__ import annotations

import contextlib
import logging

import gradio as gr

log = logging.getLogger(__name__)


@contextlib.contextmanager
def gradio_errors(what: str):
    try:
        yield
    except gr.Error:
        raise
    except ValueError as error:
        raise gr.Error(str(error)) from None
    except Exception as error:
        log.exception("%s failed", what)
        raise gr.Error(f"{what} failed ({type(error).__name__}); the server's log has the details") from None
