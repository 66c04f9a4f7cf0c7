"""The shapes-model training scripts run, save safetensors, resume where they stopped, and assemble into a
pipeline the app loads and generates with (a few steps on tiny batches: this checks the machinery, not quality)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.manager import PipelineManager
from models.request import GenerationRequest
from training import assemble_shapes, train_controlnet, train_lora, train_unet, train_vae

pytestmark = pytest.mark.slow  # trains, resumes and assembles a model


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
    train_controlnet.train(steps=1, batch_size=2, seed=3, work=tmp_path, condition="segmentation")
    assert json.loads((tmp_path / "controlnet-seg" / "state.json").read_text())["step"] == 1
    lora_file = train_lora.train(steps=1, batch_size=2, seed=3, work=tmp_path)
    train_lora.train(steps=2, batch_size=2, seed=3, work=tmp_path)
    assert json.loads((tmp_path / "lora" / "state.json").read_text())["step"] == 2
    # exported as the app ships them, both load through its own extensions
    from PIL import Image

    from extensions import lora
    from extensions.controlnet import extension as controlnet_extension
    from extensions.controlnet.units import ControlInput, ControlNetPart

    assert lora_file.name == "pastel.safetensors"
    assemble_shapes.export_extensions(tmp_path, controlnet_out=tmp_path / "ControlNet" / "canny",
                                      lora_out=tmp_path / "Lora" / "pastel.safetensors",
                                      segmentation_out=tmp_path / "ControlNet" / "seg")
    adapters = lora.install(manager, tmp_path / "Lora")
    controlnets = controlnet_extension.install(manager, tmp_path / "ControlNet")
    assert controlnets.library.list_names() == ["canny", "seg"]
    styled = GenerationRequest("txt2img", "a red circle on a blue background", steps=2, width=64, height=64, seed=1,
                               parts={"lora": (("pastel", 1.0),), "controlnet": ControlNetPart(maps=(
                                   ControlInput("canny", Image.new("RGB", (64, 64))),
                                   ControlInput("seg", Image.new("RGB", (64, 64)))))})
    assert manager.generate(styled).images[0].size == (64, 64) and adapters.loaded_names == ["pastel"]
    assert len(controlnets.cache.loaded()) == 2


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
    from training.shapes import Scene, Shape

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

    from training import shapes
    from training.common import to_tensor

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
    from training import shapes

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

    from training import shapes

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


def test_segmentation_maps_paint_each_shape_in_its_kinds_ade20k_colour_where_the_image_draws_it():
    import numpy as np

    from extensions.controlnet.ade20k import CLASSES, PALETTE
    from training import shapes

    assert {part: CLASSES[index] for part, index in shapes.segment_ids().items()} == shapes.SEGMENT_CLASSES
    assert shapes.segment_ids() == {"background": 0, "circle": 119, "square": 41, "triangle": 114}
    colours = shapes.segment_colours()
    assert colours == {"background": (120, 120, 120), "circle": (255, 0, 163), "square": (0, 255, 20),
                       "triangle": (112, 224, 255)} == {part: tuple(PALETTE[index]) for part, index in
                                                        shapes.segment_ids().items()}
    for seed in range(60):
        scene = shapes.random_scene(np.random.default_rng(seed), two_shapes_probability=0.5)
        for size in (64, 96):
            segmented = shapes.segmentation(scene, size)
            assert segmented.mode == "RGB" and segmented.size == (size, size)
            seg = np.asarray(segmented)
            image = np.asarray(shapes.render(scene, size), dtype=float)
            # every pixel is exactly one palette colour: the background's or a drawn kind's, no blend at the edges
            used = {tuple(colour) for colour in seg.reshape(-1, 3)}
            assert used == {colours["background"]} | {colours[shape.kind] for shape in scene.shapes}, seed
            outside = np.ones((size, size), dtype=bool)
            background = np.array(shapes.COLOURS[scene.background], dtype=float)
            for shape in scene.shapes:
                x0, y0, x1, y1 = shapes.grown_box(shape, size, pad=2)
                outside[y0:y1, x0:x1] = False
                # how far each pixel of the render is from the background toward the shape's colour (0 to 1)
                toward = np.array(shapes.COLOURS[shape.colour], dtype=float) - background
                share = ((image[y0:y1, x0:x1] - background) @ toward) / (toward @ toward)
                painted = (seg[y0:y1, x0:x1] == colours[shape.kind]).all(axis=-1)
                assert painted[share > 0.6].all() and not painted[share < 0.4].any(), (seed, size, shape)
            assert (seg[outside] == colours["background"]).all(), seed
    image = shapes.segmentation(scene)
    image.paste((1, 2, 3), (0, 0, 64, 64))  # cached: a caller's change must not reach the next
    assert not np.array_equal(np.asarray(image), np.asarray(shapes.segmentation(scene)))


def test_segmentation_captions_name_another_place_or_kind_than_the_map(monkeypatch):
    from training import shapes

    monkeypatch.setattr(train_controlnet, "CAPTION_AGAINST_MAP", 1.0)
    items = [shapes.sample(seed) for seed in range(60)]
    captions, scenes = [item[1] for item in items], [item[2] for item in items]
    against = train_controlnet.captions_against_map(captions, scenes, np.random.default_rng(0))
    changes = set()
    for text, original, scene in zip(against, captions, scenes):
        if len(scene.shapes) == 2:
            assert text == original
            continue
        said, drawn = shapes.parse_caption(text), scene.shapes[0]
        assert said.background == scene.background, text
        said = said.shapes[0]
        assert (said.colour, said.size) == (drawn.colour, drawn.size), text  # the colour still comes from it
        changes.add((said.position != drawn.position, said.kind != drawn.kind))
    assert changes == {(True, False), (False, True), (True, True)}  # place, kind or both; never neither


def test_the_frozen_parts_come_from_the_shipped_pipeline_when_the_work_folder_has_none(tmp_path):
    import torch
    from safetensors.torch import load_file

    from models.demo import shipped

    latent_cache, unet, text_encoder, _, scale = train_unet.frozen_parts(tmp_path)
    assert scale == latent_cache.vae.config.scaling_factor and 0.5 < scale < 1.0
    shipped_unet = load_file(shipped.PIPELINE_DIR / "unet" / "diffusion_pytorch_model.safetensors")
    assert shipped_unet["conv_in.weight"].dtype == torch.float16
    for model in (latent_cache.vae, unet, text_encoder):
        assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())
    assert torch.equal(unet.state_dict()["conv_in.weight"], shipped_unet["conv_in.weight"].float())
    # a segmentation run starts from the canny ControlNet (here the shipped one, as float32) ...
    started = train_controlnet.train(steps=0, batch_size=2, seed=3, work=tmp_path, condition="segmentation")
    canny = load_file(shipped.CONTROLNET_DIR / shipped.CONTROLNET_NAME / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(value, canny[name].float()) for name, value in started.state_dict().items())
    # ... and trains on the shipped parts, in its own run folder
    train_controlnet.train(steps=1, batch_size=2, seed=3, work=tmp_path, condition="segmentation")
    assert json.loads((tmp_path / "controlnet-seg" / "state.json").read_text())["step"] == 1
    assert not (tmp_path / "controlnet").exists()
    with pytest.raises(ValueError, match="condition must be one of .*'depth'"):
        train_controlnet.train(steps=1, batch_size=2, seed=3, work=tmp_path, condition="depth")
