"""LoRA: a library of .safetensors files, A1111's <lora:name:weight> prompt tags, adapters hot-swapped over the
shared U-Net and text encoder (peft, through diffusers' load_lora_weights / set_adapters), as the `Lora`
extension."""

from extensions.lora.adapters import LoraAdapters
from extensions.lora.extension import Lora
from extensions.lora.library import LoraLibrary
from extensions.lora.tags import LoraTag, format_tags, parse_tags

__all__ = ["install", "Lora", "LoraAdapters", "LoraLibrary", "LoraTag", "format_tags", "parse_tags"]


def install(manager, folder, cap: int = 16, fuse: bool = False, compiled_rank: int | None = None) -> LoraAdapters:
    """Add LoRA to a PipelineManager without a service (tests, bench, training): every request then sets its own
    adapters (or none) before it runs; returns the adapters."""
    extension = Lora(folder, cap, fuse, compiled_rank)
    extension.install(manager)
    return extension.adapters
