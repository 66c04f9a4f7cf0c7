"""VAE decoding of a big image, tiled (512 px tiles, as the app does above 1024x1024) against untiled: peak
resident memory added by the decode, and time. Each decode runs in its own process (a clean peak).

    python -m bench.vae_tiling

The demo model's VAE and the SD 1.5-shaped VAE (random weights, bench/sd15_random.py) at 1024x1024, both ways.
(At 2048x2048 a CPU decode takes many minutes either way; untiled, InvokeAI measured 19.9 GiB for SD 1.5 there,
against 0.55 GiB tiled. The added memory of the tiled decode stays that of its 512 px tiles however big the image.)
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [("demo", 1024, False), ("demo", 1024, True), ("sd15", 1024, False), ("sd15", 1024, True)]


def one(model: str, size: int, tile: bool) -> dict:
    """Decode latents of `size` px in a child process; its added peak RSS (MiB) and time (s)."""
    code = f"""
import json, resource, time, torch
from diffusers import AutoencoderKL
from models.vae_tiling import tiled
torch.set_grad_enabled(False)
if {model!r} == "demo":
    from models.loading import DEMO_MODEL_DIR
    vae = AutoencoderKL.from_pretrained(DEMO_MODEL_DIR, subfolder="vae")
else:
    from bench.sd15_random import cached
    vae = AutoencoderKL.from_pretrained(cached(inpainting=False), subfolder="vae")
factor = 2 ** (len(vae.config.block_out_channels) - 1)
latents = torch.randn(1, vae.config.latent_channels, {size} // factor, {size} // factor) * 0.5
tiled(vae, {tile})
before = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
started = time.perf_counter()
image = vae.decode(latents).sample
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"added MiB": peak - before, "seconds": seconds, "shape": list(image.shape)}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> dict:
    figures = {}
    for model, size, tile in CASES:
        figure = figures[(model, size, tile)] = one(model, size, tile)
        print(f"vae_tiling  {model} VAE {size}x{size} {'tiled' if tile else 'untiled'}: +{figure['added MiB']:,.0f} "
              f"MiB peak, {figure['seconds']:.1f} s")
    for model, size in (("demo", 1024), ("sd15", 1024)):
        untiled, tiled = figures[(model, size, False)], figures[(model, size, True)]
        print(f"vae_tiling  {model} {size}: tiled {tiled['added MiB'] / untiled['added MiB']:.2f}x the memory, "
              f"{tiled['seconds'] / untiled['seconds']:.2f}x the time of untiled")
    return figures


if __name__ == "__main__":
    main()
