"""LoRA: a library of .safetensors files, A1111's <lora:name:weight> prompt tags, adapters hot-swapped over the
shared U-Net and text encoder (peft, through diffusers' load_lora_weights / set_adapters)."""

from extensions.lora.adapters import LoraAdapters, install
from extensions.lora.library import LoraLibrary
from extensions.lora.tags import LoraTag, format_tags, parse_tags

__all__ = ["install", "LoraAdapters", "LoraLibrary", "LoraTag", "format_tags", "parse_tags"]
