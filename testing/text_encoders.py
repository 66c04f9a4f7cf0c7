"""Text encoders of real shapes with random weights, for tests and benchmarks of prompt encoding."""

from __future__ import annotations

import torch
from transformers import CLIPTextConfig, CLIPTextModel


def sd15_text_encoder(seed: int = 0) -> CLIPTextModel:
    """SD 1.5's text encoder shape (12 layers, 768 wide), random weights. The layer norms get random parameters
    too, their biases shifted off zero: with the initial bias 0 a chunk's mean is about 1e-4, and A1111's emphasis
    rescale (the chunk's mean before the weights over its mean after) would divide rounding noise by it."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.3 * torch.randn_like(module.weight))
                module.bias.add_(0.3 * torch.randn_like(module.bias) + 0.1)
    return model
