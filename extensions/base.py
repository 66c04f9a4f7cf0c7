"""The extension protocol: a feature that is not part of every Stable Diffusion job (LoRA, ControlNet, inpaint,
outpaint, ...) lives in one folder as one `Extension`, and the core calls it only through this protocol, in the
order the extensions are registered (extensions/__init__.py). The core never names an extension.

An extension gives three things, each a part of the protocol below, and uses what `Services` offers:

- **the request** (`RequestPart`): its fields, declared once (models/fields.py), which every interface takes; its
  validated, frozen part of the request (`parse`); what must match for requests to share a call (`batch_key`); its
  infotext entries read back (`from_infotext`); its A1111 REST fields (`from_rest`);
- **the model** (`ModelPart`): hooks on a newly loaded PipelineManager (`install`), and its adjustments of each job
  before the run, with steps applied to the images after it (`prepare`);
- **the interfaces** (`InterfacePart`): its part of the tabs (`panel`), a tab of its own (`tab`), gradio_client
  endpoints and REST routes of its own.

The life of one request, and where an extension takes part:

1. an interface (UI event, gradio_client endpoint, REST route) collects plain fields, the core's and each
   extension's `fields`; REST bodies are mapped by the fields' A1111 names, then by `from_rest`;
2. `rewrite` may turn the fields into another job before anything is validated (outpaint: a bigger canvas and a
   mask over the new area, run as inpaint);
3. `parse` turns the extension's fields into its validated, frozen part of the request (`request.parts[name]`);
4. `install` gave the manager its hooks, which act under the model lock on the shared pipeline (LoRA adapters) or
   on the call (ControlNet, latent fill);
5. `prepare` adjusts the job before it runs (inpaint's crop, ControlNet's maps), adds infotext entries, warnings
   and steps applied to the model's images afterwards (inpaint's paste-back);
6. `from_infotext` reads the extension's infotext entries back into its fields (PNG Info's Send to).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from models.fields import Field
from models.request import GenerationRequest, Pass
from models.validate import brief

StepCallback = Callable[[int, int], None]  # (steps done, steps in total)


@dataclass(frozen=True)
class Settings:
    """The app's settings the extensions take (built from its config by app.py)."""

    lora_dir: Path
    controlnet_dir: Path
    annotator_dir: Path
    embeddings_dir: Path
    upscaler_dir: Path
    vae_dir: Path
    output_dir: Path
    styles_file: Path
    lora_cap: int = 16  # LoRA adapters kept loaded
    lora_fuse: bool = False  # fuse a repeated LoRA set into the weights
    lora_rank: int | None = None  # with a compiled U-Net: the hot-swapped LoRA slot's rank (None: not compiled)
    controlnet_cap: int = 3  # ControlNets kept loaded
    controlnet_units: int = 3  # ControlNet units per request
    max_script_jobs: int = 64  # the most jobs one script runs (an X/Y/Z plot's cells, SD upscale's tiles, ...)
    checkpoint_dir: Path | None = None  # the checkpoints a client may name (--ckpt-dir): the refiner's choices


@dataclass(frozen=True)
class Services:
    """What an extension may use of the service it is part of (`attach`)."""

    # A job of its own in the one queue, on this process's model: run_task(steps, work, on_step=None) calls
    # work(manager, stop, step) holding the device; work reports progress with step(done, total) and ends early
    # once Interrupt sets `stop`. Returns what work returns; raises QueueFull when the queue has no room.
    run_task: Callable[..., Any]
    interrupt: Callable[[], None]  # stop what runs now after its current step
    model: Callable[[], Any]  # the PipelineManager in use, for its facts (size, layers); the device via run_task
    models_here: bool = True  # generations run on this process's model (not on Ray Serve replicas)
    scripts: Callable[[], list] = list  # every extension's scripts (`RequestPart.scripts`)
    # The parts the prompt-reading extensions make of a prompt (`RequestPart.prompt_part`), by name, None included;
    # raises ValueError naming what is wrong (an unknown LoRA)
    prompt_parts: Callable[[str], dict] = lambda prompt: {}


@dataclass
class PreparedRequest:
    """One request as the extensions prepare it for the model."""

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
    ValueError for bad input, which the API layer answers with 422 (413 over a limit). `body`: the body's fields, for
    the API's documentation."""

    method: str
    path: str
    handler: Callable
    takes_body: bool = False
    body: tuple[Field, ...] = ()


@dataclass
class Panel:
    """An extension's part of a tab. The values of `inputs` reach the generate event after the tab's own; `collect`
    turns them into the extension's fields. `send` turns fields read from an infotext into updates of `inputs`
    (PNG Info's Send to; gr.update() leaves a component as it is). `actions`: buttons that run another endpoint
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
    image_file: Callable[..., str]  # image_file(image, name): an image as a file of that name Gradio may serve
    editor_image: Callable[[Any], Image.Image | None]  # the picture of an editor value
    encoder_text: Callable[[str], str]  # what of a prompt reaches the text encoder (LoRA tags taken out)
    editor_mask: Callable[[Any], Image.Image | None] = lambda editor: None  # the mask painted in an editor value


SOLO = object()  # a batch key: the request runs alone


@dataclass
class Cell:
    """The result of one of a script's jobs (an X/Y/Z plot's cell): empty when it failed or was not run."""

    images: list[Image.Image] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


# One of a script's jobs: its endpoint, its fields and the model it needs (None: the one in use)
PlannedJob = tuple[str, Mapping[str, Any], "str | None"]


@dataclass(frozen=True)
class ScriptPlan:
    """What a script makes of a request: jobs in place of the request's own, which run through the one queue, and
    its own images made of their results (an X/Y/Z plot's grid), shown before theirs."""

    title: str
    # called where the script runs (SD upscale upscales its picture first); they run grouped by the model they need
    jobs: Callable[[], list[PlannedJob]]
    compose: Callable[[list[Cell]], list[tuple[Image.Image, str]]]  # the jobs' cells -> (image, infotext), ...
    keep_cells: bool = True  # the jobs' own images follow the script's
    size: int = 1  # the jobs it will run, for what it costs


class Script:
    """An A1111 script (X/Y/Z plot, prompt matrix, ...): picked by its title in the UI's Script dropdown, REST's
    `script_name` (any case) or gradio_client's `script_name`, its arguments positional as A1111's (`script_args`)."""

    title: str = ""
    modes: tuple[str, ...] = ("txt2img", "img2img")
    arguments: tuple[Field, ...] = ()  # its positional arguments, for /sdapi/v1/script-info

    def __init__(self, max_jobs: int = 64):
        self.max_jobs = max_jobs  # the most jobs it may run (--max-script-jobs)

    def plan(self, mode: str, fields: Mapping[str, Any], args: list, warnings: list[str]) -> ScriptPlan:
        """Its plan for a request of `mode` with these fields (the script's own taken out); ValueError names the
        argument (`script_args[1]`) and the value."""
        raise NotImplementedError

    def choices(self, argument: str, mode: str) -> list[str] | None:
        """The values an argument takes from a list (the UI offers them in a dropdown), or None."""
        return None


class RequestPart:
    """What an extension adds to the request, whichever interface builds it."""

    name: str = ""
    fields: tuple[Field, ...] = ()  # its fields: gradio_client keywords, UI controls, REST and infotext names
    modes: tuple[str, ...] = ("txt2img", "img2img", "inpaint")  # the endpoints whose requests carry its fields
    endpoints: Mapping[str, Mapping[str, Any]] = {}  # endpoints it adds -> the core defaults it changes there
    rest_body: tuple[Field, ...] = ()  # A1111 body fields in a form of their own, which `from_rest` converts

    def model_defaults(self) -> dict[str, Any]:
        """Its fields' defaults where the model in use needs other ones than A1111's (a request that gives the
        field keeps its own value)."""
        return {}

    def rewrite(self, endpoint: str, fields: dict) -> str:
        """Change `fields` in place before the request is built; returns the mode the job runs as."""
        return endpoint

    def parse(self, mode: str, fields: Mapping[str, Any], warnings: list[str]) -> Any:
        """Its validated part of the request from the fields (None: the request does not use it)."""
        return None

    def encoder_text(self, prompt: str) -> str:
        """What of the prompt reaches the text encoder (LoRA takes its tags out)."""
        return prompt

    reads_prompt = False  # its part comes from the prompt's own syntax (LoRA's tags): see `prompt_part`

    def prompt_part(self, prompt: str) -> Any:
        """With `reads_prompt`: its checked part made of `prompt` alone (None: the prompt asks for nothing), as a
        pass with a prompt of its own (the detailer's) takes it instead of the job's."""
        return None

    def batch_key(self, request) -> Hashable:
        """What of its part must be equal for requests to share one diffusers call (SOLO: this request runs
        alone). Its (frozen, hashable) part by default."""
        return request.part(self.name)

    def scripts(self) -> tuple[Script, ...]:
        """The A1111 scripts it brings (SD upscale comes with the upscalers)."""
        return ()

    def script_plan(self, request) -> ScriptPlan | None:
        """The plan of a script the request asks for, which the service runs instead of the request."""
        return None

    def passes(self, request) -> list[Pass]:
        """Denoising passes it adds to the request's own, for what the job costs (hires fix: its second)."""
        return []

    def affinity(self, request) -> str:
        """What a model replica must have loaded for this request, as a name ("" for nothing): Ray Serve sends the
        request to a replica that has it (LoRA: the adapters)."""
        return ""

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """Its fields from its infotext entries, which it takes out of `entries`."""
        return {}

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """Its fields in A1111 forms of their own (`rest_body`), read from a request body into `fields` (ValueError
        names the A1111 field); returns the endpoint the job runs as ("img2img" with a mask is "inpaint"). Fields
        under their A1111 names (`Field.rest`, `Field.setting`) are read for it."""
        return endpoint

    def in_rest_words(self, message: str) -> str:
        """An error message with A1111's names for its fields, for REST clients."""
        return message


class ModelPart:
    """What an extension does to the model and around each run."""

    def install(self, manager) -> None:
        """Add its hooks to a (newly loaded) PipelineManager."""

    def prepare(self, job: PreparedRequest) -> None:
        """Adjust the job before it runs."""


class InterfacePart:
    """What an extension adds to the tabs, the gradio_client API and the REST API."""

    script: str | None = None  # its name in /sdapi/v1/scripts (webuiapi looks for "controlnet")
    placement: str = "settings"  # where its panel goes in a tab: under the settings, "prompt" (beside it), "image"
    # (under the tab's picture) or "size" (under the width and height)
    tab_name: str | None = None  # the id of a tab of its own (see `tab`), e.g. "extras"
    tab_takes_pictures: bool = True  # results have a "Send to" button for its tab

    def panel(self, tab: TabContext) -> Panel | None:
        return None

    def tab(self, image_file: Callable[..., str]) -> Any:
        """Add its own tab, whose id is `tab_name` (called inside the UI's Tabs); returns the tab's input picture,
        which the buttons under every result send pictures to (None with `tab_takes_pictures` False)."""
        return None

    def register_endpoints(self, image_file: Callable[..., str]) -> None:
        """Add its own named gradio_client endpoints (called inside the UI's hidden API column)."""

    def rest_routes(self) -> list[Route]:
        return []

    def script_arguments(self) -> tuple[Field, ...]:
        """Its script's arguments, for /sdapi/v1/script-info (with `script` set)."""
        return ()


class Extension(RequestPart, ModelPart, InterfacePart):
    """One feature as a whole slice. `from_settings` makes it from the app's settings (default: no settings)."""

    services: Services | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Extension:
        return cls()

    def attach(self, services: Services) -> None:
        """The services of the studio it is part of."""
        self.services = services

    def rest_names(self) -> set[str]:
        """The A1111 body fields and override_settings it reads (not reported as ignored)."""
        return {name for field in (*self.fields, *self.rest_body) for name in (field.rest, field.setting) if name}


def rename_words(message: str, names: Mapping[str, str]) -> str:
    """`message` with each whole word that is a key of `names` replaced by its value."""
    if not names:
        return message
    return re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", lambda match: names[match.group(1)], message)


def alwayson_args(payload: Mapping, script: str) -> list:
    """The `args` of each entry of a REST body's `alwayson_scripts` named `script` in any case (usually one; None
    where an entry has none), as A1111's always-on scripts take them; ValueError when alwayson_scripts is not an
    object of scripts by name."""
    scripts = payload.get("alwayson_scripts")
    if scripts is not None and not isinstance(scripts, dict):
        raise ValueError(f"alwayson_scripts must be an object of scripts by name, got {brief(scripts)}")
    return [entry.get("args") if isinstance(entry, dict) else None
            for name, entry in (scripts or {}).items() if name.lower() == script.lower()]


def a1111_names(fields) -> dict[str, str]:
    """Our field name -> its A1111 name where they differ (for `in_rest_words`)."""
    return {field.name: field.rest or f"override_settings.{field.setting}" for field in fields
            if (field.rest or field.setting) and (field.rest or field.setting) != field.name}

