"""Big images go through the VAE in tiles: above TILED_ABOVE pixels it encodes and decodes in TILE px tiles
(diffusers' tiled VAE, with its blended overlaps), so a 2048x2048 decode needs about the memory of a 512 px one. At
or below that size nothing changes, and pixels equal plain diffusers'. Set for every call's size (the VAE slice for
a request, hires fix for its second pass), so it never carries over from one request to the next."""

from __future__ import annotations

TILED_ABOVE = 1024 * 1024  # pixels: a bigger image goes through the VAE in tiles
TILE = 512  # px of a tile (SD 1.5's VAE's own; the demo model's would be 64)


def tiled(vae, on: bool) -> None:
    """Tiled encoding and decoding on or off, in TILE px tiles."""
    vae.use_tiling = on
    if on:
        vae.tile_sample_min_size = TILE
        vae.tile_latent_min_size = TILE // 2 ** (len(vae.config.block_out_channels) - 1)


def tile_for(vae, width: int, height: int) -> None:
    """Tiles on for an image of width x height when it is over TILED_ABOVE pixels, off otherwise."""
    tiled(vae, width * height > TILED_ABOVE)
