"""The shapes-model training scripts run, save safetensors, resume where they stopped, and assemble into a
pipeline the app loads and generates with (a few steps on tiny batches: this checks the machinery, not quality)."""

from __future__ import annotations

import json

from models.demo import assemble_shapes, train_controlnet, train_lora, train_unet, train_vae
from models.manager import PipelineManager
from models.request import GenerationRequest


def test_train_resume_assemble_and_generate(tmp_path):
    train_vae.train(steps=2, batch_size=2, seed=3, folder=tmp_path / "vae")
    assert json.loads((tmp_path / "vae" / "state.json").read_text())["step"] == 2
    assert (tmp_path / "vae" / "model" / "diffusion_pytorch_model.safetensors").exists()
    train_unet.train(steps=2, batch_size=2, seed=3, work=tmp_path)
    train_unet.train(steps=3, batch_size=2, seed=3, work=tmp_path)  # resumes at step 2
    state = json.loads((tmp_path / "unet" / "state.json").read_text())
    assert state["step"] == 3 and state["latent_scale"] > 0
    folder = assemble_shapes.assemble(tmp_path / "pipeline", work=tmp_path)
    manager = PipelineManager.load(str(folder), device="cpu")
    assert manager.is_inpainting_model
    request = GenerationRequest("txt2img", "a red circle on a blue background", steps=2, width=64, height=64, seed=1)
    assert manager.generate(request).images[0].size == (64, 64)
    # the ControlNet and the LoRA train on top of the frozen parts and resume too
    train_controlnet.train(steps=1, batch_size=2, seed=3, work=tmp_path)
    train_controlnet.train(steps=2, batch_size=2, seed=3, work=tmp_path)
    controlnet = tmp_path / "controlnet" / "model"
    assert json.loads((tmp_path / "controlnet" / "state.json").read_text())["step"] == 2
    assert (controlnet / "diffusion_pytorch_model.safetensors").exists()
    lora_file = train_lora.train(steps=1, batch_size=2, seed=3, work=tmp_path)
    train_lora.train(steps=2, batch_size=2, seed=3, work=tmp_path)
    assert json.loads((tmp_path / "lora" / "state.json").read_text())["step"] == 2
    # exported as the app ships them, both load through its own extensions
    from extensions import lora
    from extensions.controlnet import pipeline as controlnet_extension
    from models.request import ControlInput
    from PIL import Image

    assert lora_file.name == "pastel.safetensors"
    assemble_shapes.export_extensions(tmp_path, controlnet_out=tmp_path / "ControlNet" / "canny",
                                      lora_out=tmp_path / "Lora" / "pastel.safetensors")
    adapters = lora.install(manager, tmp_path / "Lora")
    controlnets = controlnet_extension.install(manager, tmp_path / "ControlNet")
    styled = GenerationRequest("txt2img", "a red circle on a blue background", steps=2, width=64, height=64, seed=1,
                               loras=(("pastel", 1.0),), controls=(ControlInput("canny", Image.new("RGB", (64, 64))),))
    assert manager.generate(styled).images[0].size == (64, 64) and adapters.loaded_names == ["pastel"]
    assert controlnets.cache.loaded()


def test_min_snr_weighting_keeps_noisy_steps_and_weighs_clean_ones_less():
    import torch
    import torch.nn.functional as F

    prediction, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    noisy = torch.tensor([999, 900])  # SNR below gamma: weight 1, the plain mean squared error
    assert torch.allclose(train_unet.epsilon_loss(prediction, noise, noisy), F.mse_loss(prediction, noise))
    clean = torch.tensor([5, 5])  # SNR ~ 200: weight gamma / SNR
    alphas = train_unet.NOISE_SCHEDULER.alphas_cumprod[5]
    weight = train_unet.MIN_SNR_GAMMA * (1 - alphas) / alphas
    assert 0 < weight < 0.1
    assert torch.allclose(train_unet.epsilon_loss(prediction, noise, clean), weight * F.mse_loss(prediction, noise))
