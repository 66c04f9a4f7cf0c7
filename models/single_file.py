"""Export a diffusers Stable Diffusion pipeline folder (SD 1.x, SD 2.x, SDXL) as one LDM / AUTOMATIC1111
``.safetensors`` file.

Used by the tests, which need the single-file form of a diffusers model (the demo model is stored only as
a diffusers folder), and by the user-facing export of a model in the A1111 checkpoint format.

It is the inverse of diffusers' own single-file conversion (``diffusers/loaders/single_file_utils.py``:
``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``) and a
generalisation of diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``: the number of
blocks and ``layers_per_block`` come from each component's ``config.json`` instead of SD 1.5's 4 x 2.
Keys of the written file:

    model.diffusion_model.*            U-Net  (input_blocks / middle_block / output_blocks / time_embed / out;
                                       SDXL's size conditioning in label_emb)
    first_stage_model.*                VAE    (encoder.down / decoder.up / mid.attn_1 as 1x1 convs)
    cond_stage_model.transformer.*     SD 1.x: CLIP text encoder (text_model.* as in transformers < 5.6)
    cond_stage_model.model.*           SD 2.x: OpenCLIP text encoder (transformer.resblocks.*, in_proj q/k/v joined)
    conditioner.embedders.0.transformer.*, conditioner.embedders.1.model.*   SDXL: CLIP, then OpenCLIP

Tensors are copied unchanged (same dtype and values; only the VAE mid-attention weights get a 1x1 shape, OpenCLIP's
attention projections are joined and its text projection transposed), so loading the file back gives the original
weights exactly. Load it back, offline, with the diffusers
folder (or a copy of its config files and tokenizer) as ``config``:

    StableDiffusionInpaintPipeline.from_single_file(str(path), config=str(folder), local_files_only=True)

(``StableDiffusionPipeline`` for a 4-channel U-Net.) ``config`` must be a ``str`` (diffusers 0.42 rejects a
``Path``). With a local ``config`` folder diffusers makes no network call even without ``local_files_only``;
passing ``local_files_only=True`` guarantees it never tries. No other keyword is needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."
XL_PREFIXES = ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.")

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's size and pooled-text conditioning
    "add_embedding.linear_2": "label_emb.0.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def save_single_file(pipeline_folder: str | Path, out_path: str | Path) -> Path:
    """Write the U-Net, VAE and text encoder of ``pipeline_folder`` to ``out_path`` in LDM key format."""
    folder, out_path = Path(pipeline_folder), Path(out_path)
    unet, unet_config = _load_component(folder / "unet")
    vae, vae_config = _load_component(folder / "vae")
    text_encoder, text_config = _load_component(folder / "text_encoder")

    checkpoint = {}
    checkpoint.update({UNET_PREFIX + k: v for k, v in unet_to_ldm(unet, unet_config).items()})
    checkpoint.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae, vae_config).items()})
    if (folder / "text_encoder_2").is_dir():  # SDXL
        text_encoder_2, _ = _load_component(folder / "text_encoder_2")
        checkpoint.update({XL_PREFIXES[0] + k: v for k, v in clip_to_ldm(text_encoder).items()})
        checkpoint.update({XL_PREFIXES[1] + k: v for k, v in open_clip_to_ldm(text_encoder_2).items()})
    elif text_config["hidden_act"] == "gelu":  # SD 2.x's OpenCLIP
        checkpoint.update({OPEN_CLIP_PREFIX + k: v for k, v in open_clip_to_ldm(text_encoder).items()})
    else:
        checkpoint.update({CLIP_PREFIX + k: v for k, v in clip_to_ldm(text_encoder).items()})

    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(out_path), metadata={"format": "pt"})
    return out_path


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``UNet2DConditionModel`` state dict to LDM ``UNetModel`` keys (without prefix)."""
    n = config["layers_per_block"] + 1  # LDM blocks per level: L resnets (+ downsample) / L + 1 resnets up
    up_with_attention = {  # upsampler follows the resnet (.1) or the resnet and its attention (.2)
        int(k.split(".")[1]) for k in state_dict if re.match(r"up_blocks\.\d+\.attentions\.", k)
    }

    def rename(key: str) -> str:
        if m := re.fullmatch(r"(.+)\.(weight|bias)", key):
            if m[1] in _UNET_FIXED:
                return f"{_UNET_FIXED[m[1]]}.{m[2]}"
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            sub = f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}"
            return f"input_blocks.{n * i + j + 1}.{sub}"
        if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            return f"input_blocks.{n * (int(m[1]) + 1)}.0.op.{m[2]}"
        if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            return f"middle_block.1.{m[1]}"
        if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            sub = f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}"
            return f"output_blocks.{n * i + j}.{sub}"
        if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            i = int(m[1])
            return f"output_blocks.{n * i + n - 1}.{2 if i in up_with_attention else 1}.conv.{m[2]}"
        raise ValueError(f"U-Net key without an LDM equivalent: {key}")

    return {rename(k): v for k, v in state_dict.items()}


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``AutoencoderKL`` state dict to LDM ``AutoencoderKL`` keys (without prefix)."""
    num_up = len(config["up_block_types"])

    def rename(key: str) -> str:
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            return f"{m[1]}.norm_out.{m[2]}"
        if re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\.\w+|(post_)?quant_conv\.\w+", key):
            return key
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            return f"encoder.down.{m[1]}.downsample.{m[2]}"
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            return f"decoder.up.{num_up - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            return f"decoder.up.{num_up - 1 - int(m[1])}.upsample.{m[2]}"
        if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
        if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
            if m[2] in _VAE_ATTENTION:
                return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
        raise ValueError(f"VAE key without an LDM equivalent: {key}")

    out = {}
    for key, tensor in state_dict.items():
        ldm_key = rename(key)
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm_key) and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # linear -> 1x1 conv, as LDM stores them
        out[ldm_key] = tensor
    return out


def clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP text encoder keys as LDM's ``FrozenCLIPEmbedder.transformer`` has them: ``text_model.*``."""
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.`` level); LDM checkpoints keep it.
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state_dict.items()}


_OPEN_CLIP_PARTS = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                    "self_attn.out_proj": "attn.out_proj"}


def open_clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder's keys as OpenCLIP's (SD 2.x, SDXL's second encoder): its layers as
    ``transformer.resblocks.N`` with q, k and v joined in ``attn.in_proj_*``, the text projection transposed."""
    state_dict = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    out = {}
    for key, tensor in state_dict.items():
        if key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif key.startswith("final_layer_norm."):
            out[key.replace("final_layer_norm.", "ln_final.")] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", key):
            layer, kind = m[1], m[2]
            parts = [state_dict[f"encoder.layers.{layer}.self_attn.{name}_proj.{kind}"] for name in "qkv"]
            out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(parts)
        elif re.fullmatch(r"encoder\.layers\.\d+\.self_attn\.[kv]_proj\.\w+", key):
            continue  # joined with q's
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            if m[2] not in _OPEN_CLIP_PARTS:
                raise ValueError(f"text encoder key without an OpenCLIP equivalent: {key}")
            out[f"transformer.resblocks.{m[1]}.{_OPEN_CLIP_PARTS[m[2]]}.{m[3]}"] = tensor
        else:
            raise ValueError(f"text encoder key without an OpenCLIP equivalent: {key}")
    return out


def _resnet(rest: str) -> str:
    name, _, param = rest.rpartition(".")
    return f"{_UNET_RESNET.get(name, name)}.{param}"


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def _load_component(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    names = ("diffusion_pytorch_model.safetensors", "model.safetensors")
    files = [folder / name for name in names if (folder / name).is_file()]
    if not files:  # sharded weights
        index = next(folder.glob("*.safetensors.index.json"), None)
        if index is None:
            raise FileNotFoundError(f"no safetensors weights in {folder}")
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    state_dict = {}
    for f in files:
        state_dict.update(load_file(str(f)))
    return state_dict, config
