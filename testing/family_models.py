"""Tiny random models of the other families, in their real layouts, built here (nothing is downloaded): SDXL base,
SDXL's 9-channel inpainting model, the SDXL refiner and SD 2.x v-prediction, as diffusers folders.

Their shapes follow diffusers' own fast tests (two U-Net levels, 32 and 64 wide; text encoders 32 and 40 wide)
with the features that tell the families apart kept: SDXL's two text encoders of unequal widths (the second with a
projection, padding with "!" as OpenCLIP does) and its size conditioning ("text_time"), the refiner's one OpenCLIP
encoder and aesthetic score, SD 2.x's OpenCLIP text encoder (gelu, linear projections in the U-Net) and
v-prediction. The tokenizer is the
real CLIP vocabulary the demo model ships. Deterministic: a seed per model.

    python -m testing.family_models OUT   # writes OUT/sdxl, OUT/sdxl-inpainting, OUT/sdxl-refiner, OUT/sd2-v
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.demo.shipped import PIPELINE_DIR

TOKENIZER = PIPELINE_DIR / "tokenizer"
# The text encoders' widths: unequal, as SDXL's (768 and 1280) are, which is how a single file's loader tells them
# apart; the second's projection narrower than itself, as a transposed projection would show.
WIDTH, WIDTH_G, PROJECTION = 32, 40, 24
FAMILIES = ("sdxl", "sdxl-inpainting", "sdxl-refiner", "sd2-v")


def build(family: str, out: Path) -> Path:
    """Save the tiny `family` model as a diffusers folder in `out`; returns it."""
    builders = {"sdxl": lambda: _sdxl(4), "sdxl-inpainting": lambda: _sdxl(9), "sdxl-refiner": _refiner,
                "sd2-v": _sd2_v}
    torch.manual_seed(FAMILIES.index(family) + 20261206)
    pipe = builders[family]()
    pipe.save_pretrained(out, safe_serialization=True)
    return Path(out)


def tokenizer(pad: str | None = None):
    from transformers import CLIPTokenizer

    extra = {"pad_token": pad} if pad else {}
    return CLIPTokenizer.from_pretrained(TOKENIZER, model_max_length=77, **extra)


def text_encoder(projection: bool = False, hidden_act: str = "quick_gelu", width: int = WIDTH, layers: int = 3):
    """A random CLIP text encoder, its layer norms randomised (a chunk's mean far from 0, so A1111's emphasis
    rescale is well defined, as on a trained model)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=37, num_hidden_layers=layers,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=PROJECTION,
                            hidden_act=hidden_act)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.3 * torch.randn_like(module.weight))
                module.bias.add_(0.3 * torch.randn_like(module.bias) + 0.1)
        model.get_input_embeddings().weight.add_(0.05)
    return model


def _unet(in_channels: int, cross_attention_dim: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=cross_attention_dim,
        norm_num_groups=8, **extra)


def _vae(scaling_factor: float = 0.13025, force_upcast: bool = True):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                         block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=64,
                         scaling_factor=scaling_factor, force_upcast=force_upcast)


def _scheduler(prediction_type: str = "epsilon"):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                  timestep_spacing="leading", prediction_type=prediction_type)


def _sdxl(in_channels: int):
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    # SDXL's time ids: 6 sizes of addition_time_embed_dim, then the pooled text (the second encoder's projection)
    unet = _unet(in_channels, WIDTH + WIDTH_G, addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + PROJECTION, transformer_layers_per_block=(1, 2))
    cls = StableDiffusionXLInpaintPipeline if in_channels == 9 else StableDiffusionXLPipeline
    return cls(vae=_vae(), text_encoder=text_encoder(), text_encoder_2=text_encoder(True, "gelu", WIDTH_G),
               tokenizer=tokenizer(), tokenizer_2=tokenizer("!"), unet=unet, scheduler=_scheduler())


def _refiner():
    from diffusers import StableDiffusionXLImg2ImgPipeline

    # the refiner's time ids: 5 (sizes and the aesthetic score), then the pooled text
    unet = _unet(4, WIDTH_G, addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=5 * 8 + PROJECTION, transformer_layers_per_block=(1, 2))
    return StableDiffusionXLImg2ImgPipeline(
        vae=_vae(), text_encoder=None, text_encoder_2=text_encoder(True, "gelu", WIDTH_G), tokenizer=None,
        tokenizer_2=tokenizer("!"), unet=unet, scheduler=_scheduler(), requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False)


def _sd2_v():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=_vae(0.18215, False), text_encoder=text_encoder(hidden_act="gelu"), tokenizer=tokenizer("!"),
        unet=_unet(4, WIDTH), scheduler=_scheduler("v_prediction"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    for family in FAMILIES:
        print(build(family, out / family))


if __name__ == "__main__":
    main()
