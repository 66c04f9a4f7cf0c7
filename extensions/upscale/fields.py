"""The upscale slice's fields: hires fix's (A1111's names; txt2img), and an upscale's (the Extras tab, /upscale,
/sdapi/v1/extra-single-image)."""

from __future__ import annotations

from models.fields import Field
from models.request import SAMPLER, STEPS, WIDTH
from models.sampler_names import SAMPLER_NAMES

SAME_SAMPLER = "Use same sampler"  # A1111's hires sampler choice for "the first pass's"
SCALE_RANGE = (1.0, 4.0)

ENABLE_HR = Field("enable_hr", "switch", False, label="Hires. fix: upscale, then refine with img2img",
                  rest="enable_hr", help="make the picture at width x height, upscale it, then refine it")
HR_SCALE = Field("hr_scale", "number", 2.0, minimum=SCALE_RANGE[0], maximum=SCALE_RANGE[1], step=0.05,
                 label="Upscale by", rest="hr_scale", infotext="Hires upscale", help="the second pass's size factor")
HR_UPSCALER = Field("hr_upscaler", "choice", "Latent", label="Upscaler", rest="hr_upscaler",
                    infotext="Hires upscaler",
                    help="Latent (and its interpolation modes), Lanczos, Nearest, None, or an upscaler model by name")
HR_SECOND_PASS_STEPS = Field("hr_second_pass_steps", "whole", 0, minimum=0, maximum=STEPS.maximum, step=1,
                             label="Hires steps", rest="hr_second_pass_steps", infotext="Hires steps",
                             help="0: as many as Sampling steps")
HR_DENOISING_STRENGTH = Field("hr_denoising_strength", "number", 0.7, minimum=0, maximum=1, step=0.01,
                              label="Denoising strength", rest="denoising_strength", infotext="Denoising strength",
                              help="of the second pass; 0: none (the upscaled picture, as A1111 takes it)")
HR_RESIZE_X = Field("hr_resize_x", "whole", 0, minimum=0, maximum=WIDTH.maximum, step=8, label="Resize width to",
                    rest="hr_resize_x", infotext="Hires resize", help="0: by Upscale by (or the ratio)")
HR_RESIZE_Y = Field("hr_resize_y", "whole", 0, minimum=0, maximum=WIDTH.maximum, step=8, label="Resize height to",
                    rest="hr_resize_y", infotext="Hires resize", help="both set: cover, then crop")
HR_PROMPT = Field("hr_prompt", "text", "", label="Hires prompt", rest="hr_prompt", infotext="Hires prompt",
                  help="the second pass's prompt; empty: the prompt")
HR_NEGATIVE_PROMPT = Field("hr_negative_prompt", "text", "", label="Hires negative prompt", rest="hr_negative_prompt",
                           infotext="Hires negative prompt", help="the second pass's; empty: the negative prompt")
HR_SAMPLER_NAME = Field("hr_sampler_name", "choice", SAME_SAMPLER, choices=(SAME_SAMPLER, *SAMPLER_NAMES),
                        label="Hires sampler", rest="hr_sampler_name", infotext="Hires sampler",
                        help=f"{SAME_SAMPLER}: the first pass's")
# the accordion's inputs and gradio_client's /txt2img keywords, in this order
HIRES_FIELDS = (ENABLE_HR, HR_SCALE, HR_UPSCALER, HR_SECOND_PASS_STEPS, HR_DENOISING_STRENGTH, HR_RESIZE_X,
                HR_RESIZE_Y, HR_PROMPT, HR_NEGATIVE_PROMPT, HR_SAMPLER_NAME)
HR_SCHEDULER = Field("hr_scheduler", "choice", "automatic", choices=("automatic", "karras"), rest="hr_scheduler",
                     help=f"with hr_sampler_name, as {SAMPLER.label}'s scheduler")

# an upscale of a picture
UPSCALER = Field("upscaler", "choice", "Lanczos", label="Upscaler",
                 help="Lanczos, Nearest, None, or an upscaler model by name (GET /sdapi/v1/upscalers)")
SCALE = Field("scale", "number", 2.0, minimum=SCALE_RANGE[0], maximum=SCALE_RANGE[1], step=0.5, label="Scale by",
              help="the result's size factor")
# A1111's /sdapi/v1/extra-single-image body
EXTRAS_BODY = (
    Field("image", "image", rest="image", help="base64-encoded"),
    Field("resize_mode", "whole", 0, minimum=0, maximum=1, rest="resize_mode",
          help="0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h"),
    Field("upscaling_resize", "number", 2.0, minimum=SCALE_RANGE[0], maximum=SCALE_RANGE[1], rest="upscaling_resize",
          help=SCALE.help),
    Field("upscaling_resize_w", "whole", 512, minimum=1, rest="upscaling_resize_w", help="pixels"),
    Field("upscaling_resize_h", "whole", 512, minimum=1, rest="upscaling_resize_h", help="pixels"),
    Field("upscaler_1", "text", "None", rest="upscaler_1", help=UPSCALER.help),
)
EXTRAS_BATCH_BODY = (
    Field("imageList", "list", rest="imageList", help="the images, each {\"data\": base64, \"name\": ...}"),
    *EXTRAS_BODY[1:],
)
