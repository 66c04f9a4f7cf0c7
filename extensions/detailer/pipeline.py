"""The detailer's passes, inside the job's own call (the same queue slot, the model lock held): the request's
pipeline (hires fix's two passes, ControlNet's, ...) makes its pictures; then, unit by unit, each detection of each
picture is inpainted "only masked" at the job's size (the model's native one, unless the unit asks for another)
through the manager's own inpaint pipeline with the extensions' hooks (the job's LoRAs, prompt syntax, VAE, tiling),
and pasted back through its blurred mask, so every pixel outside the detections stays as it was. The step callback
counts the passes' steps too."""

from __future__ import annotations

from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image

from extensions.detailer.detection import masks
from extensions.detailer.fields import DetailerPart, DetailerUnit, detail_prompt
from extensions.inpaint import InpaintOptions, InpaintPlan
from models.manager import Interrupted
from models.passes import Passes
from models.request import GenerationRequest
from models.step_conditioning import scheduled

# The parts a detail pass keeps: those that shape the model and the text encoding. The others shape the job itself
# (its passes, maps, geometry, noise), which a detail pass does not repeat. Those a prompt makes (LoRA's tags) come
# from the pass's own prompt, as ADetailer's pass takes them: a face LoRA in the unit's prompt acts on the face only.
KEPT_PARTS = ("prompts", "vae", "tiling")


class Detailing(Passes):
    def __init__(self, first, part: DetailerPart, request: GenerationRequest, manager, prompt_parts,
                 annotator_dir=None):
        """`prompt_parts`: the parts a prompt's own syntax makes (Services.prompt_parts)."""
        super().__init__(first)
        self.part, self.request, self.manager = part, request, manager
        self.annotator_dir = annotator_dir  # where the detectors' files are
        self.prompt_parts = prompt_parts

    def __call__(self, callback_on_step_end=None, **arguments):
        steps = {"done": 0}  # the steps of the job so far: where each pass's count starts

        def counting(pipe, step: int, timestep, tensors: dict) -> dict:
            before, _ = getattr(pipe, "progress", (0, 0))
            steps["done"] = before + step + 1
            return tensors if callback_on_step_end is None else callback_on_step_end(pipe, step, timestep, tensors)

        if self.part.skip_pass:  # ADetailer's "skip img2img": the input picture itself, at the job's size
            size = (self.request.width, self.request.height)
            pictures = [self.request.image.convert("RGB").resize(size, Image.LANCZOS)] * len(arguments["generator"])
        else:
            pictures = list(self.first(**arguments, callback_on_step_end=counting).images)
        seeds = [generator.initial_seed() for generator in arguments["generator"]]
        for number, unit in enumerate(self.part.units):
            for index, picture in enumerate(pictures):
                if self.manager.stopping:
                    return StableDiffusionPipelineOutput(pictures, None)
                found = masks(picture, unit, self.annotator_dir)
                if not found:
                    self.part.notes.append(f"ADetailer unit {number} ({unit.ad_model}) found nothing in image "
                                           f"{index + 1}: it is as generated")
                for detection, mask in enumerate(found):
                    remaining = (len(found) - detection - 1) * unit.pass_steps(self.request)
                    try:
                        pictures[index] = self._detail(pictures[index], mask, unit, seeds[index] + detection,
                                                       detection, steps, remaining, counting)
                    except Interrupted:  # stopped inside a pass: the pictures as they stand, not the pass's crop
                        return StableDiffusionPipelineOutput(pictures, None)
        return StableDiffusionPipelineOutput(pictures, None)

    def _detail(self, picture, mask, unit: DetailerUnit, seed: int, detection: int, steps: dict, remaining: int,
                counting):
        """`picture` with the area of `mask` inpainted by the unit's settings."""
        request = self.request
        width, height = unit.size(request)
        options = InpaintOptions(mask_blur=unit.ad_mask_blur, padding=unit.ad_inpaint_only_masked_padding,
                                 inpaint_area="Only masked" if unit.ad_inpaint_only_masked else "Whole picture")
        plan = InpaintPlan.make(picture, mask, options, width, height)
        prompt = detail_prompt(unit.ad_prompt, request.prompt, detection)
        parts = {name: part for name, part in request.parts.items() if name in KEPT_PARTS}
        parts.update((name, part) for name, part in self.prompt_parts(prompt).items() if part is not None)
        detail = GenerationRequest(
            "inpaint", prompt, detail_prompt(unit.ad_negative_prompt, request.negative_prompt, detection),
            steps=unit.steps(request), guidance_scale=unit.cfg_scale(request),
            width=plan.size[0], height=plan.size[1], sampler=request.sampler, seed=seed,
            strength=unit.ad_denoising_strength, image=plan.image, mask=plan.mask,
            parts=parts)
        pipe, arguments = self.manager.call_for(detail)
        pipe.progress = (steps["done"], remaining)
        arguments, callback = scheduled(arguments, counting)
        done = pipe(**arguments, callback_on_step_end=callback).images[0]
        if self.manager.stopping:  # the pass ended early (a compiled U-Net stops between steps): not pasted
            raise Interrupted
        return plan.paste(done)
