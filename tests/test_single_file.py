"""models.single_file: diffusers folder -> LDM / A1111 single file -> diffusers again, bit-identical."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from models.single_file import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, save_single_file
from tests.conftest import PLUMBING

# LDM keys that pin the block numbering A1111 expects (the diffusers loader alone would accept some wrong
# ones, e.g. an upsampler at output_blocks.N.1 or .2 either way).
DEMO_KEYS = [  # 4 levels, layers_per_block=1, up blocks: Up, CrossAttnUp x3
    "input_blocks.1.1.proj_in.weight",
    "input_blocks.2.0.op.weight",
    "input_blocks.6.0.op.weight",
    "input_blocks.7.0.in_layers.0.weight",
    "input_blocks.5.0.skip_connection.weight",
    "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
    "middle_block.2.emb_layers.1.weight",
    "output_blocks.1.1.conv.weight",
    "output_blocks.3.2.conv.weight",
    "output_blocks.5.2.conv.weight",
    "output_blocks.7.1.proj_out.weight",
    "time_embed.2.weight",
    "out.2.weight",
]
TXT2IMG_KEYS = [  # 2 levels, layers_per_block=2, up blocks: Up, CrossAttnUp
    "input_blocks.2.1.proj_in.weight",
    "input_blocks.3.0.op.weight",
    "input_blocks.5.0.out_layers.3.weight",
    "output_blocks.2.1.conv.weight",
    "output_blocks.5.1.transformer_blocks.0.ff.net.2.weight",
    "output_blocks.5.0.skip_connection.weight",
]
VAE_KEYS = [
    "encoder.down.0.downsample.conv.weight",
    "encoder.mid.attn_1.proj_out.weight",
    "decoder.up.1.upsample.conv.weight",
    "decoder.mid.block_2.conv2.bias",
]


@pytest.mark.parametrize("which", ["demo-inpainting", "txt2img"])
def test_round_trip(which, txt2img_folder, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    if which == "demo-inpainting":
        folder, pipeline_class, unet_keys, up_blocks = PLUMBING, StableDiffusionInpaintPipeline, DEMO_KEYS, 4
    else:
        folder, pipeline_class = txt2img_folder, StableDiffusionPipeline
        unet_keys, up_blocks = TXT2IMG_KEYS, 2

    path = save_single_file(folder, tmp_path / "model.safetensors")

    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        attn_q = f.get_tensor(VAE_PREFIX + "decoder.mid.attn_1.q.weight")
    for prefix in (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert all(k.startswith((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX)) for k in keys)
    assert {UNET_PREFIX + k for k in unet_keys} <= keys
    assert {VAE_PREFIX + k for k in VAE_KEYS} <= keys
    assert f"{VAE_PREFIX}decoder.up.{up_blocks - 1}.block.0.conv1.weight" in keys
    assert CLIP_PREFIX + "text_model.embeddings.position_embedding.weight" in keys
    assert attn_q.ndim == 4 and attn_q.shape[2:] == (1, 1)

    original = pipeline_class.from_pretrained(folder, local_files_only=True)
    loaded = pipeline_class.from_single_file(str(path), config=str(folder), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        expected, actual = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert actual.keys() == expected.keys(), name
        different = [k for k in expected if not torch.equal(actual[k], expected[k])]
        assert not different, f"{name}: {different[:5]}"
