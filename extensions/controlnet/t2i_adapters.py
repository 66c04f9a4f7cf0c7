"""T2I-Adapter units over the shared U-Net (TencentARC's adapters, diffusers' `T2IAdapter`): the unit's map, made by
the same preprocessors as a ControlNet's, goes through the adapter once per size, and its features are added inside
the U-Net's down blocks (`down_intrablock_additional_residuals`) at every step within the unit's window, for the
negative and the positive half of the guidance batch alike, as diffusers' StableDiffusionAdapterPipeline does. So
every pipeline (txt2img, img2img, inpaint over either U-Net, hires fix's second pass at its own size) takes them,
through a forward pre-hook that the configurer puts on the shared U-Net for the call and the restorer takes off.

Control modes as for a ControlNet unit: "My prompt is more important" scales the features from 0.1 at the shallowest
level to 1 at the deepest (the soft injection's scales); "ControlNet is more important" also gives the guidance
batch's negative half none of them.

A T2I-Adapter is a diffusers folder, or one `.safetensors` in TencentARC's original layout (sd-webui-controlnet's
`t2iadapter_canny_sd15v2`: `conv_in.*`, `body.N.{in_conv,block1,block2}.*`), whose config is read off its shapes.
"""

from __future__ import annotations

import math

import torch
from diffusers.pipelines.t2i_adapter.pipeline_stable_diffusion_adapter import _preprocess_adapter_image

from extensions.controlnet.library import T2I_ADAPTER
from extensions.controlnet.regions import weights_like
from extensions.controlnet.units import BALANCED, CONTROL_FIRST, AdapterUnits, ControlInput
from models.request import GenerationRequest
from models.step_conditioning import STEP_WINDOWS


def from_original(tensors: dict[str, torch.Tensor], name: str):
    """A T2IAdapter from TencentARC's original full-adapter keys: level i's block j is `body.{i * blocks + j}`
    (diffusers' `adapter.body.i.resnets.j`), a level whose width changes opens with `in_conv`."""
    from diffusers import T2IAdapter

    tensors = {key.removeprefix("adapter."): value for key, value in tensors.items()}
    numbers = sorted({int(key.split(".")[1]) for key in tensors if key.startswith("body.")})
    if "conv_in.weight" not in tensors or not numbers or any(".skep." in key for key in tensors):
        raise ValueError(f"T2I-Adapter file {name}: not a full adapter in TencentARC's layout (conv_in, "
                         "body.N.block1/block2/in_conv); light, style and skip-connection adapters are not supported")
    widened = [number for number in numbers if f"body.{number}.in_conv.weight" in tensors]
    blocks = widened[0] if widened else 2  # the blocks of a level: where the second level opens (TencentARC: 2)
    if len(numbers) % blocks:
        raise ValueError(f"T2I-Adapter file {name}: {len(numbers)} blocks do not make levels of {blocks}")
    channels = [tensors[f"body.{level * blocks}.block1.weight"].shape[0] for level in range(len(numbers) // blocks)]
    in_channels, factor = _unshuffled(tensors["conv_in.weight"].shape[1])
    adapter = T2IAdapter(in_channels=in_channels, channels=channels, num_res_blocks=blocks,
                         downscale_factor=factor, adapter_type="full_adapter")
    renamed = {}
    for key, value in tensors.items():
        if key.startswith("body."):
            _, number, rest = key.split(".", 2)
            level, block = divmod(int(number), blocks)
            key = f"body.{level}.{rest}" if rest.startswith("in_conv.") else f"body.{level}.resnets.{block}.{rest}"
        renamed[f"adapter.{key}"] = value
    try:
        adapter.load_state_dict(renamed, strict=True)
    except RuntimeError as error:
        raise ValueError(f"T2I-Adapter file {name}: its tensors do not fit a full adapter of channels {channels} "
                         f"({str(error).splitlines()[0][:200]})") from None
    return adapter


def _unshuffled(width: int) -> tuple[int, int]:
    """(the picture's channels, the unshuffle factor) of a conv_in taking `width` values a position: an RGB picture
    (3 x factor^2; SD's adapters: 3 x 64) or a grey one (a sketch adapter's factor^2)."""
    for channels in (3, 1):
        factor = math.isqrt(width // channels)
        if width % channels == 0 and factor * factor * channels == width:
            return channels, factor
    raise ValueError(f"a T2I-Adapter's conv_in takes {width} channels: neither 3 nor 1 times a square")


class Residuals:
    """A call's adapters and maps: their summed, weighted features at each latent size the U-Net is called with,
    added while the step is within each unit's window."""

    def __init__(self, units: list[ControlInput], adapters: list, scale_factor: int, guided: bool):
        self.units, self.adapters, self.scale_factor, self.guided = units, adapters, scale_factor, guided
        self._features: dict[tuple, tuple] = {}  # (latent size, acting units) -> (both halves', positive half's)
        self._unit_levels: dict[tuple, list[torch.Tensor]] = {}  # (unit, latent size) -> its features
        self.acting = [True] * len(units)

    def at(self, fraction: float) -> None:
        self.acting = [unit.guidance_start <= fraction <= unit.guidance_end for unit in self.units]

    def inject(self, unet, args: tuple, kwargs: dict):
        if not any(self.acting):
            return None
        sample = args[0] if args else kwargs["sample"]
        both, positive_only = self.features(sample.shape[-2:], sample.device, sample.dtype)
        half = sample.shape[0] // 2 if self.guided else 0
        residuals = [torch.cat([together.expand(half, -1, -1, -1),
                                (together + alone).expand(sample.shape[0] - half, -1, -1, -1)])
                     for together, alone in zip(both, positive_only)]
        return args, {**kwargs, "down_intrablock_additional_residuals": residuals}

    def features(self, latent_size, device, dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The acting units' summed features at this latent size, [1, ...] per level: those for both halves of the
        guidance batch, and those for its positive half only (CONTROL_FIRST's)."""
        key = (tuple(latent_size), tuple(self.acting))
        if key not in self._features:
            both, alone = None, None
            for index, (unit, acting) in enumerate(zip(self.units, self.acting)):
                if not acting:
                    continue
                levels = self._levels(index, tuple(latent_size))
                if unit.control_mode == CONTROL_FIRST and self.guided:
                    alone = levels if alone is None else [a + b for a, b in zip(alone, levels)]
                else:
                    both = levels if both is None else [a + b for a, b in zip(both, levels)]
            zeros = [torch.zeros_like(level) for level in both or alone]
            self._features[key] = ([level.to(device, dtype) for level in both or zeros],
                                   [level.to(device, dtype) for level in alone or zeros])
        return self._features[key]

    def _levels(self, index: int, latent_size: tuple[int, int]) -> list[torch.Tensor]:
        """Unit `index`'s adapter features at this latent size, weighted (and scaled by level but in Balanced):
        the adapter runs once per unit and size, whichever units act with it."""
        key = (index, latent_size)
        if key not in self._unit_levels:
            unit, adapter = self.units[index], self.adapters[index]
            height, width = (side * self.scale_factor for side in latent_size)
            picture = unit.image.convert("L" if adapter.config.in_channels == 1 else "RGB")
            pixels = _preprocess_adapter_image(picture, height, width).to(adapter.device, adapter.dtype)
            with torch.no_grad():
                levels = adapter(pixels)
            scales = torch.logspace(-1, 0, len(levels)).tolist() if unit.control_mode != BALANCED else \
                [1.0] * len(levels)
            levels = [level * float(unit.weight) * scale for level, scale in zip(levels, scales)]
            if unit.region is not None:  # its effective region, at each level's size
                levels = [level * weights_like(unit.region, level) for level in levels]
            self._unit_levels[key] = levels
        return self._unit_levels[key]


class T2IAdapters(AdapterUnits):
    """The configurer, hook and restorer of T2I-Adapter units; `cache` loads the adapters."""

    kind = T2I_ADAPTER

    def __init__(self, cache, kinds, part: str):
        super().__init__(cache, kinds, part)
        self.residuals: Residuals | None = None
        self._handle = None

    def configure(self, shared, request: GenerationRequest) -> dict:
        units = self.units(request)
        if not units:
            return {}
        unet = shared.unet
        adapters = [self.cache.get(unit.model) for unit in units]
        for unit, adapter in zip(units, adapters):
            channels, blocks = list(adapter.config.channels), list(unet.config.block_out_channels)
            factor = adapter.config.downscale_factor
            if len(channels) == len(blocks) and channels != blocks or factor != shared.vae_scale_factor:
                raise ValueError(f"T2I-Adapter {unit.model!r}: made for another base model: its channels are "
                                 f"{channels} at 1/{factor} of the picture's size, the U-Net's blocks {blocks} at "
                                 f"1/{shared.vae_scale_factor}")
        self.residuals = Residuals(units, adapters, shared.vae_scale_factor, self.guided(request, unet))
        self._handle = unet.register_forward_pre_hook(self.residuals.inject, with_kwargs=True)
        return {}

    def restore(self) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self.residuals = None, None

    def hook(self, pipe, request: GenerationRequest, arguments: dict, parameters: dict) -> tuple:
        if not self.units(request):
            return pipe, arguments
        if self.residuals is None:
            raise ValueError("T2I-Adapter units: this pass's adapters differ from its call's; run it on its own")
        return pipe, {**arguments, STEP_WINDOWS: [*arguments.get(STEP_WINDOWS, ()), self.residuals]}
