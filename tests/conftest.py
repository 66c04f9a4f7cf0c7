"""Shared fixtures: the demo model, a tiny 4-channel SD model built here, and the launched app."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from testing.ports import free_port

# Nothing in the tests may reach the Hub; make any attempt fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo" / "sd-shapes-inpainting"  # what --model demo loads: the trained shapes model
# Random weights in SD 1.5's exact layout (no text embedding in the U-Net, fp32): for A1111 single-file round trips.
PLUMBING = ROOT / "models" / "demo" / "sd-demo-inpainting"
ARTIFACTS = ROOT / "tests" / "artifacts"

# Fixtures that start the app (in this process or another), a browser or a Ray cluster: a test using any of them,
# directly or through another fixture, is marked `server` and left out of `make test-fast`.
SERVER_FIXTURES = {"app_server", "fresh_app", "locked_server", "server", "ray_app", "browser"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def txt2img_folder(tmp_path_factory) -> Path:
    """A tiny 4-channel SD 1.x pipeline shaped unlike the demo: 2 levels, layers_per_block=2 everywhere."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("sd-txt2img")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            projection_dim=32,
            max_position_embeddings=77,
            vocab_size=49408,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(DEMO / "tokenizer", model_max_length=77),
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False, beta_schedule="scaled_linear",
                                beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder / "tokenizer-src", ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
def family_folder(tmp_path_factory):
    """family_folder("sdxl"): the tiny model of that family (testing/family_models.py), built on first use."""
    from testing.family_models import build

    built = {}

    def folder(family: str) -> Path:
        if family not in built:
            built[family] = build(family, tmp_path_factory.mktemp(family) / family)
        return built[family]

    return folder


@pytest.fixture(scope="session")
def demo_manager():
    from models.manager import PipelineManager

    return PipelineManager.load("demo", device="cpu")


@pytest.fixture(scope="session")
def txt2img_manager(txt2img_folder):
    from models.manager import PipelineManager

    return PipelineManager.load(str(txt2img_folder), device="cpu")


@pytest.fixture(scope="session")
def annotator_weights(tmp_path_factory) -> Path:
    """An annotator folder (--annotator-dir) holding tiny random Depth Anything V2, UperNet ADE20K and SAM (clicks
    followed) models, OpenPose's real-shaped random body, hand and face networks, each in its Hub repository's file
    layout, LaMa's and MediaPipe's files."""
    from testing.annotator_weights import save_annotators

    return save_annotators(tmp_path_factory.mktemp("annotators"))


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, annotator_weights):
    """The real app on the demo model, launched on a free local port, with one LoRA ("ink"), one ControlNet
    ("edges") and one IP-Adapter ("ip-adapter_demo", its image encoder in the annotator folder), one upscaler
    ("tiny-x2"), one VAE ("changed": the demo's, its decoder moved) and one embedding ("shiny-style", and a pickled
    "evil") in its folders, two prompt styles ("inked": `{prompt}` placed, "moody": a
    negative prompt too) and the preprocessor weights of `annotator_weights`; yields (url, service)."""
    from diffusers import StableDiffusionInpaintPipeline

    import app
    from testing.adapter_files import save_image_encoder, save_ip_adapter
    from testing.controlnet_files import controlnet_for
    from testing.embedding_files import make_embedding
    from testing.lora_files import make_lora
    from testing.upscaler_files import make_upscaler
    from testing.vae_files import changed_vae, save_ldm_vae

    lora_dir, controlnet_dir = tmp_path_factory.mktemp("Lora"), tmp_path_factory.mktemp("ControlNet")
    embeddings_dir = tmp_path_factory.mktemp("embeddings")
    demo = StableDiffusionInpaintPipeline.from_pretrained(DEMO, safety_checker=None)
    make_lora(demo, lora_dir / "ink.safetensors", seed=7)
    make_embedding(embeddings_dir / "shiny-style.safetensors", demo.text_encoder.config.hidden_size, vectors=2)
    (embeddings_dir / "evil.pt").write_bytes(b"never unpickled")
    controlnet_for(demo.unet, seed=1, vae_scale_factor=demo.vae_scale_factor).save_pretrained(controlnet_dir / "edges")
    save_ip_adapter(demo.unet, controlnet_dir / "ip-adapter_demo.safetensors")
    save_image_encoder(annotator_weights)
    upscaler_dir = tmp_path_factory.mktemp("upscale_models")
    make_upscaler(upscaler_dir / "tiny-x2.safetensors", "compact", 2)
    vae_dir = tmp_path_factory.mktemp("VAE")
    save_ldm_vae(changed_vae(demo.vae), vae_dir / "changed.safetensors")
    styles_file = tmp_path_factory.mktemp("styles") / "styles.csv"
    styles_file.write_text('name,prompt,negative_prompt\ninked,"ink drawing of {prompt}, lineart",\n'
                           'moody,dark and moody,"bright, sunny"\n')
    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()), "--lora-dir", str(lora_dir),
         "--controlnet-dir", str(controlnet_dir), "--annotator-dir", str(annotator_weights),
         "--embeddings-dir", str(embeddings_dir), "--upscaler-dir", str(upscaler_dir), "--vae-dir", str(vae_dir),
         "--styles-file", str(styles_file),
         "--output-dir", str(tmp_path_factory.mktemp("outputs")), "--ckpt-dir", str(checkpoint_dir(tmp_path_factory)),
         "--api", "on"],
        environ={},
    )
    server, service = app.start_in_background(config)
    yield f"http://{config.host}:{config.port}", service
    app.stop_in_background(server)


def checkpoint_dir(tmp_path_factory) -> Path:
    """The app_server's checkpoint folder (--ckpt-dir): what sd_model_checkpoint may switch to, besides demo."""
    folder = tmp_path_factory.getbasetemp() / "Stable-diffusion"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def client(app_server):
    from gradio_client import Client

    return Client(app_server[0], verbose=False)
