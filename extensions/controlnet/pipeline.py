"""ControlNet over the shared model: a request with units runs on a ControlNet pipeline derived from the request's
own pipeline view with `from_pipe(controlnet=...)`, so the U-Net, VAE and text encoder are the same objects; a
request without units runs the plain pipeline and pays nothing.

Every request's units go through one `UnitControlNets` (diffusers' MultiControlNet, even for one unit), which adds
A1111's per-unit control modes: "My prompt is more important" scales the ControlNet's outputs down towards the
shallow layers (sd-webui-controlnet's soft injection; diffusers computes the same 0.1-to-1 scales in guess mode);
"ControlNet is more important" also applies it to the conditional half of the batch only, which is diffusers'
`guess_mode` as a whole, so it cannot be mixed with the other modes in one request.
"""

from __future__ import annotations

import torch
from diffusers import (
    DiffusionPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from extensions.controlnet.cache import ControlNetCache
from extensions.controlnet.inpaint_maps import control_tensor
from extensions.controlnet.library import CONTROLNET, ControlNetLibrary
from extensions.controlnet.regions import weights_like
from extensions.controlnet.units import CONTROL_FIRST, PROMPT_FIRST
from models.request import GenerationRequest

CONTROL_PIPELINES = {  # the pipeline a request runs on -> its ControlNet counterpart
    StableDiffusionPipeline: StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline: StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionInpaintPipeline: StableDiffusionControlNetInpaintPipeline,
    StableDiffusionXLPipeline: StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline: StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline: StableDiffusionXLControlNetInpaintPipeline,
}
# The txt2img ControlNet pipelines take the control images as `image`; the others as `control_image`.
TAKES_IMAGE = (StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline)


class UnitControlNets(MultiControlNetModel):
    """MultiControlNet whose units may each use soft injection (`soft[i]`: the guess-mode layer scales) and act only
    within an effective region (`regions[i]`, None: everywhere)."""

    def __init__(self, controlnets: list, soft: list[bool], regions: list | None = None):
        super().__init__(controlnets)
        self.soft = list(soft)
        self.regions = list(regions) if regions is not None else [None] * len(controlnets)
        self._weights: dict[tuple, torch.Tensor] = {}  # (unit, height, width) -> its region's weights

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                guess_mode: bool = False, return_dict: bool = True, **kwargs):
        if kwargs.get("added_cond_kwargs"):
            kwargs["added_cond_kwargs"] = self._one_pooled_vector(kwargs["added_cond_kwargs"])
        down, mid = None, None
        for index, (image, scale, soft, controlnet) in enumerate(zip(controlnet_cond, conditioning_scale, self.soft,
                                                                     self.nets)):
            unit_down, unit_mid = controlnet(
                sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=image,
                conditioning_scale=scale, guess_mode=guess_mode or soft, return_dict=False, **kwargs,
            )
            if self.regions[index] is not None:
                unit_down = [self._in_region(index, residual) for residual in unit_down]
                unit_mid = self._in_region(index, unit_mid)
            if down is None:
                down, mid = list(unit_down), unit_mid
            else:
                down = [total + part for total, part in zip(down, unit_down)]
                mid = mid + unit_mid
        return down, mid

    def _one_pooled_vector(self, added: dict) -> dict:
        """SDXL's pooled vectors as a ControlNet takes them. With AND they come side by side, one per part
        (extensions/prompts/composable.py): the ControlNet, which sees every part's tokens at once, gets their
        mean."""
        pooled, config = added.get("text_embeds"), self.nets[0].config
        if pooled is None or "time_ids" not in added or not config.projection_class_embeddings_input_dim:
            return added
        width = config.projection_class_embeddings_input_dim - added["time_ids"].shape[1] * \
            config.addition_time_embed_dim
        if pooled.shape[1] <= width:
            return added
        return {**added, "text_embeds": pooled.reshape(pooled.shape[0], -1, width).mean(dim=1)}

    def _in_region(self, index: int, residual: torch.Tensor) -> torch.Tensor:
        key = (index, *residual.shape[-2:])
        if key not in self._weights:
            self._weights[key] = weights_like(self.regions[index], residual)
        return residual * self._weights[key]


class ControlNets:
    """The ControlNet library and the cache of loaded models, and the manager hook that applies a request's units."""

    def __init__(self, library: ControlNetLibrary, cache: ControlNetCache, max_units: int = 3,
                 family: str = "SD 1.x"):
        self.library = library
        self.cache = cache
        self.max_units = max_units
        self.family = family  # the base model's, named when a ControlNet of another is refused

    def hook(self, pipe: DiffusionPipeline, request: GenerationRequest, arguments: dict, parameters: dict) -> tuple:
        maps = request.part("controlnet").maps if request.part("controlnet") is not None else ()
        if len(maps) > self.max_units:
            raise ValueError(f"controlnet units: at most {self.max_units} at once, got {len(maps)}")
        # A unit whose guidance window is empty acts on no step (diffusers refuses start == end): leave it out.
        # IP-Adapter and T2I-Adapter units act through their own hooks (image_prompts.py, t2i_adapters.py).
        units = [unit for unit in maps if unit.guidance_end > unit.guidance_start
                 and self.library.model_kind(unit.model) == CONTROLNET]
        if not units:
            return pipe, arguments
        modes = {unit.control_mode for unit in units}
        if CONTROL_FIRST in modes and len(modes) > 1:
            raise ValueError(
                f"controlnet units: {CONTROL_FIRST!r} applies to the whole batch in diffusers, so every unit of the "
                f"request must use it or none; got {', '.join(sorted(modes))}"
            )
        if "masked_image_latents" in arguments:
            raise ValueError("ControlNet cannot be combined with masked content 'latent noise' or 'latent nothing' yet")
        width = pipe.unet.config.cross_attention_dim
        nets = [self.cache.get(unit.model, cross_attention_dim=width, family=self.family) for unit in units]
        controlnet = UnitControlNets(nets, [unit.control_mode == PROMPT_FIRST for unit in units],
                                     [unit.region for unit in units])
        control_class = CONTROL_PIPELINES[type(pipe)]
        control_pipe = control_class.from_pipe(pipe, controlnet=controlnet)
        # an inpaint map (its hole transparent) goes in as a tensor: -1 in the hole, as the ControlNet was trained
        images = [control_tensor(unit.image) if unit.image.mode == "RGBA" else unit.image.convert("RGB")
                  for unit in units]
        control_key = "image" if control_class in TAKES_IMAGE else "control_image"
        arguments = {
            **arguments,
            control_key: images,
            "controlnet_conditioning_scale": [float(unit.weight) for unit in units],
            "control_guidance_start": [float(unit.guidance_start) for unit in units],
            "control_guidance_end": [float(unit.guidance_end) for unit in units],
            "guess_mode": CONTROL_FIRST in modes,
        }
        return control_pipe, arguments
