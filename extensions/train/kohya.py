"""A trained adapter saved as kohya-ss's LoRA file, the format A1111, ComfyUI and this app's LoRA library all load:
`lora_unet_<module path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha` (and `lora_te_...` for the text
encoder), with kohya's `ss_*` metadata (string values, as kohya writes them)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
HALVES = {"lora_A": "lora_down", "lora_B": "lora_up"}


def kohya_state_dict(models: dict[str, torch.nn.Module], adapter: str, alpha: float) -> dict[str, torch.Tensor]:
    """The adapter `adapter` of each model ({"unet": ..., "text_encoder": ...}) in kohya's keys, in float16 (as
    kohya saves by default: half the size, and what A1111 users download)."""
    tensors = {}
    for component, model in models.items():
        for key, value in get_peft_model_state_dict(model, adapter_name=adapter).items():
            module, half, _ = key.rsplit(".", 2)  # "down_blocks.0....to_q", "lora_A", "weight"
            name = PREFIXES[component] + module.replace(".", "_")
            tensors[f"{name}.{HALVES[half]}.weight"] = value.detach().to("cpu", torch.float16).contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=torch.float16)
    return tensors


def metadata(settings: dict, captions: list[str], model_name: str, model_hash: str, steps: int, started: float,
             finished: float) -> dict[str, str]:
    """kohya's `ss_*` keys: the base model, the network, the run, and the captions' tag frequencies."""
    tags = Counter(tag.strip() for caption in captions for tag in caption.split(",") if tag.strip())
    resolution = settings["resolution"]
    return {
        "ss_network_module": "networks.lora",
        "ss_network_args": json.dumps({"layers": settings["layers"]}),
        "ss_network_dim": str(settings["rank"]),
        "ss_network_alpha": str(float(settings["alpha"])),
        "ss_base_model_version": "sd_v1",
        "ss_v2": "False",
        "ss_sd_model_name": model_name,
        "ss_sd_model_hash": model_hash,
        "ss_new_sd_model_hash": model_hash,
        "ss_output_name": settings["name"],
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_num_train_images": str(len(captions)),
        "ss_steps": str(steps),
        "ss_max_train_steps": str(settings["steps"]),
        "ss_batch_size_per_device": str(settings["batch_size"]),
        "ss_learning_rate": str(settings["learning_rate"]),
        "ss_unet_lr": str(settings["learning_rate"]),
        "ss_text_encoder_lr": str(settings["learning_rate"] if settings["train_text_encoder"] else 0),
        "ss_network_train_unet_only": str(not settings["train_text_encoder"]),
        "ss_seed": str(settings["seed"]),
        "ss_min_snr_gamma": str(settings["min_snr_gamma"]),
        "ss_prior_loss_weight": str(1.0 if settings["prior_preservation"] else 0.0),
        "ss_gradient_checkpointing": str(settings["gradient_checkpointing"]),
        "ss_training_started_at": str(started),
        "ss_training_finished_at": str(finished),
        "ss_tag_frequency": json.dumps({settings["name"]: dict(tags)}),
        "ss_caption_extension": ".txt",
        "ss_training_comment": "trained in SD Studio's Train tab",
    }


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(tensors, str(partial), metadata=meta)
    partial.replace(path)  # the library never sees half a file
    return path
