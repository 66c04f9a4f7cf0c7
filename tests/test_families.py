"""Model families on tiny random models built here (testing/family_models.py): SDXL base, SDXL's 9-channel inpainting
model and SD 2.x v-prediction through the shared manager equal plain diffusers; SDXL prompts are encoded as A1111
does (tests/a1111_reference.py); the shipped configs describe the real models; families are told from folders and
single files."""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors import safe_open

from extensions.inpaint import Inpaint, prepare_mask
from extensions.prompts import Prompts
from extensions.prompts.composable import ComposedUNet
from extensions.prompts.encoder import XLPromptEncoder
from models import families, loading
from models.manager import PipelineManager
from models.request import GenerationRequest
from models.samplers import make_scheduler
from service.studio import StudioService
from tests import a1111_reference as a1111
from tests.test_manager import SMALL, gradient_image, max_diff, square_mask
from tests.test_prompt_editing import halves_draw_the_whole
from tests.test_prompts import LONG, PROMPTS


@pytest.fixture(scope="module")
def managers(family_folder):
    loaded = {}

    def manager(family: str) -> PipelineManager:
        if family not in loaded:
            loaded[family] = PipelineManager.load(str(family_folder(family)), device="cpu")
        return loaded[family]

    return manager


@pytest.fixture(scope="module")
def sdxl_service(managers, tmp_path_factory):
    """The SDXL model with the prompts extension installed (once: its hook stays on the shared manager)."""
    folder = tmp_path_factory.mktemp("sdxl-outputs")
    return StudioService(managers("sdxl"), folder, [Prompts(folder / "embeddings")])


# -- the shipped configs ------------------------------------------------------------------------------------------

# The published models' parameter counts (the SD 2.x text encoder: the 23 layers it uses of OpenCLIP ViT-H's 24).
PUBLISHED = {"sd2": (865_910_724, [340_387_840]), "sd2-v": (865_910_724, [340_387_840]),
             "sdxl": (2_567_463_684, [123_060_480, 694_659_840]), "sdxl-refiner": (2_259_526_660, [694_659_840])}
VAE_PARAMETERS = 83_653_863
INPAINT_EXTRA = {"sd2-inpainting": ("sd2", 320), "sdxl-inpainting": ("sdxl", 320)}  # conv_in's 5 extra channels


@pytest.mark.parametrize("name", [*PUBLISHED, *INPAINT_EXTRA])
def test_shipped_configs_describe_the_real_architectures(name):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = families.CONFIGS_DIR / name
    base, width = INPAINT_EXTRA.get(name, (name, 0))
    unet_parameters, encoder_parameters = PUBLISHED[base]
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        encoders = []
        for part in ("text_encoder", "text_encoder_2"):
            if (folder / part).is_dir():
                config = json.loads((folder / part / "config.json").read_text())
                model = CLIPTextModelWithProjection if part == "text_encoder_2" else CLIPTextModel
                encoders.append(count(model(CLIPTextConfig(**config))))
    assert count(unet) == unet_parameters + 5 * width * 3 * 3
    assert count(vae) == VAE_PARAMETERS
    assert encoders == encoder_parameters


# -- telling families apart ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family, expected", [("sdxl", families.SDXL), ("sdxl-inpainting", families.SDXL),
                                              ("sdxl-refiner", families.SDXL_REFINER), ("sd2-v", families.SD2_V)])
def test_a_folders_family_is_told_from_its_parts(family_folder, family, expected):
    assert families.of_pipeline(DiffusionPipeline.from_pretrained(family_folder(family))) is expected


def test_a_single_files_family_is_told_from_its_keys(tmp_path):
    unet = "model.diffusion_model.input_blocks.0.0.weight"
    path = str(tmp_path / "model.safetensors")
    assert families.of_checkpoint([unet, "cond_stage_model.transformer.text_model.x"], path) is families.SD1
    assert families.of_checkpoint([unet, "cond_stage_model.model.token_embedding.weight"], path) is families.SD2
    assert families.of_checkpoint([unet, "conditioner.embedders.0.transformer.x",
                                   "conditioner.embedders.1.model.ln_final.weight"], path) is families.SDXL
    assert families.of_checkpoint([unet, "conditioner.embedders.0.model.ln_final.weight"], path) is \
        families.SDXL_REFINER
    (tmp_path / "model.yaml").write_text("model:\n  params:\n    parameterization: \"v\"  # 768-v\n")
    assert families.of_checkpoint([unet, "cond_stage_model.model.token_embedding.weight"], path) is families.SD2_V
    with pytest.raises(ValueError, match="no text encoder of a Stable Diffusion"):
        families.of_checkpoint([unet], path)


def test_the_model_line_names_the_family(managers):
    assert " · SDXL · inpainting (9-channel U-Net) · " in managers("sdxl-inpainting").describe()
    assert " · SD 2.x v-prediction · 4-channel U-Net · " in managers("sd2-v").describe()


@pytest.mark.slow
def test_a_refiner_is_refused_as_the_base_model(family_folder):
    with pytest.raises(ValueError, match="is an SDXL refiner: it refines an SDXL model's images"):
        PipelineManager.load(str(family_folder("sdxl-refiner")), device="cpu")


# -- pixels against plain diffusers -------------------------------------------------------------------------------

@functools.cache
def _loaded(folder) -> DiffusionPipeline:
    """A plain pipeline loaded on its own (once per folder: the references never change its weights)."""
    return DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)


def _plain(folder, mode: str, inpainting: bool, seed: int, **kwargs) -> Image.Image:
    pipe = _loaded(folder)
    family = families.of_pipeline(pipe)
    pipeline_class = family.inpaint if inpainting else getattr(family, mode)
    pipe = pipeline_class.from_pipe(pipe)
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [seed])
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(generator=generator, num_inference_steps=4, guidance_scale=7.0, **kwargs).images[0]


SLOW = pytest.mark.slow  # make test runs every case; make test-fast one of each kind of model


@pytest.mark.parametrize("family, negative", [pytest.param("sdxl", "blurry", marks=SLOW),
                                              pytest.param("sdxl", "", marks=SLOW),
                                              pytest.param("sdxl-inpainting", "blurry", marks=SLOW),
                                              ("sdxl-inpainting", ""), ("sd2-v", "blurry"),
                                              pytest.param("sd2-v", "", marks=SLOW)])
def test_every_mode_equals_plain_diffusers(managers, family_folder, family, negative):
    manager, full = managers(family), Image.new("L", (64, 64), 255)
    base = dict(prompt="a red circle", negative_prompt=negative, sampler="Euler", seed=7, **SMALL)
    cases = [(GenerationRequest("txt2img", **base), dict(width=64, height=64)),
             (GenerationRequest("img2img", strength=0.6, image=gradient_image(), **base),
              dict(image=gradient_image(), strength=0.6)),
             (GenerationRequest("inpaint", strength=0.9, image=gradient_image(), mask=square_mask(), **base),
              dict(image=gradient_image(), mask_image=square_mask(), strength=0.9, width=64, height=64))]
    for request, inputs in cases:
        if manager.is_inpainting_model:  # every mode through the inpaint pipeline: txt2img on a black picture
            inputs = {"image": Image.new("RGB", (64, 64)), "mask_image": full, "strength": 1.0, "width": 64,
                      "height": 64, **inputs}
        ours = manager.generate(request).images[0]
        plain = _plain(family_folder(family), request.mode, manager.is_inpainting_model, 7, prompt="a red circle",
                       negative_prompt=negative, **inputs)
        assert max_diff(ours, plain) <= 2, (family, request.mode, negative)


@pytest.mark.slow
def test_sdxl_inpainting_keeps_every_unmasked_pixel_exactly(managers, tmp_path):
    service = StudioService(managers("sdxl-inpainting"), tmp_path, [Inpaint()])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8))
    mask = square_mask((80, 96))
    generation = service.run("inpaint", dict(image=image, mask=mask, prompt="a red circle", steps=3, seed=7,
                                             width=64, height=64, strength=1.0, mask_blur=4))
    result = np.asarray(Image.open(generation.files[0]).convert("RGB"))
    outside = np.asarray(prepare_mask(mask, False, 4)[1]) == 0
    assert result.shape == np.asarray(image).shape
    assert np.array_equal(result[outside], np.asarray(image)[outside])


# -- SDXL's prompts as A1111 encodes them -------------------------------------------------------------------------

@pytest.mark.parametrize("clip_skip", [1, 3])
def test_sdxl_conditioning_equals_a1111s(managers, clip_skip):
    pipe = managers("sdxl").pipelines["txt2img"]
    encoder = XLPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2)
    for prompt in PROMPTS:
        [(ours, pooled)] = encoder.encode_all([encoder.tokenize(prompt)], clip_skip)
        theirs, their_pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                                     pipe.text_encoder_2, prompt, clip_skip)
        assert ours.shape == theirs.shape, prompt
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4), (prompt, (ours - theirs).abs().max())
        assert torch.allclose(pooled, their_pooled, atol=1e-6), prompt


def test_sdxl_embeddings_clip_l_and_clip_g_equal_a1111s(managers, tmp_path):
    """An SDXL embedding (a clip_l and a clip_g tensor) in the prompt: each encoder takes its own vectors."""
    from safetensors.torch import save_file

    from extensions.prompts.embeddings import EmbeddingLibrary

    pipe = managers("sdxl").pipelines["txt2img"]
    generator = torch.Generator().manual_seed(3)
    pairs = {"shiny": (torch.randn(2, 32, generator=generator), torch.randn(2, 40, generator=generator)),
             "dots": (torch.randn(1, 32, generator=generator), torch.randn(1, 40, generator=generator))}
    for name, (clip_l, clip_g) in pairs.items():
        save_file({"clip_l": clip_l, "clip_g": clip_g}, str(tmp_path / f"{name}.safetensors"))
    library = EmbeddingLibrary(tmp_path)
    assert set(library.loaded(72)) == {"shiny", "dots"} and library.listing(72)["loaded"]["shiny"]["shape"] == 72
    encoder = XLPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2)
    encoder.use_embeddings(library.loaded(72))
    for prompt in ["shiny dots", "a (shiny:1.3) circle, dots", "word, " * 36 + "shiny edge", "x " * 74 + "shiny"]:
        [(ours, pooled)] = encoder.encode_all([encoder.tokenize(prompt)])
        theirs, their_pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                                     pipe.text_encoder_2, prompt, embeddings=pairs)
        assert ours.shape == theirs.shape, prompt
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4), (prompt, (ours - theirs).abs().max())
        assert torch.allclose(pooled, their_pooled, atol=1e-6), prompt


@pytest.mark.slow
def test_sdxl_plain_prompt_as_text_equals_its_a1111_encoding(managers):
    """The text path (diffusers' own encoding) and A1111's agree on a plain prompt: a weighted prompt whose weights
    are all 1 takes the embedding path and must give the same pixels."""
    manager = managers("sdxl")
    request = GenerationRequest("txt2img", "a red circle", negative_prompt="blurry", sampler="Euler", seed=3, **SMALL)
    plain = manager.generate(request).images[0]
    pipe = manager.pipelines["txt2img"]
    cond, pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2,
                                         "a red circle")
    uncond, negative_pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                                    pipe.text_encoder_2, "blurry")
    view = type(pipe)(**{**pipe.components, "scheduler": make_scheduler("Euler", pipe.scheduler.config, [3])})
    view.set_progress_bar_config(disable=True)
    embedded = view(prompt_embeds=cond, negative_prompt_embeds=uncond, pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=negative_pooled, num_inference_steps=4, guidance_scale=7.0,
                    width=64, height=64, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert max_diff(plain, embedded) <= 1


@pytest.mark.slow
def test_sdxl_weighted_long_prompts_and_clip_skip_through_the_service(managers, sdxl_service):
    service, manager = sdxl_service, managers("sdxl")
    pipe = manager.pipelines["txt2img"]
    for prompt, negative, clip_skip in [(LONG, "blurry", 1), ("a (red:1.4) circle BREAK square", "", 3)]:
        generation = service.run("txt2img", dict(prompt=prompt, negative_prompt=negative, clip_skip=clip_skip,
                                                 sampler="Euler", seed=3, **SMALL))
        ours = Image.open(generation.files[0])
        cond, pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                             pipe.text_encoder_2, prompt, clip_skip)
        uncond, negative_pooled = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,
                                                        pipe.text_encoder_2, negative, clip_skip)
        empty, _ = a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2,
                                         "", clip_skip)
        cond, uncond = a1111.pad_to_same_chunks(cond, uncond, empty)
        view = type(pipe)(**{**pipe.components, "scheduler": make_scheduler("Euler", pipe.scheduler.config, [3])})
        view.set_progress_bar_config(disable=True)
        theirs = view(prompt_embeds=cond, negative_prompt_embeds=uncond, pooled_prompt_embeds=pooled,
                      negative_pooled_prompt_embeds=negative_pooled, num_inference_steps=4, guidance_scale=7.0,
                      width=64, height=64, generator=torch.Generator("cpu").manual_seed(3)).images[0]
        assert max_diff(ours, theirs) <= 2, prompt[:40]


def test_sdxl_prompt_editing_switches_both_encoders_and_the_pooled_vector(managers, sdxl_service):
    """`[a red circle:dogs in the snow:1]` over 8 steps: A1111's conditioning of the first text while the step,
    counted from 0, is at most 1 (A1111's reconstruct_cond_batch), of the second after; both encoders' and the pooled
    vector (what diffusers' SDXL loop takes back as `add_text_embeds`)."""
    pipe = managers("sdxl").pipelines["txt2img"]
    settings = dict(negative_prompt="blurry", sampler="Euler", seed=3, width=64, height=64, steps=8,
                    guidance_scale=15.0)  # the tiny model's text matters most with a strong guidance
    generation = sdxl_service.run("txt2img", dict(prompt="[a red circle:dogs in the snow:1]", **settings))
    encode = lambda text: a1111.conditioning_xl(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2,  # noqa: E731
                                                pipe.text_encoder_2, text)
    (red, red_pooled), (blue, blue_pooled), (negative, negative_pooled) = map(encode, ("a red circle",
                                                                                     "dogs in the snow", "blurry"))

    def switch(pipeline, step, timestep, tensors):
        if step == 1:  # after steps 0 and 1: the others see the second text
            tensors["prompt_embeds"] = torch.cat([negative, blue])
            tensors["add_text_embeds"] = torch.cat([negative_pooled, blue_pooled])
        return tensors

    view = type(pipe)(**{**pipe.components, "scheduler": make_scheduler("Euler", pipe.scheduler.config, [3])})
    view.set_progress_bar_config(disable=True)
    theirs = view(prompt_embeds=red, negative_prompt_embeds=negative, pooled_prompt_embeds=red_pooled,
                  negative_pooled_prompt_embeds=negative_pooled, num_inference_steps=8, guidance_scale=15.0, width=64,
                  height=64, generator=torch.Generator("cpu").manual_seed(3), callback_on_step_end=switch).images[0]
    unswitched = sdxl_service.run("txt2img", dict(prompt="a red circle", **settings))
    ours = Image.open(generation.files[0])
    assert max_diff(ours, theirs) <= 2 and max_diff(ours, Image.open(unswitched.files[0])) > 4


def test_sdxl_and_conditions_each_part_on_its_own_pooled_vector(managers):
    """A1111 stacks each part's "vector" with its cross-attention: each part's prediction sees its own pooled
    vector, the negative its own."""
    unet = managers("sdxl").pipelines["txt2img"].unet
    generator = torch.Generator().manual_seed(0)
    width = unet.add_embedding.linear_1.in_features - 6 * unet.config.addition_time_embed_dim
    states = [torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator) for _ in range(3)]
    pooled = [torch.randn(1, width, generator=generator) for _ in range(3)]  # negative, first part, second part
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(2, 1)
    sample, timestep = torch.randn(1, 4, 8, 8, generator=generator).repeat(2, 1, 1, 1), torch.tensor(500)
    packed = {"text_embeds": torch.cat([pooled[0].repeat(1, 2), torch.cat(pooled[1:], dim=1)]), "time_ids": time_ids}
    with torch.no_grad():
        output = ComposedUNet(unet, [1.0, 0.5], guided=True)(
            sample, timestep, torch.cat([states[0].repeat(1, 2, 1), torch.cat(states[1:], dim=1)]),
            added_cond_kwargs=packed, return_dict=False)[0]
        alone = [unet(sample[:1], timestep, state, added_cond_kwargs={"text_embeds": vector, "time_ids": time_ids[:1]})
                 .sample for state, vector in zip(states, pooled)]
    assert torch.allclose(output[:1], alone[0], atol=1e-5)
    assert torch.allclose(output[1:], alone[0] + (alone[1] - alone[0]) + 0.5 * (alone[2] - alone[0]), atol=1e-4)


def test_sdxl_and_draws_its_parts_and_halves_of_one_prompt_draw_it(sdxl_service):
    def picture(prompt: str) -> np.ndarray:
        generation = sdxl_service.run("txt2img", dict(prompt=prompt, seed=3, steps=4, width=64, height=64,
                                                      sampler="Euler", guidance_scale=15.0))
        return np.asarray(Image.open(generation.files[0]), dtype=np.int16)

    halves_draw_the_whole(picture, "dogs in the snow")


# -- single files -------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family, expected", [("sdxl", families.SDXL), ("sdxl-inpainting", families.SDXL),
                                              ("sd2-v", families.SD2_V)])
def test_a_single_file_loads_offline_with_the_shipped_configs(family_folder, managers, tmp_path, family, expected):
    """Exported in A1111's layout, the file is told apart by its keys (SD 2.x's v from the .yaml beside it, as A1111
    reads it), loads with the tiny model's own layout given as `config` (the shipped configs hold the real sizes),
    and gives the folder's weights and pixels exactly."""
    from models.single_file import save_single_file

    folder = family_folder(family)
    path = save_single_file(folder, tmp_path / f"{family}.safetensors")
    if family == "sd2-v":
        path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: 'v'\n")
    found, channels = loading.single_file_family(str(path))
    assert found is expected and channels == (9 if "inpainting" in family else 4)
    manager = PipelineManager.load(str(path), device="cpu", single_file_config=str(folder))
    original = managers(family)
    assert manager.family is expected and manager.source.kind == "single_file"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(manager.pipelines["txt2img"], part, None), getattr(original.pipelines["txt2img"],
                                                                                   part, None)
        if theirs is None:
            continue
        expected_state, state = theirs.state_dict(), ours.state_dict()
        assert state.keys() == expected_state.keys(), part
        assert all(torch.equal(state[key], expected_state[key]) for key in state), part
    request = GenerationRequest("txt2img", "a red circle", sampler="Euler", seed=1, **SMALL)
    assert max_diff(manager.generate(request).images[0], original.generate(request).images[0]) == 0


def test_single_file_configs_and_tokenizers_of_each_family_load_offline(tmp_path):
    """The shipped configs build each family's pipeline class, with CLIP's vocabulary in each tokenizer and
    OpenCLIP's padding where the family uses it."""
    for family in (families.SD2, families.SD2_V, families.SDXL, families.SDXL_REFINER):
        tokenizers = families.tokenizers(family)
        pads = {name: tokenizer.pad_token for name, tokenizer in tokenizers.items()}
        expected = {"sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
                    "sdxl-refiner": {"tokenizer_2": "!"}}.get(family.key, {"tokenizer": "!"})
        assert pads == expected, family.name
        assert all(tokenizer("a photo").input_ids == [49406, 320, 1125, 49407] for tokenizer in tokenizers.values())
        for channels in family.configs:
            index = json.loads((family.config_folder(channels) / "model_index.json").read_text())
            pipeline_class = family.inpaint if channels == 9 else family.img2img if family is families.SDXL_REFINER \
                else family.txt2img
            assert index["_class_name"] == pipeline_class.__name__


# -- LoRA across families -----------------------------------------------------------------------------------------

def _lora_reference(folder, lora, weight: float, seed: int) -> Image.Image:
    """diffusers' own: the pipeline loaded alone, the file through load_lora_weights at `weight`."""
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.load_lora_weights(str(lora), adapter_name="reference")
    pipe.set_adapters(["reference"], [weight])
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [seed])
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a red circle", negative_prompt="", num_inference_steps=4, guidance_scale=7.0, width=64,
                height=64, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


@pytest.mark.slow
def test_sdxl_loras_equal_diffusers_and_switching_back_restores_the_base(family_folder, tmp_path):
    from extensions.lora import Lora
    from testing.lora_files import make_lora

    folder = family_folder("sdxl")
    manager = PipelineManager.load(str(folder), device="cpu")  # its own: the LoRA layers stay on it
    pipe, loras = manager.pipelines["txt2img"], tmp_path / "Lora"
    files = {"xl-kohya": make_lora(pipe, loras / "xl-kohya.safetensors", seed=1, layout="kohya"),
             "xl-diffusers": make_lora(pipe, loras / "xl-diffusers.safetensors", seed=2)}
    with safe_open(str(files["xl-kohya"]), "pt") as kohya:  # kohya-ss's own naming, as Civitai's files have it
        keys = list(kohya.keys())
    assert any(key.startswith("lora_unet_input_blocks_") for key in keys)
    assert any(key.startswith("lora_te2_text_model_encoder_layers_") for key in keys)
    service = StudioService(manager, tmp_path / "outputs", [Lora(loras)])

    def run(prompt: str) -> Image.Image:
        generation = service.run("txt2img", dict(prompt=prompt, sampler="Euler", seed=4, **SMALL))
        return Image.open(generation.files[0])

    base = run("a red circle")
    for name, path in files.items():
        ours = run(f"a red circle <lora:{name}:0.8>")
        assert max_diff(ours, base) > 8, name
        assert max_diff(ours, _lora_reference(folder, path, 0.8, 4)) <= 2, name
    assert max_diff(run("a red circle"), base) == 0


@pytest.mark.slow
def test_a_lora_of_another_family_is_refused_naming_both(managers, demo_manager, tmp_path):
    from extensions.lora import Lora
    from testing.lora_files import make_lora

    loras = tmp_path / "Lora"
    make_lora(demo_manager.pipelines["txt2img"], loras / "sd1-style.safetensors", seed=1, layout="kohya")
    make_lora(managers("sdxl").pipelines["txt2img"], loras / "xl-style.safetensors", seed=1, layout="kohya")
    xl = StudioService(PipelineManager.load(str(managers("sdxl").source.location), device="cpu"), tmp_path / "a",
                       [Lora(loras)])
    with pytest.raises(ValueError, match=r"sd1-style.safetensors: made for SD 1.x or 2.x \(one text encoder\); "
                                         r"this model is SDXL"):
        xl.run("txt2img", dict(prompt="x <lora:sd1-style:1>", **SMALL))
    sd1 = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path / "b", [Lora(loras)])
    with pytest.raises(ValueError, match=r"xl-style.safetensors: made for SDXL .*; this model is SD 1.x"):
        sd1.run("txt2img", dict(prompt="x <lora:xl-style:1>", **SMALL))
    assert xl.run("txt2img", dict(prompt="x", **SMALL)).files  # both keep serving


# -- ControlNet on SDXL --------------------------------------------------------------------------------------------

def _xl_controlnet(unet):
    """A tiny SDXL ControlNet for `unet`, whose outputs show (from_unet zeroes its output convolutions)."""
    from diffusers import ControlNetModel

    torch.manual_seed(5)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0, 0.05)
    return controlnet


@pytest.mark.slow
def test_an_sdxl_controlnet_unit_equals_diffusers_and_one_of_another_family_is_refused(managers, tmp_path):
    from diffusers import StableDiffusionXLControlNetPipeline
    from safetensors.torch import save_file

    from extensions.controlnet.extension import ControlNet
    from testing.controlnet_files import save_original, tiny_controlnet

    manager = managers("sdxl")
    pipe = manager.pipelines["txt2img"]
    controlnet = _xl_controlnet(pipe.unet)
    folder = tmp_path / "ControlNet"
    controlnet.save_pretrained(folder / "xl-edges", safe_serialization=True)
    save_file(controlnet.state_dict(), str(folder / "xl-edges-file.safetensors"))  # diffusers' keys in one file
    save_original(tiny_controlnet(), folder / "sd1-edges.safetensors")
    extension = ControlNet(folder)
    extension.library.single_file_config = folder / "xl-edges"  # the tiny one's (a real one's width picks SDXL's)
    service = StudioService(manager, tmp_path / "outputs", [extension])
    control = Image.new("RGB", (64, 64))
    control.paste((255, 255, 255), (20, 20, 44, 44))
    unit = {"enabled": True, "module": "none", "model": "xl-edges", "image": control, "weight": 0.9}
    generation = service.run("txt2img", dict(prompt="a red circle", sampler="Euler", seed=2, controlnet_units=[unit],
                                             **SMALL))
    ours = Image.open(generation.files[0])
    plain = StableDiffusionXLControlNetPipeline(**{**pipe.components, "controlnet": controlnet},
                                                add_watermarker=False)
    plain.scheduler = make_scheduler("Euler", pipe.scheduler.config, [2])
    plain.set_progress_bar_config(disable=True)
    theirs = plain(prompt="a red circle", negative_prompt="", image=control, controlnet_conditioning_scale=0.9,
                   num_inference_steps=4, guidance_scale=7.0, width=64, height=64,
                   generator=torch.Generator("cpu").manual_seed(2)).images[0]
    without = Image.open(service.run("txt2img", dict(prompt="a red circle", sampler="Euler", seed=2,
                                                     **SMALL)).files[0])
    assert max_diff(ours, theirs) <= 2 and max_diff(ours, without) > 8
    from_file = service.run("txt2img", dict(prompt="a red circle", sampler="Euler", seed=2, **SMALL,
                                            controlnet_units=[{**unit, "model": "xl-edges-file"}]))
    assert max_diff(Image.open(from_file.files[0]), ours) == 0
    extension.library.single_file_config = None  # SD 1.5's config for the SD 1.x file
    with pytest.raises(ValueError, match=r"sd1-edges.safetensors: made for another base model: .* 32 .*, the base "
                                         r"model's is 72 \(SDXL\)"):
        service.run("txt2img", dict(prompt="x", controlnet_units=[{**unit, "model": "sd1-edges"}], **SMALL))


def test_an_sdxl_vae_in_float16_decodes_in_float32_as_diffusers_calls_do(family_folder):
    """SDXL's VAE overflows in float16 (its config says force_upcast): outside a pipeline call too it decodes in
    float32 and is left in float16; a VAE that says no upcast (the fp16-fix) decodes in its own dtype."""
    from diffusers import AutoencoderKL

    from models.latents import decode

    vae = AutoencoderKL.from_pretrained(family_folder("sdxl") / "vae")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    reference = decode(vae, latents)
    vae.to(torch.float16)
    upcast = decode(vae, latents.half())
    assert upcast.dtype == torch.float32 and vae.dtype == torch.float16
    assert torch.allclose(upcast, reference, atol=2e-2)
    vae.register_to_config(force_upcast=False)
    assert decode(vae, latents.half()).dtype == torch.float16


# -- the refiner --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def refiner_service(family_folder, tmp_path_factory):
    """A fresh SDXL model with a refiner and an SD 2.x model in its checkpoint folder, and every extension."""
    import shutil

    from extensions import create
    from extensions.base import Settings

    root = tmp_path_factory.mktemp("refiner")
    checkpoints = root / "Stable-diffusion"
    shutil.copytree(family_folder("sdxl-refiner"), checkpoints / "tiny-refiner")
    shutil.copytree(family_folder("sd2-v"), checkpoints / "tiny-sd2")
    settings = Settings(*(root / name for name in ("Lora", "ControlNet", "annotators", "embeddings", "upscalers",
                                                   "VAE", "outputs")), styles_file=root / "styles.csv",
                        checkpoint_dir=checkpoints)
    manager = PipelineManager.load(str(family_folder("sdxl")), device="cpu")
    return StudioService(manager, root / "outputs", create(settings))


@pytest.mark.slow
def test_the_refiner_takes_over_at_the_switch_as_diffusers_ensemble_of_experts(refiner_service, family_folder):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from service.pnginfo import fields_from_infotext

    generation = refiner_service.run("txt2img", dict(prompt="a red circle", negative_prompt="blurry", sampler="Euler",
                                                     seed=5, refiner_checkpoint="tiny-refiner",
                                                     refiner_switch_at=0.5, **SMALL))
    ours = Image.open(generation.files[0])
    base = StableDiffusionXLPipeline.from_pretrained(family_folder("sdxl"), add_watermarker=False)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(family_folder("sdxl-refiner"), vae=base.vae,
                                                               add_watermarker=False)
    for pipe in (base, refiner):
        pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [5])
        pipe.set_progress_bar_config(disable=True)
    texts = dict(prompt="a red circle", negative_prompt="blurry", num_inference_steps=4, guidance_scale=7.0)
    latents = base(**texts, width=64, height=64, denoising_end=0.5, output_type="latent",
                   generator=torch.Generator("cpu").manual_seed(5)).images
    theirs = refiner(**texts, image=latents, denoising_start=0.5,
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    without = refiner_service.run("txt2img", dict(prompt="a red circle", negative_prompt="blurry", sampler="Euler",
                                                  seed=5, **SMALL))
    assert max_diff(ours, theirs) <= 2 and max_diff(ours, Image.open(without.files[0])) > 8
    fields = fields_from_infotext(generation.infotexts[0], refiner_service.extensions)
    assert generation.infotexts[0].count("Refiner: tiny-refiner [") == 1 and "Refiner switch at: 0.5" in \
        generation.infotexts[0]
    assert fields["refiner_checkpoint"] == "tiny-refiner" and fields["refiner_switch_at"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("options, message", [
    ({"refiner_checkpoint": "nosuch"}, "refiner_checkpoint: no model named 'nosuch'"),
    ({"refiner_checkpoint": "tiny-sd2"}, "refiner_checkpoint: 'tiny-sd2' is SD 2.x v-prediction; a refiner must be"),
    ({"refiner_checkpoint": "demo"}, "refiner_checkpoint: the demo model is SD 1.x"),
    ({"refiner_checkpoint": "tiny-refiner", "refiner_switch_at": 0}, "refiner_switch_at must be"),
])
def test_a_bad_refiner_is_refused_by_name(refiner_service, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        refiner_service.build("txt2img", dict(prompt="x", **options))


@pytest.mark.slow
def test_a_refined_request_runs_alone(refiner_service):
    """The refiner's pass encodes its request's own prompts: such a request never shares a call with another."""
    refined, _ = refiner_service.build("txt2img", dict(prompt="x", refiner_checkpoint="tiny-refiner", **SMALL))
    plain, _ = refiner_service.build("txt2img", dict(prompt="x", **SMALL))
    from extensions.base import SOLO
    from extensions.refiner import Refiner

    refiner = next(extension for extension in refiner_service.extensions if isinstance(extension, Refiner))
    assert refiner.batch_key(refined) is SOLO and refiner.batch_key(plain) is None


@pytest.mark.slow
def test_an_xyz_plot_over_the_refiners_switch(refiner_service):
    """A1111's "Refiner switch at" axis: each cell equals its job alone; at 1 the refiner has no step left."""
    fields = dict(prompt="a red circle", sampler="Euler", seed=4, refiner_checkpoint="tiny-refiner", **SMALL)
    plot = refiner_service.run("txt2img", {**fields, "script_name": "X/Y/Z plot", "script_args": [
        "Refiner switch at", "0.5, 1", [], "Nothing", "", [], "Nothing", "", [], True, True, False, False, 0]})
    alone = [Image.open(refiner_service.run("txt2img", {**fields, "refiner_switch_at": at}).files[0])
             for at in (0.5, 1.0)]
    without = Image.open(refiner_service.run("txt2img", {**fields, "refiner_checkpoint": ""}).files[0])
    cells = [Image.open(path) for path in plot.files[1:]]
    assert [max_diff(cell, solo) for cell, solo in zip(cells, alone)] == [0, 0]
    assert max_diff(cells[1], without) == 0 and max_diff(cells[0], without) > 8
    assert "Refiner switch at: 0.5" in plot.infotexts[1]


def _xl_edges(service) -> tuple:
    """An SDXL ControlNet "xl-edges" in `service`'s ControlNet folder (saved once), and a unit of it."""
    controlnet = _xl_controlnet(service.manager.pipelines["txt2img"].unet)
    folder = service.extension("controlnet").library.folder / "xl-edges"
    if not folder.exists():
        controlnet.save_pretrained(folder, safe_serialization=True)
    control = Image.new("RGB", (64, 64))
    control.paste((255, 255, 255), (20, 20, 44, 44))
    return controlnet, {"enabled": True, "module": "none", "model": "xl-edges", "image": control, "weight": 0.9}


@pytest.mark.slow
def test_and_with_an_sdxl_controlnet_unit(refiner_service):
    """The ControlNet sees every part's tokens and the mean of their pooled vectors (SDXL's, side by side with
    AND): halves of one prompt draw what that prompt draws with the unit."""
    _, unit = _xl_edges(refiner_service)

    def picture(prompt: str) -> np.ndarray:
        generation = refiner_service.run("txt2img", dict(prompt=prompt, seed=3, sampler="Euler", guidance_scale=15.0,
                                                         controlnet_units=[unit], **SMALL))
        return np.asarray(Image.open(generation.files[0]), dtype=np.int16)

    halves_draw_the_whole(picture, "dogs in the snow")


def _reference_refiner(family_folder, base):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(family_folder("sdxl-refiner"), vae=base.vae,
                                                               add_watermarker=False)
    refiner.set_progress_bar_config(disable=True)
    return refiner


def _euler(pipe, seed: int):
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [seed])
    pipe.set_progress_bar_config(disable=True)
    return pipe


class UNetCalls:
    """Each U-Net's calls (a step is one call: the guidance halves go together) and their text conditioning."""

    def __init__(self, **unets):
        self.texts: dict[str, list] = {name: [] for name in unets}
        self.handles = [unet.register_forward_pre_hook(functools.partial(self._record, name), with_kwargs=True)
                        for name, unet in unets.items()]

    def _record(self, name: str, module, args, kwargs) -> None:
        self.texts[name].append(args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states"))

    def remove(self) -> dict:
        """How many times each U-Net ran."""
        for handle in self.handles:
            handle.remove()
        return {name: len(texts) for name, texts in self.texts.items()}


@pytest.mark.slow
def test_the_refiner_takes_over_hires_fixs_second_pass_as_a1111s_default(refiner_service, family_folder):
    """A1111's "Hires refiner: second pass": the first pass is the model's alone; the second runs the model until
    the switch (a fraction of its own steps) and the refiner after it. Against plain diffusers: the base's 4 steps at
    64 px, its latents made 1.5x larger (Latent: bilinear), its img2img at strength 0.5 over a schedule of 8 steps,
    stopped at 1 - 0.5 x (1 - 0.5) of it, then the refiner's img2img from there."""
    import torch.nn.functional as F
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    fields = dict(prompt="a red circle", negative_prompt="blurry", sampler="Euler", seed=5, **SMALL,
                  enable_hr=True, hr_upscaler="Latent", hr_scale=1.5, hr_denoising_strength=0.5,
                  refiner_checkpoint="tiny-refiner", refiner_switch_at=0.5)
    refiner_service.run("txt2img", dict(fields, enable_hr=False))  # the refiner loaded, to count its calls
    refiner_unet = refiner_service.extension("refiner")._loaded.parts["unet"]
    calls = UNetCalls(base=refiner_service.manager.pipelines["txt2img"].unet, refiner=refiner_unet)
    steps = []
    generation = refiner_service.generate(*refiner_service.build("txt2img", fields),  # each step as it ends
                                          on_step=lambda done, total: steps.append((done, total)))
    assert calls.remove() == {"base": 4 + 2, "refiner": 2}, "4 first steps; the 4 hires steps split at 0.5"
    assert steps[-1] == (8, 8)
    base = StableDiffusionXLPipeline.from_pretrained(family_folder("sdxl"), add_watermarker=False)
    texts = dict(prompt="a red circle", negative_prompt="blurry", guidance_scale=7.0)
    latents = _euler(base, 5)(**texts, num_inference_steps=4, width=64, height=64, output_type="latent",
                              generator=torch.Generator("cpu").manual_seed(5)).images
    larger = F.interpolate(latents, size=(latents.shape[-2] * 3 // 2,) * 2, mode="bilinear", antialias=False)
    second = _euler(StableDiffusionXLImg2ImgPipeline(**base.components), 5)
    switched = second(**texts, image=larger, strength=0.5, num_inference_steps=8, denoising_end=0.75,
                      output_type="latent", generator=torch.Generator("cpu").manual_seed(5)).images
    theirs = _euler(_reference_refiner(family_folder, base), 5)(
        **texts, image=switched, num_inference_steps=8, denoising_start=0.75,
        generator=torch.Generator("cpu").manual_seed(5)).images[0]
    ours = Image.open(generation.files[0])
    assert ours.size == (96, 96) and max_diff(ours, theirs) <= 2
    without = refiner_service.run("txt2img", dict(fields, refiner_checkpoint=""))
    assert max_diff(ours, Image.open(without.files[0])) > 8
    assert "Hires upscale: 1.5" in generation.infotexts[0] and "Refiner switch at: 0.5" in generation.infotexts[0]
    # prompt editing over both passes: the model's schedule on its steps, the refiner's encoding on its own
    edited = refiner_service.run("txt2img", dict(fields, prompt="[a red circle:dogs in the snow:3]"))
    assert Image.open(edited.files[0]).size == (96, 96)


@pytest.mark.slow
def test_the_refiners_steps_follow_the_prompts_edits_and_and(refiner_service, family_folder):
    """`[a red circle:dogs in the snow:2]` over 8 steps switched at 0.25: the model runs steps 0 and 1, the refiner
    step 2 with the first text and steps 3 to 7 with the second (its own encoder's), as plain diffusers' refiner
    switched by a step callback; AND composes on the refiner too (halves of one prompt draw that prompt)."""
    from diffusers import StableDiffusionXLPipeline

    fields = dict(prompt="[a red circle:dogs in the snow:2]", negative_prompt="blurry", sampler="Euler", seed=5,
                  guidance_scale=15.0, refiner_checkpoint="tiny-refiner", refiner_switch_at=0.25, width=64, height=64,
                  steps=8)
    refiner_service.run("txt2img", dict(fields, steps=1))  # the refiner loaded
    refiner_unet = refiner_service.extension("refiner")._loaded.parts["unet"]
    calls = UNetCalls(refiner=refiner_unet)
    try:
        ours = Image.open(refiner_service.run("txt2img", fields).files[0])
    finally:
        calls.remove()
    seen = calls.texts["refiner"]  # the text conditioning of each of the refiner's steps
    base = _euler(StableDiffusionXLPipeline.from_pretrained(family_folder("sdxl"), add_watermarker=False), 5)
    refiner = _euler(_reference_refiner(family_folder, base), 5)
    texts = dict(negative_prompt="blurry", num_inference_steps=8, guidance_scale=15.0)
    latents = base(prompt="a red circle", **texts, width=64, height=64, denoising_end=0.25, output_type="latent",
                   generator=torch.Generator("cpu").manual_seed(5)).images
    red, negative, _, negative_pooled = refiner.encode_prompt("a red circle", negative_prompt="blurry")
    dogs, _, dogs_pooled, _ = refiner.encode_prompt("dogs in the snow", negative_prompt="blurry")

    def switch(pipe, step, timestep, tensors):
        if step == 0:  # the refiner's first step is the schedule's step 2: the next one sees the second text
            tensors["prompt_embeds"] = torch.cat([negative, dogs])
            tensors["add_text_embeds"] = torch.cat([negative_pooled, dogs_pooled])
        return tensors

    theirs = refiner(prompt="a red circle", **texts, image=latents, denoising_start=0.25, callback_on_step_end=switch,
                     callback_on_step_end_tensor_inputs=["prompt_embeds", "add_text_embeds"],
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert max_diff(ours, theirs) <= 2
    assert len(seen) == 6 and torch.allclose(seen[0], torch.cat([negative, red]), atol=1e-4)
    assert all(torch.allclose(states, torch.cat([negative, dogs]), atol=1e-4) for states in seen[1:])
    unedited = refiner_service.run("txt2img", dict(fields, prompt="a red circle"))
    calls = UNetCalls(refiner=refiner_unet)
    try:
        halves = refiner_service.run("txt2img", dict(fields, prompt="a red circle :0.5 AND a red circle:0.5"))
    finally:
        calls.remove()
    assert {states.shape[0] for states in calls.texts["refiner"]} == {3}, "the negative and each part, composed"
    assert max_diff(Image.open(halves.files[0]), Image.open(unedited.files[0])) <= 2


@pytest.mark.slow
def test_the_refiner_takes_over_from_soft_inpainting(refiner_service):
    """Soft inpainting blends the model's steps, the refiner denoises the rest from the blended latents, and every
    pixel outside the mask is still the input's."""
    fields = dict(prompt="a red circle", sampler="Euler", seed=5, image=gradient_image(), mask=square_mask(),
                  soft_inpainting=True, strength=1.0, mask_blur=0, refiner_checkpoint="tiny-refiner",
                  refiner_switch_at=0.5, **SMALL)
    refined = Image.open(refiner_service.run("inpaint", fields).files[0])
    alone = Image.open(refiner_service.run("inpaint", dict(fields, refiner_checkpoint="")).files[0])
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(np.asarray(refined)[outside], np.asarray(gradient_image())[outside])
    assert max_diff(refined, alone) > 4


@pytest.mark.slow
def test_in_img2img_the_switch_is_a_fraction_of_the_steps_the_strength_leaves(refiner_service):
    """A1111 counts the switch in the steps that run: 8 steps at strength 0.5 run 4, the model 2 and the refiner 2
    (diffusers' own switch, a fraction of the whole schedule, left the model none of them)."""
    fields = dict(prompt="a red circle", sampler="Euler", seed=5, width=64, height=64, steps=8, strength=0.5,
                  image=gradient_image(), refiner_checkpoint="tiny-refiner", refiner_switch_at=0.5)
    refiner_service.run("img2img", fields)  # the refiner loaded
    calls = UNetCalls(base=refiner_service.manager.pipelines["img2img"].unet,
                      refiner=refiner_service.extension("refiner")._loaded.parts["unet"])
    refiner_service.run("img2img", fields)
    assert calls.remove() == {"base": 2, "refiner": 2}


@pytest.mark.slow
def test_controlnet_units_act_on_the_models_steps_before_the_refiner(refiner_service, family_folder, tmp_path):
    """txt2img: equal to diffusers' SDXL ControlNet pipeline stopped at the switch, then the refiner. In img2img
    (diffusers' SDXL ControlNet img2img pipeline stops at no switch) they are refused by name, and the service goes
    on."""
    from diffusers import StableDiffusionXLControlNetPipeline

    base_pipe = refiner_service.manager.pipelines["txt2img"]
    controlnet, unit = _xl_edges(refiner_service)
    control = unit["image"]
    fields = dict(prompt="a red circle", negative_prompt="blurry", sampler="Euler", seed=2, **SMALL,
                  controlnet_units=[unit], refiner_checkpoint="tiny-refiner", refiner_switch_at=0.5)
    ours = Image.open(refiner_service.run("txt2img", fields).files[0])
    plain = _euler(StableDiffusionXLControlNetPipeline(**{**base_pipe.components, "controlnet": controlnet},
                                                       add_watermarker=False), 2)
    texts = dict(prompt="a red circle", negative_prompt="blurry", num_inference_steps=4, guidance_scale=7.0)
    latents = plain(**texts, image=control, controlnet_conditioning_scale=0.9, width=64, height=64,
                    denoising_end=0.5, output_type="latent", generator=torch.Generator("cpu").manual_seed(2)).images
    theirs = _euler(_reference_refiner(family_folder, plain), 2)(
        **texts, image=latents, denoising_start=0.5, generator=torch.Generator("cpu").manual_seed(2)).images[0]
    assert max_diff(ours, theirs) <= 2
    with pytest.raises(ValueError, match=r"refiner_checkpoint: the refiner cannot take over from "
                                         r"StableDiffusionXLControlNetImg2ImgPipeline: it stops at no switch"):
        refiner_service.run("img2img", dict(fields, image=gradient_image(), strength=0.5))
    assert refiner_service.run("img2img", dict(fields, image=gradient_image(), strength=0.5,
                                               refiner_checkpoint="")).files


@pytest.mark.slow
def test_lora_training_on_sdxl_is_refused_with_the_reason(family_folder, tmp_path):
    from extensions.train import Train

    service = StudioService(PipelineManager.load(str(family_folder("sdxl")), device="cpu"), tmp_path / "outputs",
                            [Train(tmp_path / "Lora", tmp_path / "work")])
    picture = tmp_path / "circle.png"
    Image.new("RGB", (64, 64), "red").save(picture)
    train = next(extension for extension in service.extensions if isinstance(extension, Train))
    with pytest.raises(ValueError, match="LoRA training takes SD 1.x and SD 2.x models; this model is SDXL"):
        train.train([str(picture)], "a photo of sks", "xl-style", steps=2)
