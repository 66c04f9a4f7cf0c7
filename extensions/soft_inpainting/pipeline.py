"""Soft inpainting around the request's inpaint pipeline (whichever the other hooks chose: ControlNet's too), as one
pipeline to the manager. It reads each image's picture and grey mask from the call's own arguments, so requests
joined into one call each keep theirs; a 4-channel U-Net's pipeline is given a white mask, so that its own hard
blend (at 0.5) leaves the latents to this one."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image

from extensions.soft_inpainting.blend import blend, composite, composite_weights, sigma_of, step_mask
from extensions.soft_inpainting.fields import SoftSettings
from models.latents import encode
from models.passes import Passes


class SoftInpainting(Passes):
    passes_through = True  # its call is its first pipeline's, `denoising_end` included (the refiner takes over)

    def __init__(self, first, settings: SoftSettings):
        super().__init__(first)
        self.settings = settings

    def __call__(self, callback_on_step_end=None, output_type: str = "pil", **arguments):
        pipe, settings = self.first, self.settings
        width, height = arguments["width"], arguments["height"]
        pictures = [picture.convert("RGB").resize((width, height), Image.LANCZOS) for picture in arguments["image"]]
        masks = [mask.convert("L").resize((width, height), Image.BILINEAR) for mask in arguments["mask_image"]]
        original = encode(pipe, pictures, width, height).float()
        pixel_masks = torch.from_numpy(np.stack([np.asarray(mask, np.float32) / 255 for mask in masks]))[:, None]
        latent_masks = torch.nn.functional.interpolate(pixel_masks, size=original.shape[-2:], mode="area")
        latent_masks = latent_masks.to(original.device)
        # the original's noise at each step's level: seeded per image, as everything else
        noise = torch.cat([torch.randn(original.shape[1:], generator=torch.Generator("cpu").manual_seed(
            generator.initial_seed()))[None] for generator in arguments["generator"]]).to(original)
        if pipe.unet.config.in_channels == 4:
            arguments = {**arguments, "mask_image": [Image.new("L", (width, height), 255)] * len(masks)}

        def blended(step_pipe, step: int, timestep, tensors: dict) -> dict:
            latents = tensors["latents"]
            timesteps = step_pipe.scheduler.timesteps[-step_pipe.num_timesteps:]
            # the original noised to the level the next step starts from
            target = original if step + 1 == len(timesteps) else \
                step_pipe.scheduler.add_noise(original, noise, timesteps[step + 1].reshape(1))
            # held by the level this step started from, as A1111 does (so the last step still holds some)
            weight = step_mask(latent_masks, sigma_of(step_pipe.scheduler, timestep), settings)
            tensors = {**tensors, "latents": blend(target, latents.float(), weight,
                                                   settings.transition_contrast_boost).to(latents.dtype)}
            return tensors if callback_on_step_end is None else callback_on_step_end(step_pipe, step, timestep, tensors)

        latents = pipe(**arguments, output_type="latent", callback_on_step_end=blended).images
        if output_type == "latent":  # a pass after it (the refiner's) goes on from the blended latents
            return StableDiffusionPipelineOutput(latents, None)
        weights = composite_weights(original, latents.float(), latent_masks, settings).cpu()
        generated = torch.from_numpy(np.stack([np.asarray(picture, np.float32) for picture in self.decode(latents)]))
        kept = torch.from_numpy(np.stack([np.asarray(picture, np.float32) for picture in pictures]))
        mixed = composite(kept.permute(0, 3, 1, 2), generated.permute(0, 3, 1, 2), weights, pixel_masks)
        images = [Image.fromarray(image) for image in mixed.permute(0, 2, 3, 1).numpy().astype(np.uint8)]
        return StableDiffusionPipelineOutput(images, None)
