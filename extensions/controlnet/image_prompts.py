"""IP-Adapter units over the shared U-Net: a picture as a prompt.

For a call whose requests have IP-Adapter units, the configurer puts diffusers' IP-Adapter attention processors on the
shared U-Net's cross-attention layers (its self-attention keeps its own) and the adapters' image projection as its
`encoder_hid_proj`; the manager's restorer puts back the very processor objects and projection it had after the call,
so the next request runs the U-Net as it was. The converted processors of the last few adapter sets are kept.

Each request's hook hands the pipeline its pictures' embeddings (`ip_adapter_image_embeds`, one tensor per unit: the
negatives, then the pictures'), so requests with the same adapters, weights and windows share a call, each with its
own pictures. Units act from `guidance_start` to `guidance_end` of each pass's steps (their weight is the
processors' scale, 0 outside the window). Control modes, through classifier-free guidance: "Balanced" gives the
negative half the empty picture's embedding (IP-Adapter's training, diffusers' default); "My prompt is more
important" gives it the picture's too, so guidance amplifies the prompt alone; "ControlNet is more important" gives
the negative half no image tokens at all (zeroed after the projection: the keys' and values' layers have no bias),
so guidance amplifies the picture's whole effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

from extensions.controlnet import preprocessors
from extensions.controlnet.image_encoders import MODULE_ENCODERS, ImageEncoders, missing
from extensions.controlnet.library import IP_ADAPTER
from extensions.controlnet.regions import weights
from extensions.controlnet.units import CONTROL_FIRST, PROMPT_FIRST, AdapterUnits, ControlInput
from models.lru import LRU
from models.request import GenerationRequest
from models.step_conditioning import STEP_WINDOWS


class PerImageProjection(MultiIPAdapterImageProjection):
    """diffusers repeats a call's image embeddings for each of its B images (it expects one picture for all of them);
    the hooks give one per image, so each half arrives B times over: this keeps each image's own row."""

    def __init__(self, layers: list, guided: bool):
        super().__init__(layers)
        self.halves = 2 if guided else 1

    def forward(self, image_embeds: list[torch.Tensor]) -> list[torch.Tensor]:
        return super().forward([self._own_rows(embeddings) for embeddings in image_embeds])

    def _own_rows(self, embeddings: torch.Tensor) -> torch.Tensor:
        images = math.isqrt(embeddings.shape[0] // self.halves)
        if images <= 1 or images * images * self.halves != embeddings.shape[0]:
            return embeddings
        return embeddings[[half * images * images + image for half in range(self.halves) for image in range(images)]]


class ZeroedNegatives(torch.nn.Module):
    """An image projection whose tokens for the guidance batch's negative half are zeros (CONTROL_FIRST)."""

    def __init__(self, projection: torch.nn.Module):
        super().__init__()
        self.projection = projection

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        tokens = self.projection(embeddings)
        half = tokens.shape[0] // 2
        return torch.cat([torch.zeros_like(tokens[:half]), tokens[half:]])


@dataclass
class Installed:
    """A call's adapters on the U-Net, and the step window that sets their processors' scales."""

    units: tuple[tuple, ...]  # each unit's (model, weight, start, end, control mode)
    processors: list  # the IP-Adapter processors put on the U-Net
    guided: bool

    def at(self, fraction: float) -> None:
        """sd-webui-controlnet's window: a unit acts at a step whose fraction of the pass is within it."""
        scales = [weight if start <= fraction <= end else 0.0 for _, weight, start, end, _ in self.units]
        for processor in self.processors:
            processor.scale = scales


class ImagePrompts(AdapterUnits):
    """The configurer, hook and restorer of IP-Adapter units; `cache` loads the adapters' weights (h94's state
    dicts)."""

    kind = IP_ADAPTER

    def __init__(self, cache, kinds, part: str, device="cpu", dtype=None, sets: int = 2, family: str = ""):
        super().__init__(cache, kinds, part)
        self.family = family  # the base model's, named when an adapter made for another is refused
        self.encoders = ImageEncoders(device, dtype)
        self._converted: LRU[tuple, tuple[dict, list]] = LRU(sets)  # models -> (processors by layer, projections)
        self._saved: tuple | None = None  # the U-Net's own processors, projection and its config's type
        self._unet = None
        self.installed: Installed | None = None

    # -- the call ------------------------------------------------------------------------------------------------

    def configure(self, shared, request: GenerationRequest) -> dict:
        units = self.units(request)
        if not units:
            return {}
        unet = shared.unet
        processors, projections = self._processors(unet, tuple(unit.model for unit in units))
        guided = self.guided(request, unet)
        layers = [ZeroedNegatives(layer) if unit.control_mode == CONTROL_FIRST and guided else layer
                  for unit, layer in zip(units, projections)]
        self._saved = (unet.attn_processors, unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
        self._unet = unet
        own = self._saved[0]
        unet.set_attn_processor({name: processors.get(name, processor) for name, processor in own.items()})
        unet.encoder_hid_proj = PerImageProjection(layers, guided)
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        self.installed = Installed(
            tuple((unit.model, float(unit.weight), float(unit.guidance_start), float(unit.guidance_end),
                   unit.control_mode) for unit in units),
            list(processors.values()), guided)
        self.installed.at(0.0)
        return {}

    def restore(self) -> None:
        """The U-Net's own processors (the same objects) and projection back."""
        if self._saved is None:
            return
        processors, projection, kind = self._saved
        self._unet.set_attn_processor(dict(processors))
        self._unet.encoder_hid_proj = projection
        self._unet.config.encoder_hid_dim_type = kind
        self._saved, self._unet, self.installed = None, None, None

    def hook(self, pipe, request: GenerationRequest, arguments: dict, parameters: dict) -> tuple:
        units = self.units(request)
        if not units:
            return pipe, arguments
        installed = self.installed
        if installed is None or [unit.model for unit in units] != [unit[0] for unit in installed.units]:
            raise ValueError("IP-Adapter units: this pass's adapters differ from its call's; run it on its own")
        images = len(arguments["generator"])
        embeddings = []
        for unit in units:
            positive, negative = self._embedding(unit, pipe.unet.encoder_hid_proj, len(embeddings))
            if unit.control_mode == PROMPT_FIRST:
                negative = positive
            halves = [negative] * images + [positive] * images if installed.guided else [positive] * images
            embeddings.append(torch.cat(halves))
        arguments = {**arguments, "ip_adapter_image_embeds": embeddings,
                     STEP_WINDOWS: [*arguments.get(STEP_WINDOWS, ()), installed]}
        if any(unit.region is not None for unit in units):  # each adapter's attention output, weighted by it
            masks = [weights(unit.region, request.height, request.width) if unit.region is not None else None
                     for unit in units]  # [1, the adapter's one picture, height, width]
            arguments["cross_attention_kwargs"] = {**(arguments.get("cross_attention_kwargs") or {}),
                                                   "ip_adapter_masks": masks}
        return pipe, arguments

    # -- the pieces ----------------------------------------------------------------------------------------------

    def _embedding(self, unit: ControlInput, projection, index: int):
        layer = projection.image_projection_layers[index]
        layer = layer.projection if isinstance(layer, ZeroedNegatives) else layer
        hidden = not isinstance(layer, ImageProjection)  # the "plus" ones take hidden states
        encoder = self._encoder(unit, layer, hidden)
        return self.encoders.embedding(unit.image, encoder, hidden)

    def _encoder(self, unit: ControlInput, layer, hidden: bool) -> str:
        """The unit's module's encoder, checked against the width the adapter takes (ip-adapter-auto: the one of
        that width)."""
        module = unit.module
        wanted = _input_width(layer)
        named = MODULE_ENCODERS.get(preprocessors.ALIASES.get(module, module))
        candidates = [named] if named else [name for name in ("h", "g") if missing(name) is None]
        for encoder in candidates:
            if wanted is None or self.encoders.width(encoder, hidden) == wanted:
                return encoder
        widths = ", ".join(f"{name}: {self.encoders.width(name, hidden)}" for name in candidates)
        raise ValueError(f"IP-Adapter {unit.model!r} takes image embeddings of width {wanted}; the encoders of "
                         f"module {module!r} give {widths or 'none (no encoder is here)'}")

    def _processors(self, unet, models: tuple[str, ...]) -> tuple[dict, list]:
        """The IP-Adapter processors of the cross-attention layers and the image projections of these adapters,
        converted by diffusers from h94's state dicts once per set, on the U-Net's device and dtype."""
        key = (models, unet.device, unet.dtype)
        found = self._converted.get(key)
        if found is not None:
            return found
        width = unet.config.cross_attention_dim
        weights = [self.cache.get(model, cross_attention_dim=width, family=self.family) for model in models]
        for model, state in zip(models, weights):
            if any("lora" in key for key in state["ip_adapter"]):
                raise ValueError(f"IP-Adapter {model!r} is a FaceID model (it carries a LoRA): not supported yet")
        converted = unet._convert_ip_adapter_attn_to_diffusers(weights)
        processors = {name: processor.to(unet.device, unet.dtype) for name, processor in converted.items()
                      if not name.endswith("attn1.processor")}
        projections = [unet._convert_ip_adapter_image_proj_to_diffusers(state["image_proj"]).to(unet.device, unet.dtype)
                       for state in weights]
        self._converted.put(key, (processors, projections))
        return processors, projections


def _input_width(layer) -> int | None:
    """The width of the image embedding a projection takes."""
    for name in ("image_embeds", "proj_in", "proj"):  # a plain IP-Adapter's, a "plus" one's
        module = getattr(layer, name, None)
        if isinstance(module, torch.nn.Linear):
            return module.in_features
    return None
