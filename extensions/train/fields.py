"""A LoRA training run's fields: the Train tab's controls, /train_lora's parameters and their checks."""

from __future__ import annotations

from extensions.train.trainer import UNET_LAYERS
from models.fields import Field
from models.request import MAX_SEED

MAX_STEPS = 10_000
MAX_RANK = 128

IMAGES = Field("images", "images", label="Images (with .txt captions of the same names), or a zip of them",
               help="image files, .txt captions of the same names, or .zip files of both")
NAME = Field("name", "text", "", label="LoRA name", help="the LoRA's file name in the LoRA folder (no folders)")
INSTANCE_PROMPT = Field("instance_prompt", "text", "", label="Instance prompt",
                        help="the caption of images without a caption file")
STEPS = Field("steps", "whole", 500, minimum=1, maximum=MAX_STEPS, step=1, ui_range=(1, 2000), label="Steps",
              help="training steps")
RANK = Field("rank", "whole", 8, minimum=1, maximum=MAX_RANK, step=1, label="Rank",
             help="the LoRA's rank; at most the narrowest trained layer's width")
ALPHA = Field("alpha", "number", 0, minimum=0, maximum=1024, label="Alpha", help="0: the rank")
LEARNING_RATE = Field("learning_rate", "number", 1e-4, minimum=1e-7, maximum=1.0, label="Learning rate")
BATCH_SIZE = Field("batch_size", "whole", 1, minimum=1, maximum=16, step=1, label="Batch size")
RESOLUTION = Field("resolution", "whole", 0, minimum=0, maximum=1024, step=8, label="Resolution",
                   help="0: the model's own; else a multiple of 8 from 64")
SEED = Field("seed", "whole", 0, minimum=0, maximum=MAX_SEED, label="Seed")
LAYERS = Field("layers", "choice", "attention", choices=tuple(UNET_LAYERS), label="U-Net layers",
               help="attention: every attention layer (kohya's); cross_attention: the cross-attention keys and values "
                    "(Custom Diffusion: a new word, least drift)")
TRAIN_TEXT_ENCODER = Field("train_text_encoder", "switch", False, label="Train the text encoder too")
CLASS_PROMPT = Field("class_prompt", "text", "", label="Class prompt", help="prior preservation's class")
PRIOR_PRESERVATION = Field("prior_preservation", "switch", False, label="Prior preservation",
                           help="class images made by the model keep the class as it was")
MIN_SNR_GAMMA = Field("min_snr_gamma", "number", 5.0, minimum=0, maximum=100, label="Min-SNR gamma", help="0: off")
NOISE_OFFSET = Field("noise_offset", "number", 0.0, minimum=0, maximum=1, label="Noise offset",
                     help="as the model was trained: 0.5 for the shapes demo")
GRADIENT_CHECKPOINTING = Field("gradient_checkpointing", "switch", False, label="Gradient checkpointing",
                               help="less memory, slower steps")
SAMPLE_EVERY = Field("sample_every", "whole", 0, minimum=0, maximum=MAX_STEPS, step=1, ui_range=(0, 500),
                     label="A sample every N steps", help="0: none; at most the steps")
RESUME = Field("resume", "switch", False, label="Resume the interrupted run of this name",
               help="continue the checkpoint an interrupted run kept")
# the settings, in /train_lora's order after images, instance_prompt and name
SETTINGS = (STEPS, RANK, ALPHA, LEARNING_RATE, BATCH_SIZE, RESOLUTION, SEED, LAYERS, TRAIN_TEXT_ENCODER, CLASS_PROMPT,
            PRIOR_PRESERVATION, MIN_SNR_GAMMA, NOISE_OFFSET, GRADIENT_CHECKPOINTING, SAMPLE_EVERY, RESUME)
DEFAULTS = {field.name: field.default for field in SETTINGS}
