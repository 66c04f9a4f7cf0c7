"""Model families (as Forge keeps one engine per family): SD 1.x, SD 2.x (epsilon or v-prediction) and SDXL, each
with its pipeline classes, latent-to-RGB preview map and tiny preview VAE, and the component configs a
single `.safetensors` checkpoint of it loads with offline (`models/configs/`).

A family is told from a loaded pipeline's parts (a second text encoder: SDXL; an OpenCLIP text encoder, whose
activation is gelu where OpenAI's CLIP has quick_gelu: SD 2.x; the scheduler's prediction type: v) or, before
anything is loaded, from a single file's keys (A1111's checkpoint layout: `conditioner.embedders.*` for SDXL,
`cond_stage_model.model.*` for SD 2.x's OpenCLIP, `cond_stage_model.transformer.*` for SD 1.x's CLIP).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diffusers import (
    DiffusionPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
TOKENIZER_DIR = CONFIGS_DIR / "sd15" / "tokenizer"  # CLIP's vocabulary: every family's tokenizers use it

# The latents as the pipeline holds them (scaled) to RGB in [-1, 1]. SD 1.5's: the widely used linear fit
# (huggingface.co forum, "Decoding latents to RGB without upscaling"), as A1111's Approx cheap uses it; SDXL's:
# ComfyUI's latent_formats.SDXL factors.
SD15_LATENT_RGB = ([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]],
                   [0.0, 0.0, 0.0])
SDXL_LATENT_RGB = ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                    [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011])


@dataclass(frozen=True, eq=False)  # each family is one object: compared and hashed by identity
class Family:
    name: str  # as the model line, /sdapi/v1/sd-models and errors say it
    key: str  # short, for files and code: "sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner"
    txt2img: type[DiffusionPipeline]
    img2img: type[DiffusionPipeline]
    inpaint: type[DiffusionPipeline]
    configs: dict[int, str]  # U-Net input channels -> the folder in models/configs a single file of it loads with
    latent_rgb: tuple = SD15_LATENT_RGB
    taesd: str = "madebyollin/taesd"

    @property
    def is_xl(self) -> bool:
        return self.key.startswith("sdxl")

    @property
    def options(self) -> dict:
        """What every pipeline of the family is built with besides its parts."""
        return options_of(self.txt2img)

    def config_folder(self, in_channels: int) -> Path:
        if in_channels not in self.configs:
            raise ValueError(f"a {self.name} checkpoint with a {in_channels}-channel U-Net is not one this app knows "
                             f"(it knows {' and '.join(str(c) for c in sorted(self.configs))} channels)")
        return CONFIGS_DIR / self.configs[in_channels]


_SD = (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline)
_XL = (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline)
SD1 = Family("SD 1.x", "sd1", *_SD, configs={4: "sd15", 9: "sd15-inpainting"})
SD2 = Family("SD 2.x", "sd2", *_SD, configs={4: "sd2", 9: "sd2-inpainting"})
SD2_V = Family("SD 2.x v-prediction", "sd2-v", *_SD, configs={4: "sd2-v"})
SDXL = Family("SDXL", "sdxl", *_XL, configs={4: "sdxl", 9: "sdxl-inpainting"},
              latent_rgb=SDXL_LATENT_RGB, taesd="madebyollin/taesdxl")
SDXL_REFINER = Family("SDXL refiner", "sdxl-refiner", *_XL, configs={4: "sdxl-refiner"},
                      latent_rgb=SDXL_LATENT_RGB, taesd="madebyollin/taesdxl")


def options_of(pipeline_class: type[DiffusionPipeline]) -> dict:
    """SDXL's pipelines would add an invisible watermark to every image when its package is installed; A1111 and
    ComfyUI add none."""
    return {"add_watermarker": False} if pipeline_class in _XL else {}


def of_pipeline(pipe: DiffusionPipeline) -> Family:
    """The family of a loaded pipeline, from its parts."""
    parts = pipe.components
    if parts.get("text_encoder_2") is not None:
        return SDXL_REFINER if parts.get("text_encoder") is None else SDXL
    text_encoder = parts.get("text_encoder")
    if text_encoder is not None and text_encoder.config.hidden_act == "gelu":  # OpenCLIP
        return SD2_V if pipe.scheduler.config.get("prediction_type") == "v_prediction" else SD2
    return SD1


def of_checkpoint(keys: Iterable[str], path: str) -> Family:
    """The family of an A1111 single-file checkpoint, from its keys. SD 2.x's prediction type is not in the
    weights: a `.yaml` beside the file (A1111's and ComfyUI's convention) with `parameterization: "v"` says v."""
    keys = set(keys)
    if any(key.startswith("conditioner.embedders.1.model.") for key in keys):
        return SDXL
    if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
        return SDXL_REFINER
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        return SD2_V if _says_v(Path(path).with_suffix(".yaml")) else SD2
    if any(key.startswith("cond_stage_model.transformer.") for key in keys):
        return SD1
    raise ValueError(f"model file {path!r} has no text encoder of a Stable Diffusion 1.x, 2.x or SDXL checkpoint "
                     "(cond_stage_model.* or conditioner.embedders.*)")


def _says_v(config: Path) -> bool:
    """Whether an LDM config names v-prediction; read as text (a yaml is never executed or parsed as objects)."""
    if not config.is_file() or config.stat().st_size > 64 * 1024:
        return False
    text = config.read_text(encoding="utf-8", errors="replace")
    said = {line.split("#")[0].strip().replace(" ", "").replace("'", '"') for line in text.splitlines()}
    return bool(said & {'parameterization:"v"', "parameterization:v"})


def tokenizers(family: Family) -> dict:
    """The family's tokenizers, for a single file (whose configs hold none): CLIP's vocabulary, padding with the end
    token (OpenAI's CLIP) or with "!" (OpenCLIP, as SD 2.x and SDXL's second encoder were trained)."""
    from transformers import CLIPTokenizer

    def clip(pad: str | None = None):
        return CLIPTokenizer.from_pretrained(TOKENIZER_DIR, model_max_length=77, **({"pad_token": pad} if pad else {}))

    if family is SDXL:
        return {"tokenizer": clip(), "tokenizer_2": clip("!")}
    if family is SDXL_REFINER:
        return {"tokenizer_2": clip("!")}
    return {"tokenizer": clip("!") if family in (SD2, SD2_V) else clip()}


def of_location(path: Path) -> Family | None:
    """The family of a checkpoint on disk, from a single file's header or a folder's config files, without loading
    any weight; None where it cannot be told (an unreadable file, another kind of model). Remembered while the files
    it reads stay as they are: the dropdown and /sdapi/v1/sd-models ask for every checkpoint at each listing."""
    read = [path, path.with_suffix(".yaml")] if path.is_file() else [path / "model_index.json"]
    stamps = tuple((stat.st_mtime_ns, stat.st_size) if (stat := _stat(file)) else None for file in read)
    return _of_location(str(path), stamps) if stamps[0] is not None else None


def _stat(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


@functools.lru_cache(maxsize=1024)
def _of_location(location: str, stamps: tuple) -> Family | None:
    """`stamps`: the read files' (mtime, size), in the cache's key only: a changed file is read again."""
    import json

    from safetensors import safe_open

    path = Path(location)
    try:
        if path.is_file():
            with safe_open(str(path), framework="pt") as checkpoint:
                return of_checkpoint(checkpoint.keys(), str(path))
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        if "XL" in index.get("_class_name", ""):
            return SDXL_REFINER if index.get("text_encoder", [None])[0] is None else SDXL
        encoder = json.loads((path / "text_encoder" / "config.json").read_text(encoding="utf-8"))
        if encoder.get("hidden_act") != "gelu":
            return SD1
        scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
        return SD2_V if scheduler.get("prediction_type") == "v_prediction" else SD2
    except (OSError, ValueError, KeyError, AttributeError):  # safetensors' errors are ValueError or OSError kinds
        return None
