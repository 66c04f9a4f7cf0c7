"""T2I-Adapter units over the shared U-Net (TencentARC's adapters, diffusers' `T2IAdapter`): the unit's map, made by
the same preprocessors as a ControlNet's, goes through the adapter once per size, and its features are added inside
the U-Net's down blocks (`down_intrablock_additional_residuals`) at every step within the unit's window, for the
negative and the positive half of the guidance batch alike, as diffusers' StableDiffusionAdapterPipeline does. So
every pipeline (txt2img, img2img, inpaint over either U-Net, hires fix's second pass at its own size) takes them,
through a forward pre-hook that the configurer puts on the shared U-Net for the call and the restorer takes off."""

from __future__ import annotations

import torch
from diffusers.pipelines.t2i_adapter.pipeline_stable_diffusion_adapter import _preprocess_adapter_image

from extensions.controlnet.library import T2I_ADAPTER
from extensions.controlnet.units import ControlInput
from models.request import GenerationRequest
from models.step_conditioning import STEP_WINDOWS


def acting(units: tuple[ControlInput, ...], kinds) -> list[ControlInput]:
    return [unit for unit in units if kinds(unit.model) == T2I_ADAPTER and unit.weight > 0
            and unit.guidance_end > unit.guidance_start]


class Residuals:
    """A call's adapters and maps: their summed, weighted features at each latent size the U-Net is called with,
    added while the step is within each unit's window."""

    def __init__(self, units: list[ControlInput], adapters: list, scale_factor: int):
        self.units, self.adapters, self.scale_factor = units, adapters, scale_factor
        self._features: dict[tuple, list[torch.Tensor]] = {}
        self.acting = [True] * len(units)

    def at(self, fraction: float) -> None:
        self.acting = [unit.guidance_start <= fraction <= unit.guidance_end for unit in self.units]

    def inject(self, unet, args: tuple, kwargs: dict):
        if not any(self.acting):
            return None
        sample = args[0] if args else kwargs["sample"]
        features = self.features(sample.shape[-2:], sample.device, sample.dtype)
        repeat = sample.shape[0] // features[0].shape[0]
        kwargs = {**kwargs, "down_intrablock_additional_residuals": [level.repeat(repeat, 1, 1, 1)
                                                                     for level in features]}
        return args, kwargs

    def features(self, latent_size, device, dtype) -> list[torch.Tensor]:
        key = (tuple(latent_size), tuple(self.acting))
        if key not in self._features:
            height, width = (side * self.scale_factor for side in latent_size)
            total = None
            for unit, adapter, acting in zip(self.units, self.adapters, self.acting):
                if not acting:
                    continue
                picture = unit.image.convert("L" if adapter.config.in_channels == 1 else "RGB")
                pixels = _preprocess_adapter_image(picture, height, width).to(adapter.device, adapter.dtype)
                with torch.no_grad():
                    levels = [level * float(unit.weight) for level in adapter(pixels)]
                total = levels if total is None else [a + b for a, b in zip(total, levels)]
            self._features[key] = [level.to(device, dtype) for level in total]
        return self._features[key]


class T2IAdapters:
    """The configurer, hook and restorer of T2I-Adapter units; `cache` loads the adapters."""

    def __init__(self, cache, kinds, part: str):
        self.cache, self.kinds, self.part = cache, kinds, part
        self.residuals: Residuals | None = None
        self._handle = None

    def units(self, request: GenerationRequest) -> list[ControlInput]:
        part = request.part(self.part)
        return acting(part.maps, self.kinds) if part is not None else []

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
        self.residuals = Residuals(units, adapters, shared.vae_scale_factor)
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
