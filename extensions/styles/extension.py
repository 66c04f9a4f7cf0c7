"""A1111's prompt styles as an extension: a request's `styles` (REST's, gradio_client's, the tab's picker) are merged
into its prompt and negative prompt before anything else reads them (LoRA tags and A1111's syntax in a style work as
typed), so the infotext holds the prompts as they ran and the image equals one made from them written out. The
styles come from --styles-file (A1111's styles.csv); GET /sdapi/v1/prompt-styles lists them."""

from __future__ import annotations

from pathlib import Path

from extensions.base import Extension, Route, Settings
from extensions.styles.fields import STYLES
from extensions.styles.library import StyleLibrary
from models.validate import brief

MAX_STYLES = 16  # styles one request may name


class Styles(Extension):
    name = "styles"
    fields = (STYLES,)
    modes = ("txt2img", "img2img", "inpaint", "outpaint")
    placement = "prompt"

    def __init__(self, path: str | Path):
        self.library = StyleLibrary(path)

    @classmethod
    def from_settings(cls, settings: Settings) -> Styles:
        return cls(settings.styles_file)

    def rewrite(self, endpoint: str, fields: dict) -> str:
        names = fields.pop(STYLES.name, None) or []
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"styles must be a list of style names, got {brief(names)}")
        if len(names) > MAX_STYLES:
            raise ValueError(f"styles: at most {MAX_STYLES} styles at once, got {len(names)}")
        known = self.library.styles()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"styles: no style {unknown[0]!r}; the styles: {', '.join(known) or 'none yet'}")
        if names:
            fields["prompt"], fields["negative_prompt"] = self.library.apply(
                names, fields.get("prompt") or "", fields.get("negative_prompt") or "")
        return endpoint

    def rest_routes(self) -> list[Route]:
        def listing() -> list[dict]:
            return [{"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt}
                    for style in self.library.styles().values()]

        return [Route("GET", "/sdapi/v1/prompt-styles", listing)]

    def panel(self, tab):
        from extensions.styles.panel import styles_panel

        return styles_panel(self.library, tab)
