"""The shapes-model training scripts run, save safetensors, resume where they stopped, and assemble into a
pipeline the app loads and generates with (a few steps on tiny batches: this checks the machinery, not quality)."""

from __future__ import annotations

import json

from models.demo import assemble_shapes, train_controlnet, train_lora, train_unet, train_vae
from models.manager import PipelineManager
from models.request import GenerationRequest


def test_train_resume_assemble_and_generate(tmp_path):
    train_vae.train(steps=2, batch_size=2, seed=3, folder=tmp_path / "vae", decoder_steps=1)
    assert json.loads((tmp_path / "vae" / "state.json").read_text())["step"] == 3
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


def test_vae_decoder_phase_leaves_the_encoder_and_resumes_as_a_straight_run(tmp_path):
    import shutil

    import torch
    from diffusers import AutoencoderKL

    def weights(folder):
        return AutoencoderKL.from_pretrained(folder / "model").state_dict()

    train_vae.train(steps=2, batch_size=2, seed=3, folder=tmp_path / "joint", decoder_steps=0)
    shutil.copytree(tmp_path / "joint", tmp_path / "resumed")
    train_vae.train(steps=2, batch_size=2, seed=3, folder=tmp_path / "resumed", decoder_steps=2)
    train_vae.train(steps=2, batch_size=2, seed=3, folder=tmp_path / "straight", decoder_steps=2)
    assert json.loads((tmp_path / "resumed" / "state.json").read_text())["step"] == 4
    joint, resumed, straight = (weights(tmp_path / name) for name in ("joint", "resumed", "straight"))
    for name, tensor in joint.items():
        assert torch.equal(resumed[name], straight[name]), name
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(resumed[name], tensor), name  # the latents the other models train on are kept
    changed = [name for name in joint if not torch.equal(resumed[name], joint[name])]
    assert changed and all(name.startswith(("decoder.", "post_quant_conv.")) for name in changed)


def test_min_snr_weighting_keeps_middle_steps_lifts_the_noisiest_and_lowers_clean_ones():
    import torch
    import torch.nn.functional as F

    prediction, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    snr = train_unet.NOISE_SCHEDULER.alphas_cumprod / (1 - train_unet.NOISE_SCHEDULER.alphas_cumprod)
    middle = torch.tensor([300, 400])  # SNR 1.4 and 0.7, between the floor and gamma: the plain mean squared error
    assert torch.allclose(train_unet.epsilon_loss(prediction, noise, middle), F.mse_loss(prediction, noise))
    noisiest = torch.tensor([900, 900])  # SNR 0.014, under the floor: weight floor / SNR, about 17
    weight = train_unet.SNR_FLOOR / snr[900]
    assert weight > 10
    assert torch.allclose(train_unet.epsilon_loss(prediction, noise, noisiest), weight * F.mse_loss(prediction, noise))
    clean = torch.tensor([5, 5])  # SNR ~ 200: weight gamma / SNR
    weight = train_unet.MIN_SNR_GAMMA / snr[5]
    assert 0 < weight < 0.1
    assert torch.allclose(train_unet.epsilon_loss(prediction, noise, clean), weight * F.mse_loss(prediction, noise))


def test_foreground_weights_cover_each_shapes_box_grown_by_one_cell():
    from models.demo.shapes import Scene, Shape

    corner = Scene(shapes=(Shape("circle", "red", "small", "top left"),), background="blue")
    centre = Scene(shapes=(Shape("square", "red", "large"),), background="blue")
    weights = train_unet.foreground_weights([corner, centre], 16).cpu()[:, 0]
    heavy = 1 + train_unet.FOREGROUND_WEIGHT
    # the small top-left box spans cells 0.8..4.8 of 16: rows and columns 0..5 once grown, nothing beyond
    assert (weights[0, :6, :6] == heavy).all() and (weights[0, 6:, :] == 1).all() and (weights[0, :, 6:] == 1).all()
    # the large centred box spans 3.2..12.8: cells 2..13 once grown
    assert (weights[1, 2:14, 2:14] == heavy).all() and weights[1, 1, 1] == 1 and weights[1, 14, 14] == 1


def test_foreground_weighted_loss_is_a_weighted_mean_of_the_squared_error():
    import torch

    prediction, noise = torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    noise[..., 0, 0] = 2.0  # error 4 on one cell of four
    noisy = torch.tensor([300])  # Min-SNR weight 1
    flat = torch.ones(1, 1, 2, 2)
    assert torch.isclose(train_unet.epsilon_loss(prediction, noise, noisy, flat), torch.tensor(1.0))
    on_error = flat.clone()
    on_error[..., 0, 0] = 5.0  # that cell weighs 5 of 8
    assert torch.isclose(train_unet.epsilon_loss(prediction, noise, noisy, on_error), torch.tensor(4 * 5 / 8))


def test_masked_latents_encode_a_full_mask_as_a_black_image():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4).eval()
    pixels = torch.rand(3, 3, 16, 16) * 2 - 1
    mask = torch.zeros(3, 1, 16, 16)
    mask[0] = 1  # full: the black image
    mask[1, :, :8] = 1  # the top half blacked out
    with torch.no_grad():
        latents = train_unet.masked_latents(vae, pixels, mask)
        one_by_one = [vae.encode(p[None] * (m[None] < 0.5)).latent_dist.mode()[0] for p, m in zip(pixels, mask)]
    assert torch.allclose(latents, torch.stack(one_by_one), atol=1e-5)


def counting_vae():
    """A tiny VAE whose encode records each batch's size in `encoded`; and its own, uncounted encode."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4).eval()
    encoded = []
    encode = vae.encode
    vae.encode = lambda pixels: encoded.append(len(pixels)) or encode(pixels)
    return vae, encoded, encode


def test_latent_cache_encodes_each_image_once_and_samples_it_anew():
    import torch

    from models.demo import shapes
    from models.demo.training import to_tensor

    torch.manual_seed(0)
    vae, encoded, encode = counting_vae()
    scene = shapes.sample(1)[2]
    plain, other, pastel = shapes.render(scene), shapes.sample(2)[0], shapes.render(scene, style="pastel")
    cache = train_unet.LatentCache(vae)
    first = cache.sample([plain, other, plain])
    assert encoded == [2]  # the repeated image once
    second = cache.sample([other, pastel, plain])
    assert encoded == [2, 1]  # only the pastel one, a different image of the same scene
    with torch.no_grad():
        truth = encode(to_tensor([plain, other])).latent_dist
    assert not torch.equal(first[0], first[2])  # each use draws anew from the image's distribution
    draws = torch.stack([cache.sample([plain, other]) for _ in range(400)])
    assert torch.allclose(draws.mean(0), truth.mean, atol=0.2 * truth.std.max())
    assert torch.allclose(draws.std(0), truth.std, rtol=0.2)
    assert second.shape == first.shape == (3, *truth.mean.shape[1:])


def test_latent_cache_drops_the_least_recently_used_beyond_its_limit():
    from models.demo import shapes

    vae, encoded, _ = counting_vae()
    a, b, c = (shapes.sample(seed)[0] for seed in range(3))
    cache = train_unet.LatentCache(vae, limit=2)
    cache.sample([a, b])
    cache.sample([a])  # a is now the most recently used
    cache.sample([c])  # so b is dropped
    assert len(cache.stored) == 2 and encoded == [2, 1]
    cache.sample([a, c])
    assert encoded == [2, 1]
    cache.sample([b])
    assert encoded == [2, 1, 1]
    assert cache.sample([a, b, c]).shape == (3, 4, 64, 64)  # a batch larger than the limit still samples whole
    assert len(cache.stored) == 2


def test_controlnet_captions_against_the_edges_move_only_one_shape_scenes(monkeypatch):
    import numpy as np

    from models.demo import shapes

    monkeypatch.setattr(train_controlnet, "CAPTION_ELSEWHERE", 1.0)
    items = [shapes.sample(seed) for seed in range(40)]
    captions, scenes = [item[1] for item in items], [item[2] for item in items]
    against = train_controlnet.captions_against_edges(captions, scenes, np.random.default_rng(0))
    for text, original, scene in zip(against, captions, scenes):
        if len(scene.shapes) == 2:
            assert text == original
            continue
        said, drawn = shapes.parse_caption(text).shapes[0], scene.shapes[0]
        assert said.position != drawn.position, text
        assert (said.kind, said.colour, said.size) == (drawn.kind, drawn.colour, drawn.size), text
    assert any(len(scene.shapes) == 2 for scene in scenes) and any(len(scene.shapes) == 1 for scene in scenes)
