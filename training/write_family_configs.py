"""Write the component configs (no weights) of the SD 2.x and SDXL families to models/configs/, so a single-file
checkpoint of them loads offline. The values are the published models' (stabilityai/stable-diffusion-2-1-base,
-2-1, -2-inpainting, stable-diffusion-xl-base-1.0, -xl-refiner-1.0, diffusers/stable-diffusion-xl-1.0-inpainting-0.1);
tests/test_families.py checks each against the real model's parameter count. The tokenizers are not copied: every
family reads CLIP's vocabulary from models/configs/sd15/tokenizer (OpenCLIP's tokenizers pad with "!").

    python -m training.write_family_configs
"""

from __future__ import annotations

import json
import shutil

from models.families import CONFIGS_DIR

_SD_BLOCKS = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
              "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
              "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
SD2_UNET = {**_SD_BLOCKS, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
            "use_linear_projection": True, "sample_size": 64}
SDXL_UNET = {"block_out_channels": [320, 640, 1280], "layers_per_block": 2,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
             "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
             "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816, "sample_size": 128}
REFINER_UNET = {"block_out_channels": [384, 768, 1536, 1536], "layers_per_block": 2,
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                "attention_head_dim": [6, 12, 24, 24], "transformer_layers_per_block": 4,
                "cross_attention_dim": 1280, "use_linear_projection": True, "addition_embed_type": "text_time",
                "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2560, "sample_size": 128}
VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
       "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
       "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu"}
CLIP_L = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": 768,
          "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "quick_gelu",
          "projection_dim": 768, "max_position_embeddings": 77, "vocab_size": 49408, "layer_norm_eps": 1e-5,
          "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
# SD 2.x's OpenCLIP ViT-H: 24 layers, of which SD 2.x uses 23 (its "penultimate" layer, through the final norm)
OPEN_CLIP_H = {**CLIP_L, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
               "num_attention_heads": 16, "hidden_act": "gelu", "projection_dim": 512}
OPEN_CLIP_G = {**CLIP_L, "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280,
               "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20, "hidden_act": "gelu",
               "projection_dim": 1280}
_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "steps_offset": 1, "timestep_spacing": "leading", "set_alpha_to_one": False, "clip_sample": False}
DDIM = {"_class_name": "DDIMScheduler", **_SCHEDULE, "prediction_type": "epsilon"}
EULER = {"_class_name": "EulerDiscreteScheduler", **_SCHEDULE, "prediction_type": "epsilon",
         "interpolation_type": "linear", "use_karras_sigmas": False}


def index(pipeline: str, parts: dict, **options) -> dict:
    """model_index.json: the pipeline class and each part's (library, class), as diffusers saves it."""
    classes = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
               "text_encoder": ("transformers", "CLIPTextModel"),
               "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
               "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "CLIPTokenizer")}
    names = [relative.split("/")[0] for relative in parts if "/" in relative]
    names += [f"tokenizer{name.removeprefix('text_encoder')}" for name in names if name.startswith("text_encoder")]
    listed = {name: list(classes[name]) for name in names if name in classes}
    listed["scheduler"] = ["diffusers", parts["scheduler/scheduler_config.json"]["_class_name"]]
    return {"_class_name": pipeline, **options, **listed}


def unet(config: dict, in_channels: int = 4) -> dict:
    return {"_class_name": "UNet2DConditionModel", **config, "in_channels": in_channels, "out_channels": 4}


def sd2(in_channels: int = 4, v: bool = False) -> dict:
    side = 96 if v else 64
    parts = {"unet/config.json": unet({**SD2_UNET, "sample_size": side}, in_channels),
            "vae/config.json": {"_class_name": "AutoencoderKL", **VAE, "sample_size": side * 8,
                                "scaling_factor": 0.18215},
            "text_encoder/config.json": OPEN_CLIP_H,
            "scheduler/scheduler_config.json": {**DDIM, "prediction_type": "v_prediction" if v else "epsilon"}}
    pipeline = "StableDiffusionInpaintPipeline" if in_channels == 9 else "StableDiffusionPipeline"
    return {"model_index.json": index(pipeline, parts, requires_safety_checker=False, safety_checker=[None, None],
                                      feature_extractor=[None, None]), **parts}


def sdxl(in_channels: int = 4) -> dict:
    parts = {"unet/config.json": unet(SDXL_UNET, in_channels),
            "vae/config.json": {"_class_name": "AutoencoderKL", **VAE, "sample_size": 1024,
                                "scaling_factor": 0.13025, "force_upcast": True},
            "text_encoder/config.json": CLIP_L,
             "text_encoder_2/config.json": OPEN_CLIP_G,
             "scheduler/scheduler_config.json": EULER}
    pipeline = "StableDiffusionXLInpaintPipeline" if in_channels == 9 else "StableDiffusionXLPipeline"
    return {"model_index.json": index(pipeline, parts, force_zeros_for_empty_prompt=True, image_encoder=[None, None],
                                      feature_extractor=[None, None]), **parts}


def refiner() -> dict:
    parts = {"unet/config.json": unet(REFINER_UNET), "vae/config.json": sdxl()["vae/config.json"],
             "text_encoder_2/config.json": OPEN_CLIP_G, "scheduler/scheduler_config.json": EULER}
    return {"model_index.json": index("StableDiffusionXLImg2ImgPipeline", parts, force_zeros_for_empty_prompt=False,
                                      requires_aesthetics_score=True, text_encoder=[None, None],
                                      tokenizer=[None, None], image_encoder=[None, None],
                                      feature_extractor=[None, None]), **parts}


CONFIGS = {"sd2": sd2(), "sd2-inpainting": sd2(9), "sd2-v": sd2(v=True), "sdxl": sdxl(),
           "sdxl-inpainting": sdxl(9), "sdxl-refiner": refiner()}


def main() -> None:
    for name, files in CONFIGS.items():
        folder = CONFIGS_DIR / name
        shutil.rmtree(folder, ignore_errors=True)
        for relative, config in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        print(folder)


if __name__ == "__main__":
    main()
