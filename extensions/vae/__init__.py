"""A VAE chosen per request (A1111's SD VAE), and tiled VAE work for big images. See extension.py."""

from extensions.vae.extension import Vae

__all__ = ["Vae"]
