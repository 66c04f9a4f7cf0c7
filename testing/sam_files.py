"""A tiny Segment Anything model in the Hub's file layout (`<folder>/facebook/sam-vit-base/`: config.json,
model.safetensors, preprocessor_config.json), for tests: nothing can be downloaded on the machines that test this
project.

`save_sam(folder)` writes random weights (deterministic by seed): its masks are arbitrary, but real SAM code makes
them. `save_sam(folder, follows_clicks=True)` writes weights set by hand (`follow_clicks`) so that the mask is a
disc around each include click, less what is nearer an exclude click, whatever the picture: a test can tell where a
click went.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from models.segment import REPO

SIDE = 128  # px: the tiny model's input (SAM's is 1024); 16 px patches make an 8x8 embedding
HIDDEN = 32


def save_sam(folder: Path, seed: int = 0, follows_clicks: bool = False) -> Path:
    """A tiny SamModel and its image processor in `folder`/facebook/sam-vit-base/; returns that folder."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    target = Path(folder) / REPO
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                                      image_size=SIDE, patch_size=16, output_channels=HIDDEN, window_size=4,
                                      global_attn_indexes=[1], num_pos_feats=HIDDEN // 2),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=HIDDEN, image_size=SIDE, patch_size=16,
                                                     mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                                                 mlp_dim=64, iou_head_hidden_dim=HIDDEN),
    )
    torch.manual_seed(seed)
    model = SamModel(config).eval()
    if follows_clicks:
        follow_clicks(model)
    model.save_pretrained(target, safe_serialization=True)
    # the image processor alone writes preprocessor_config.json, the Hub repository's file
    SamImageProcessor(size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE},
                      mask_size={"longest_edge": SIDE // 4},
                      mask_pad_size={"height": SIDE // 4, "width": SIDE // 4}).save_pretrained(target)
    return target


# The hidden dimensions `follow_clicks` gives a meaning: the positional encoding's varying sines and cosines, and
# one free dimension for each kind of token (the encoding is 0 there).
WAVES = 3  # directions of the positional encoding's waves
PE = [*range(WAVES), *range(HIDDEN // 2, HIDDEN // 2 + WAVES)]  # sin and cos of each wave
IOU, MASKS, INCLUDE, EXCLUDE, PAD = 4, (5, 6, 7, 8), 9, 10, 11
FREE = list(range(WAVES, HIDDEN // 2))
FREQUENCY = 0.35  # waves per unit of the [-1, 1] coordinates: one click's disc has a radius of ~21% of the side
THRESHOLD = 2.4  # of the similarity (3 at the click): a pixel is in a lone click's disc where it is above this
GAIN = 2.0  # attention logit per unit of similarity


@torch.no_grad()
def follow_clicks(model) -> None:
    """Set a tiny SAM's weights (`save_sam`'s shape, one two-way layer) so that its masks are a disc around each
    include click, less what is nearer an exclude click, whatever the picture.

    How: the picture's embedding is zeroed; each pixel then attends (the layer's image-to-token attention) to each
    click by how close it is (the dot product of their positional encodings, as in SAM), and to the other tokens at
    a fixed weight; the values say whether a token is an include click. A pixel is in the mask where its attention
    to include clicks outweighs the rest; the decoder's upscaling and hypernetworks pass that sign through."""
    decoder, layer = model.mask_decoder, model.mask_decoder.transformer.layers[0]
    unit = torch.eye(HIDDEN)
    # the positional encoding: WAVES directions at one frequency (the rest 0: sin 0, cos 1)
    angles = torch.arange(WAVES) * math.pi / WAVES
    frequencies = torch.zeros(2, HIDDEN // 2)
    frequencies[:, :WAVES] = FREQUENCY * torch.stack([angles.cos(), angles.sin()])
    model.shared_image_embedding.positional_embedding.copy_(frequencies)
    model.prompt_encoder.shared_embedding.positional_embedding.copy_(frequencies)
    # the picture's embedding is 0 (no mask prompt adds anything either)
    model.vision_encoder.neck.layer_norm2.weight.zero_()
    model.vision_encoder.neck.layer_norm2.bias.zero_()
    model.prompt_encoder.no_mask_embed.weight.zero_()
    # each kind of token is one free dimension
    decoder.iou_token.weight.copy_(unit[IOU])
    decoder.mask_tokens.weight.copy_(unit[list(MASKS)])
    model.prompt_encoder.point_embed[1].weight.copy_(unit[INCLUDE])
    model.prompt_encoder.point_embed[0].weight.copy_(unit[EXCLUDE])
    model.prompt_encoder.not_a_point_embed.weight.copy_(unit[PAD])
    # the tokens' self-attention: each attends to its own kind; the include clicks keep their dimension, the rest 0
    free = torch.zeros(HIDDEN, HIDDEN)
    free[FREE, FREE] = 10.0
    _set(layer.self_attn.q_proj, free)
    _set(layer.self_attn.k_proj, free)
    _set(layer.self_attn.v_proj, unit[INCLUDE].diag())
    _set(layer.self_attn.out_proj, unit[INCLUDE].diag())
    # the tokens learn nothing of the picture; their norms keep the include dimension only (sqrt(31) there)
    _set(layer.cross_attn_token_to_image.out_proj, torch.zeros(HIDDEN, layer.cross_attn_token_to_image.internal_dim))
    _set(layer.mlp.lin2, torch.zeros(HIDDEN, layer.mlp.lin2.in_features))
    for norm in (layer.layer_norm1, layer.layer_norm2, layer.layer_norm3):
        norm.weight.copy_(unit[INCLUDE])
        norm.bias.zero_()
    # the pixels' attention (head 0): GAIN x similarity to each click, and a fixed logit to the 6 other tokens (one
    # more dimension: 1 for every pixel, `other` for those tokens), so a lone include click wins where its
    # similarity is over THRESHOLD; next to an exclude click, the nearer one wins
    attention = layer.cross_attn_image_to_token
    head = attention.internal_dim // attention.num_attention_heads
    scale = math.sqrt(GAIN * math.sqrt(head))
    select = torch.zeros(attention.internal_dim, HIDDEN)
    select[range(len(PE)), PE] = scale
    _set(attention.q_proj, select)
    attention.q_proj.bias[len(PE)] = 1.0
    others = select.clone()
    other = GAIN * THRESHOLD - math.log(len(MASKS) + 2)  # e^(GAIN x THRESHOLD) = 6 e^other
    others[len(PE), [IOU, *MASKS, PAD]] = other * math.sqrt(head)
    _set(attention.k_proj, others)
    value = torch.zeros(attention.internal_dim, HIDDEN)
    value[0, INCLUDE] = 1.0
    _set(attention.v_proj, value, bias=-math.sqrt(HIDDEN - 1) / 2)  # > 0 for include clicks, < 0 for the rest
    out = torch.zeros(HIDDEN, attention.internal_dim)
    out[0, 0], out[1, 0] = 1.0, -1.0  # two opposite channels, so the norms keep the sign
    _set(attention.out_proj, out)
    layer.layer_norm4.weight.fill_(1.0)
    layer.layer_norm4.bias.zero_()
    # the upscaling passes channel 0's sign on; every mask token's hypernetwork reads channel 0
    for conv in (decoder.upscale_conv1, decoder.upscale_conv2):
        conv.weight.zero_()
        conv.weight[0, 0], conv.weight[1, 0] = 1.0, -1.0
        conv.bias.zero_()
    decoder.upscale_layer_norm.weight.fill_(1.0)
    decoder.upscale_layer_norm.bias.zero_()
    for mlp in decoder.output_hypernetworks_mlps:
        mlp.proj_out.weight.zero_()
        mlp.proj_out.bias.copy_(torch.eye(mlp.proj_out.out_features)[0])


def _set(linear: torch.nn.Linear, weight: torch.Tensor, bias: float = 0.0) -> None:
    linear.weight.copy_(weight)
    linear.bias.zero_()
    linear.bias[0] = bias
