"""A1111's scripts (X/Y/Z plot, prompt matrix, prompts from file or textbox; SD upscale comes with the upscalers), as
the `Scripts` extension: the Script dropdown, REST's script_name/script_args and gradio_client's keywords."""

from extensions.scripts.extension import Scripts

__all__ = ["Scripts"]
