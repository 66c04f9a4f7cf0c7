"""LyCORIS files (LoHa and LoKr, in kohya-ss's key layout, as Civitai has them) as peft adapters over the shared
U-Net and text encoder(s), so they switch, weigh and combine with LoRAs exactly as those do (switch.py).

A layer's keys, after its kohya name (`lora_unet_...`, `lora_te_...`, SDXL's `lora_te1_` / `lora_te2_`):
- LoHa: `hada_w1_a`, `hada_w1_b`, `hada_w2_a`, `hada_w2_b` (and `hada_t1`, `hada_t2` for a CP-decomposed conv):
  the change is (w1_a @ w1_b) * (w2_a @ w2_b);
- LoKr: `lokr_w1` or `lokr_w1_a` @ `lokr_w1_b`, `lokr_w2` or `lokr_w2_a` @ `lokr_w2_b` (or with `lokr_t2`): the
  change is kron(w1, w2);
- `alpha`: the change is scaled by alpha / dim, dim being the rank of the decomposed matrices (LoHa's w1_b rows,
  LoKr's w1_b or w2_b rows), and by 1 where there is none, as A1111's network_hada.py and network_lokr.py scale it.

peft's LoHa / LoKr layers hold the tensors as the file has them (their own factorisation is replaced), with peft's
scaling set to A1111's: peft's own layout rules are not assumed to match the trainer's.
"""

from __future__ import annotations

import re

import torch
from torch import nn

LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
SUFFIXES = {f".{name}": name for name in (*LOHA, *LOKR)}


def is_lycoris(tensors: dict) -> bool:
    return any(key.rsplit(".", 1)[-1] in (*LOHA, *LOKR) for key in tensors)


def load_lycoris(file_name: str, tensors: dict[str, torch.Tensor], targets: dict[str, tuple[str, str]],
                 models: dict[str, nn.Module], adapter: str) -> None:
    """Add `adapter` to `models` ({"unet": ..., "text_encoder": ...}) from the file's `tensors` (SDXL's U-Net keys
    by diffusers' block names). `targets`: each kohya layer name to its (component, module path)
    (files.kohya_layers)."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model

    layers = _by_layer(file_name, tensors, targets)
    kinds = {"loha" if "hada_w1_a" in weights else "lokr" for _, _, weights in layers}
    if len(kinds) > 1:
        raise ValueError(f"LoRA file {file_name}: mixes LoHa and LoKr layers; one kind per file is read")
    kind = kinds.pop()
    for component, model in models.items():
        mine = {path: weights for part, path, weights in layers if part == component}
        if not mine:
            continue
        modules = dict(model.named_modules())
        for path, weights in mine.items():
            _check_shape(file_name, path, modules[path], weights)
        paths = "|".join(re.escape(path) for path in mine)  # a string: peft matches it whole, as a regex
        conv = any("hada_t1" in weights or "lokr_t2" in weights for weights in mine.values())
        config = (LoHaConfig if kind == "loha" else LoKrConfig)(r=1, alpha=1, target_modules=f"({paths})",
                                                               use_effective_conv2d=conv)
        before = getattr(model, "peft_config", None)
        inject_adapter_in_model(config, model, adapter_name=adapter)
        if before is None:  # the adapters are this module's to delete (delete_lycoris), not diffusers'
            del model.peft_config
        else:
            model.peft_config = before
        modules = dict(model.named_modules())  # the layers now wrapped
        for path, weights in mine.items():
            _set_weights(modules[path], adapter, weights, kind)


def delete_lycoris(models, adapter: str) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for model in models:
        for module in model.modules():
            if isinstance(module, BaseTunerLayer) and adapter in getattr(module, "_available_adapters", ()):
                module.delete_adapter(adapter)


def _by_layer(file_name: str, tensors: dict[str, torch.Tensor],
              targets: dict[str, tuple[str, str]]) -> list[tuple[str, str, dict[str, torch.Tensor]]]:
    """(component, module path, {tensor name: tensor, "alpha": ...}) for each layer of the file."""
    layers: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, role = key.rpartition(".")
        if name not in targets:
            raise ValueError(f"LoRA file {file_name}: key {key!r} names no layer of this model")
        layers.setdefault(targets[name], {})[role] = tensor
    return [(component, path, weights) for (component, path), weights in layers.items()]


def _check_shape(file_name: str, path: str, module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """The layer's change must have the layer's weight's size (a file for another base does not)."""
    def product(name: str, first: str, second: str) -> tuple[int, int] | None:
        if name in weights:
            return weights[name].shape[0], weights[name][0].numel()
        if first in weights and second in weights:
            return weights[first].shape[0], weights[second][0].numel()
        return None

    weight = getattr(module, "base_layer", module).weight
    if "hada_w1_a" in weights:
        size = product("", "hada_w1_a", "hada_w1_b") if "hada_t1" not in weights else None
    else:
        w1, w2 = product("lokr_w1", "lokr_w1_a", "lokr_w1_b"), product("lokr_w2", "lokr_w2_a", "lokr_w2_b")
        size = (w1[0] * w2[0], w1[1] * w2[1]) if w1 and w2 and "lokr_t2" not in weights else None
    if size is not None and size != (weight.shape[0], weight[0].numel()):
        raise ValueError(f"LoRA file {file_name}: made for another base model: its change of {path} is "
                         f"{size[0]}x{size[1]}, the layer's weight {weight.shape[0]}x{weight[0].numel()}")


def _set_weights(layer, adapter: str, weights: dict[str, torch.Tensor], kind: str) -> None:
    """The file's tensors in place of the ones peft made, and A1111's scale as peft's alpha / r."""
    names = LOHA if kind == "loha" else LOKR
    for name in names:
        if adapter in getattr(layer, name):
            del getattr(layer, name)[adapter]
    reference = layer.get_base_layer().weight
    for name in names:
        if name in weights:
            getattr(layer, name)[adapter] = nn.Parameter(
                weights[name].to(reference.device, reference.dtype), requires_grad=False)
    decomposed = weights.get("hada_w1_b", weights.get("lokr_w1_b", weights.get("lokr_w2_b")))
    dim = decomposed.shape[0] if decomposed is not None else None
    alpha = weights.get("alpha")
    scale = float(alpha) / dim if dim is not None and alpha is not None else 1.0
    layer.r[adapter], layer.alpha[adapter] = 1, scale
    layer.scaling[adapter] = scale
