"""Train the whole shapes demo model from nothing, then put it where the app finds it: the VAE, the text encoder
and U-Net, the canny and segmentation ControlNets and the pastel LoRA (each with its script's defaults, each
resumable: run it again after an interruption and it goes on), then assemble_shapes. About 100 minutes on 2 CPU
cores; uses CUDA when there is a GPU.

    python -m training.train_shapes
"""

from __future__ import annotations

import time

from training import assemble_shapes, train_controlnet, train_lora, train_unet, train_vae


def main() -> None:
    started = time.monotonic()
    scripts = ((train_vae, []), (train_unet, []), (train_controlnet, []),
               (train_controlnet, ["--condition", "segmentation"]), (train_lora, []))
    for script, argv in scripts:
        began = time.monotonic()
        script.main(argv)
        print(f"{' '.join([script.__name__, *argv])}: {(time.monotonic() - began) / 60:.1f} min", flush=True)
    assemble_shapes.main()
    print(f"shapes model trained and assembled in {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
