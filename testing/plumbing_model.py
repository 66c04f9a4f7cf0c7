"""Build the plumbing model: a tiny Stable Diffusion 1.x inpainting model with random weights.

It has SD 1.x's exact layout (9-channel U-Net with 4 levels and cross-attention, 8x KL VAE, CLIP text encoder
with the real CLIP vocabulary, PNDM scheduler), only much narrower. It was the first demo model; the trained
shapes model (`--model demo`, training/train_shapes.py) replaced it there. It stays for the tests that need
SD 1.5's layout to the key (A1111 single-file round trips), and its tokenizer folder is the real CLIP vocabulary
the shapes model is trained with.

Deterministic: the same seed and versions give byte-identical safetensors.

    python -m testing.plumbing_model [--vocab PATH] [--out models/demo/sd-demo-inpainting]

PATH is open_clip's `bpe_simple_vocab_16e6.txt.gz`, or the open-clip-torch wheel that contains it
(`pip download --no-deps open-clip-torch`); without it the vocabulary already in --out is reused.
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

from models.demo.shipped import PLUMBING_DIR

SEED = 20261125


def clip_vocabulary(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    """Derive CLIP's vocab.json and merges from open_clip's BPE file, in the order OpenAI's tokenizer uses."""
    byte_chars = _bytes_to_unicode()
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    tokens = list(byte_chars) + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def _bytes_to_unicode() -> list[str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    mapping = {}
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    # OpenAI orders the printable bytes first, then the remapped ones.
    for b in printable:
        chars.append(mapping[b])
    for b in range(256):
        if b not in printable:
            chars.append(mapping[b])
    return chars


def read_bpe(path: Path) -> bytes:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz"))
            return wheel.read(name)
    return path.read_bytes()


def write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build_pipeline(tokenizer_dir: Path):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=16,  # 16 latents = 128 px default size
        in_channels=9,  # latents 4 + mask 1 + masked-image latents 4, as SD 1.5 inpainting
        out_channels=4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),  # four levels: 8x downsampling like SD
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=32,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=1,
        )
    )
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=Path, help="bpe_simple_vocab_16e6.txt.gz or the open-clip-torch wheel")
    parser.add_argument("--out", type=Path, default=PLUMBING_DIR)
    args = parser.parse_args(argv)

    tokenizer_dir = args.out / "tokenizer"
    if args.vocab:
        write_tokenizer(tokenizer_dir, *clip_vocabulary(read_bpe(args.vocab)))
    elif not (tokenizer_dir / "vocab.json").exists():
        parser.error("--vocab is needed: no CLIP vocabulary in " + str(tokenizer_dir))
    pipe = build_pipeline(tokenizer_dir)
    pipe.save_pretrained(args.out, safe_serialization=True)
    # transformers also writes a 3.6 MB tokenizer.json that vocab.json + merges.txt already define.
    (tokenizer_dir / "tokenizer.json").unlink(missing_ok=True)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"demo model written to {args.out} ({total / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
