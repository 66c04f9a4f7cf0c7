"""The extension protocol: a feature that is not part of every Stable Diffusion job (LoRA, ControlNet, inpaint,
outpaint, ...) lives in one folder as one `Extension`, and the core calls it only through these methods, in the
order the extensions are registered (extensions/__init__.py). The core never names an extension.

The life of one request, and where an extension takes part:

1. an interface (UI event, gradio_client endpoint, REST route) collects plain fields: the core's and each
   extension's `fields`; REST bodies are first mapped by `from_rest`;
2. `rewrite` may turn the fields into another job before anything is validated (outpaint: a bigger canvas and a
   mask over the new area, run as inpaint);
3. `parse` turns the extension's fields into its validated, frozen part of the request (`request.parts[name]`);
4. `install` gave the manager its hooks, which act under the model lock on the shared pipeline (LoRA adapters) or
   on the call (ControlNet, latent fill);
5. `prepare` adjusts the job before it runs (inpaint's crop, ControlNet's maps), adds infotext entries, warnings
   and steps applied to the model's images afterwards (inpaint's paste-back);
6. `from_infotext` reads the extension's infotext entries back into its fields (PNG Info's Send to);
7. `panel` builds its part of a tab, `register_endpoints` its gradio_client endpoints, `rest_routes` its REST
   routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from models.request import GenerationRequest


@dataclass
class Job:
    """One request on its way through the service."""

    request: GenerationRequest  # what the model runs; `prepare` may replace it (inpaint's crop)
    source: GenerationRequest  # the request as the interface built it
    inpainting_model: bool  # the loaded model has a 9-channel U-Net
    crop: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None  # (picture size, box): "only masked"
    infotext: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    finish: list[Callable[[list[Image.Image]], list[Image.Image]]] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """A REST route an extension serves: `handler(body)` when it takes a JSON body, else `handler()`; it raises
    ValueError for bad input, which the API layer answers with 422 (413 over a limit)."""

    method: str
    path: str
    handler: Callable
    takes_body: bool = False


@dataclass
class Panel:
    """An extension's part of a tab. The values of `inputs` reach the generate event after the tab's own; `collect`
    turns them into the extension's fields. `send` turns fields read from an infotext into updates of `inputs`
    (PNG Info's Send to; gr.update() leaves a component as it is). `actions`: buttons that run another endpoint (mode)
    with the tab's inputs and this panel's."""

    inputs: list = field(default_factory=list)
    collect: Callable[[list], dict] = lambda values: {}
    send: Callable[[dict], list] | None = None
    actions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TabContext:
    """What a panel may use of the tab it is built into."""

    mode: str
    prompt: Any  # the Prompt textbox
    negative: Any  # the Negative prompt textbox
    image: Any  # the tab's image input (None in txt2img); an editor in inpaint
    size: list  # the Width and Height sliders
    image_file: Callable[[Image.Image], str]  # an image as a file Gradio may serve
    editor_image: Callable[[Any], Image.Image | None]  # the picture of an editor value
    encoder_text: Callable[[str], str]  # what of a prompt reaches the text encoder (LoRA tags taken out)


SOLO = object()  # a batch key: the request runs alone


class Extension:
    name: str = ""
    fields: Mapping[str, Any] = {}  # its plain fields (gradio_client keywords) and their defaults
    modes: tuple[str, ...] = ("txt2img", "img2img", "inpaint")  # the endpoints whose requests carry its fields
    endpoints: Mapping[str, Mapping[str, Any]] = {}  # endpoints it adds -> the core defaults it changes there
    rest_fields: frozenset[str] = frozenset()  # the A1111 body fields it reads (not reported as ignored)
    rest_settings: frozenset[str] = frozenset()  # the A1111 override_settings it reads (not reported as ignored)
    script: str | None = None  # its name in /sdapi/v1/scripts (webuiapi looks for "controlnet")
    placement: str = "settings"  # where its panel goes in a tab: under the settings, "prompt" (beside it) or "size"
    # (under the width and height)
    tab_name: str | None = None  # the id of a tab of its own (see `tab`), e.g. "extras"
    tab_takes_pictures: bool = True  # results have a "Send to" button for its tab

    def install(self, manager) -> None:
        """Add its hooks to a (newly loaded) PipelineManager."""

    def attach(self, service) -> None:
        """The studio service it is part of (an extension that runs jobs of its own in the queue: training)."""

    def rewrite(self, mode: str, fields: dict) -> str:
        """Change `fields` in place before the request is built; returns the mode the job runs as."""
        return mode

    def parse(self, mode: str, fields: Mapping[str, Any], warnings: list[str]) -> Any:
        """Its validated part of the request from the fields (None: the request does not use it)."""
        return None

    def encoder_text(self, prompt: str) -> str:
        """What of the prompt reaches the text encoder (LoRA takes its tags out)."""
        return prompt

    def prepare(self, job: Job) -> None:
        """Adjust the job before it runs."""

    def batch_key(self, request) -> Hashable:
        """What of its part must be equal for requests to share one diffusers call (SOLO: this request runs
        alone). Its (frozen, hashable) part by default."""
        return request.part(self.name)

    def affinity(self, request) -> str:
        """What a model replica must have loaded for this request, as a name ("" for nothing): Ray Serve sends the
        request to a replica that has it (LoRA: the adapters)."""
        return ""

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """Its fields from its infotext entries, which it takes out of `entries`."""
        return {}

    def from_rest(self, payload: dict, route: str, fields: dict) -> str:
        """Add its fields, read from an A1111 request body, to `fields` (ValueError names the A1111 field);
        returns the endpoint the job runs as ("img2img" with a mask is "inpaint")."""
        return route

    def in_rest_words(self, message: str) -> str:
        """An error message with A1111's names for its fields, for REST clients."""
        return message

    def rest_routes(self) -> list[Route]:
        return []

    def register_endpoints(self, image_file: Callable[[Image.Image], str]) -> None:
        """Add its own named gradio_client endpoints (called inside the UI's hidden API column)."""

    def panel(self, tab: TabContext) -> Panel | None:
        return None

    def tab(self, image_file: Callable[[Image.Image], str]) -> Any:
        """Add its own tab, whose id is `tab_name` (called inside the UI's Tabs); returns the tab's input picture,
        which the buttons under every result send pictures to (None with `tab_takes_pictures` False)."""
        return None


def rename_words(message: str, names: Mapping[str, str]) -> str:
    """`message` with each whole word that is a key of `names` replaced by its value."""
    if not names:
        return message
    return re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", lambda match: names[match.group(1)], message)
