"""LoRA over a compiled U-Net: one fixed-rank adapter slot whose weights are swapped in place.

With `torch.compile`, anything that changes the U-Net's Python structure (adding an adapter, changing the active
list, a new scale as a Python float) makes dynamo recompile. So the U-Net gets one adapter, "slot", covering every
layer a LoRA may touch, padded to a fixed rank (`enable_lora_hotswap(target_rank=...)`) and with its scales held
as tensors. A request's whole LoRA set (weights and alpha/rank scales folded into the up matrices) is written
into that slot in place: stacking the factors of several LoRAs gives one LoRA of the summed rank with the same
output. An empty set writes zeros, which leaves the base output exactly. The rank limit: the ranks of the LoRAs
used together must add up to at most the slot's rank.

A switch is two fused foreach kernels on the slot's own tensors (zero them, copy the set's factors, kept on the
device since their load), not diffusers' `load_lora_adapter(..., hotswap=True)`: that builds and uploads the whole
padded state dict and walks the U-Net's state dict, 2.4 s a switch for SD 1.5 on the CPU, and a large share of a
GPU generation (`bench.gpu`'s switch figure).

The text encoder is not compiled, so its LoRA parts stay ordinary adapters (diffusers cannot hotswap them).
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
from peft.tuners.tuners_utils import BaseTunerLayer

SLOT = "slot"
DEFAULT_RANK = 64
# The layers of the transformer blocks that SD 1.x LoRAs (kohya-ss and diffusers alike) train.
SLOT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module name -> (down [r, in], up scaled [out, r])


class UnetSlot:
    def __init__(self, pipe: DiffusionPipeline, rank: int = DEFAULT_RANK):
        if rank < 1:
            raise ValueError(f"lora rank limit must be at least 1, got {rank}")
        self.unet: UNet2DConditionModel = pipe.unet
        self.rank = rank
        self.modules = {
            name: module for name, module in self.unet.named_modules()
            if name.endswith(SLOT_TARGETS) and ".attentions." in f".{name}" and _shape(module) is not None
        }
        # A weightless copy of the U-Net's structure: diffusers reads a LoRA's scales (alpha / rank per layer)
        # into it, so every format diffusers knows gives the same numbers here as in a normal load.
        with torch.device("meta"):
            self._probe = UNet2DConditionModel.from_config(self.unet.config)
        self._written: tuple | None = None
        self.unet.enable_lora_hotswap(target_rank=rank)
        self.unet.load_lora_adapter(self._zeros(), adapter_name=SLOT, prefix=None)
        # each layer's (down [rank, in], up [out, rank]) parameters, written in place; their scaling stays 1
        # (alpha = rank), the factors carry the scales
        self._slot = {name: (self.unet.get_submodule(name).lora_A[SLOT].weight,
                             self.unet.get_submodule(name).lora_B[SLOT].weight) for name in self.modules}

    def factors(self, name: str, state_dict: dict, network_alphas: dict | None) -> Factors:
        """The U-Net part of a LoRA (diffusers' converted state dict) as per-layer factors with the scale folded
        in. Refuses a LoRA that touches layers outside the slot, naming them."""
        unet_part = {key.removeprefix("unet."): value for key, value in state_dict.items() if key.startswith("unet.")}
        if not unet_part:
            return {}
        self._probe.load_lora_adapter(state_dict, network_alphas=network_alphas, prefix="unet", adapter_name="probe",
                                      low_cpu_mem_usage=True)
        try:
            scales = {module_name: module.scaling["probe"] for module_name, module in self._probe.named_modules()
                      if isinstance(module, BaseTunerLayer) and "probe" in module.scaling}
        finally:
            self._probe.delete_adapters("probe")
        tensors = convert_unet_state_dict_to_peft(unet_part)
        outside = sorted(set(scales) - set(self.modules))
        if outside:
            raise ValueError(
                f"LoRA {name}: with the compiled U-Net only attention-block layers can take a LoRA; this one also "
                f"changes {', '.join(outside[:3])}{' ...' if len(outside) > 3 else ''}"
            )
        factors = {}
        for module_name, scale in scales.items():  # in the slot's layout, device and dtype: a switch only copies
            down, up = self._slot[module_name]
            factors[module_name] = (
                tensors[f"{module_name}.lora_A.weight"].reshape(-1, *down.shape[1:]).to(down.device, down.dtype),
                (tensors[f"{module_name}.lora_B.weight"] * scale).reshape(up.shape[0], -1, *up.shape[2:])
                .to(up.device, up.dtype),
            )
        return factors

    def write(self, key: tuple, weighted: list[tuple[str, Factors, float]]) -> None:
        """Make the slot the sum of `weighted` (name, factors, weight); `key` identifies the set so an unchanged
        set is not written again."""
        if key == self._written:
            return
        total = sum(_rank(factors) for _, factors, weight in weighted if weight != 0)
        if total > self.rank:
            names = ", ".join(name for name, _, _ in weighted)
            raise ValueError(
                f"LoRA {names}: their ranks add up to {total}, over the compiled U-Net's LoRA rank limit "
                f"{self.rank} (raise --lora-rank)"
            )
        targets, sources, used = [], [], {}  # used: a layer's rank taken by the LoRAs before
        with torch.no_grad():
            for _, factors, weight in weighted:
                if weight == 0 or not factors:
                    continue
                names = list(factors)
                ups = torch._foreach_mul([factors[name][1] for name in names], weight)
                for name, up in zip(names, ups):
                    down, start = factors[name][0], used.get(name, 0)
                    end = used[name] = start + down.shape[0]
                    slot_down, slot_up = self._slot[name]
                    targets += [slot_down[start:end], slot_up[:, start:end]]
                    sources += [down, up]
            torch._foreach_zero_([tensor for pair in self._slot.values() for tensor in pair])
            if targets:
                torch._foreach_copy_(targets, sources)
        self._written = key

    def _zeros(self) -> dict[str, torch.Tensor]:
        """The slot's first state: every layer at the full rank, all zeros."""
        weight = next(self.unet.parameters())
        state = {}
        for name, module in self.modules.items():
            width_in, width_out = _shape(module)
            state[f"{name}.lora_A.weight"] = _as_layer(torch.zeros(self.rank, width_in, dtype=weight.dtype), module)
            state[f"{name}.lora_B.weight"] = _as_layer(torch.zeros(width_out, self.rank, dtype=weight.dtype), module)
        return state


def _shape(module) -> tuple[int, int] | None:
    module = getattr(module, "base_layer", module)
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1):  # SD 1.x proj_in / proj_out
        return module.in_channels, module.out_channels
    return None


def _as_layer(matrix: torch.Tensor, module) -> torch.Tensor:
    """A 1x1 convolution's LoRA factors carry two trailing unit dimensions."""
    return matrix[:, :, None, None] if isinstance(getattr(module, "base_layer", module), torch.nn.Conv2d) else matrix


def _rank(factors: Factors) -> int:
    return max((down.shape[0] for down, _ in factors.values()), default=0)

