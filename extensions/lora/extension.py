"""LoRA as an extension: `<lora:name:weight>` tags in the prompt are the request's "lora" part (the tags' (name,
weight) pairs, every name checked against the library), the adapters over the shared U-Net and text encoder are set
by a manager hook before each run, the text encoder sees the prompt without the tags, and "Lora hashes" goes into
the infotext. Its panel is the picker beside the prompt; its REST routes list and rescan the library."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from extensions.base import Extension, Panel, Route, Settings, TabContext
from extensions.lora.adapters import DEFAULT_CAP, LoraAdapters
from extensions.lora.fields import WEIGHT
from extensions.lora.hotswap import UnetSlot
from extensions.lora.library import LoraLibrary
from extensions.lora.tags import LoraTag, parse_tags


class Lora(Extension):
    name = "lora"
    placement = "prompt"
    reads_prompt = True

    def __init__(self, folder: str | Path, cap: int = DEFAULT_CAP, fuse: bool = False,
                 compiled_rank: int | None = None):
        """`compiled_rank`: the U-Net is to be compiled; LoRA then goes through one hot-swapped slot of that rank
        (install before compiling)."""
        self.library = LoraLibrary(folder)
        self.cap, self.fuse, self.compiled_rank = cap, fuse, compiled_rank
        self.adapters: LoraAdapters | None = None  # the installed manager's

    @classmethod
    def from_settings(cls, settings: Settings) -> Lora:
        settings.lora_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop their LoRA files
        return cls(settings.lora_dir, cap=settings.lora_cap, fuse=settings.lora_fuse, compiled_rank=settings.lora_rank)

    def install(self, manager) -> None:
        slot = None
        if self.compiled_rank is not None:
            if manager.unet_compiled:
                raise ValueError("install LoRA before compiling the U-Net: the slot must exist when it compiles")
            slot = UnetSlot(manager.pipelines["txt2img"], self.compiled_rank)
        self.adapters = LoraAdapters(self.library, self.cap, self.fuse, slot, manager.offload.paused,
                                     manager.family.name)
        manager.configurers.append(self._configure)
        manager.pipeline_hooks.append(_prompts_without_tags)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> tuple[LoraTag, ...] | None:
        return self.prompt_part(fields.get("prompt") or "")

    def prompt_part(self, prompt: str) -> tuple[LoraTag, ...] | None:
        """The prompt's tags; an unknown LoRA is an error now, not mid-run."""
        _, tags = parse_tags(prompt)
        for tag in tags:
            if not WEIGHT.minimum <= tag.weight <= WEIGHT.maximum:
                raise ValueError(f"LoRA {tag.name!r} weight must be a number from {WEIGHT.minimum:g} to "
                                 f"{WEIGHT.maximum:g}, got {tag.weight!r}")
            self.library.resolve(tag.name)
        return tags or None

    def encoder_text(self, prompt: str) -> str:
        return without_tags(prompt)

    def affinity(self, request) -> str:
        return "+".join(sorted({tag.name for tag in request.part(self.name, ()) or ()}))

    def _configure(self, pipe, request) -> dict[str, str]:
        hashes = self.adapters.configure(pipe, request.part(self.name, ()))
        # A1111 writes: Lora hashes: "name: 0123456789ab, other: ba9876543210"
        return {"Lora hashes": ", ".join(f"{name}: {short}" for name, short in hashes.items())} if hashes else {}

    def rest_routes(self) -> list[Route]:
        def listing() -> list[dict]:
            library = self.library
            return [{"name": name, "alias": name, "path": library.resolve(name).relative_to(library.folder).as_posix(),
                     "metadata": {}} for name in library.names()]

        def refresh() -> None:
            self.library.refresh()  # a LoRA added (or just trained) since is listed

        return [Route("GET", "/sdapi/v1/loras", listing), Route("POST", "/sdapi/v1/refresh-loras", refresh)]

    def panel(self, tab: TabContext) -> Panel | None:
        from extensions.lora.panel import lora_picker

        lora_picker(tab.prompt, self.library, tab.mode)
        return None


def without_tags(prompt: str) -> str:
    """What of a prompt reaches the text encoder."""
    return parse_tags(prompt)[0]


def _prompts_without_tags(pipe, request, arguments: dict, parameters: dict) -> tuple:
    return pipe, {**arguments, "prompt": [without_tags(text) for text in arguments["prompt"]]}
