"""A1111's composable prompts (`a red circle AND a blue square:0.8`, after "Compositional Visual Generation with
Composable Diffusion Models"): one noise prediction per sub-prompt, combined with their weights.

The pipeline calls this U-Net as it calls its own, with the guidance batch [negative, prompt], the prompt's embeddings
holding the sub-prompts side by side along the token axis (editing.py packs them). It runs the U-Net once over
[negative, sub-prompt 1, ..., sub-prompt K] and hands back [negative's, composed] where composed = negative's +
sum of weight_i x (sub-prompt i's - negative's): the pipeline's guidance then gives A1111's
negative + scale x sum of weight_i x (sub-prompt i - negative). Without guidance (CFG 1) the sub-prompts' predictions
are averaged by their weights. Whatever else comes per image (a ControlNet's residuals, an inpainting model's
channels) is repeated for each sub-prompt. SDXL's pooled vectors (`added_cond_kwargs["text_embeds"]`) are packed as
the embeddings are, side by side, so each part is conditioned on its own, as A1111 stacks each part's "vector"."""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput


class ComposedUNet(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module, weights: list[float], guided: bool):
        super().__init__()
        self.unet, self.weights, self.guided = unet, list(weights), guided

    def __getattr__(self, name: str):
        """Everything else is the U-Net's own (its config, dtype, device, ...)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["unet"], name)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, *args, return_dict=True,
                **kwargs):
        parts = len(self.weights)
        images = sample.shape[0] // 2 if self.guided else sample.shape[0]
        length = encoder_hidden_states.shape[1] // parts
        prompts = list(encoder_hidden_states[-images:].split(length, dim=1))
        negative = [encoder_hidden_states[:images, :length]] if self.guided else []

        def repeated(value):
            """A per-image input for [negative, each sub-prompt] (the prompt's half once per sub-prompt)."""
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == sample.shape[0]:
                return torch.cat([*([value[:images]] if self.guided else []), *[value[-images:]] * parts])
            if isinstance(value, (list, tuple)):
                return type(value)(repeated(each) for each in value)
            if isinstance(value, dict):
                return {key: repeated(each) for key, each in value.items()}
            return value

        added = kwargs.pop("added_cond_kwargs", None)
        if added is not None:  # SDXL's: its pooled vectors come side by side as the embeddings do, one per part
            pooled = added.get("text_embeds")
            added = repeated(added)
            if pooled is not None:
                width = pooled.shape[1] // parts
                added["text_embeds"] = torch.cat([*([pooled[:images, :width]] if self.guided else []),
                                                  *pooled[-images:].split(width, dim=1)])
            kwargs["added_cond_kwargs"] = added
        output = self.unet(repeated(sample), repeated(timestep), torch.cat([*negative, *prompts]), *repeated(args),
                           return_dict=False, **repeated(kwargs))[0]
        predictions = output[-images * parts:].split(images)
        if self.guided:
            base = output[:images]
            composed = base + sum(weight * (prediction - base) for weight, prediction in zip(self.weights, predictions))
            output = torch.cat([base, composed])
        else:
            total = sum(self.weights) or 1.0
            output = sum(weight * prediction for weight, prediction in zip(self.weights, predictions)) / total
        return UNet2DConditionOutput(sample=output) if return_dict else (output,)
