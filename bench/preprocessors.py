"""ControlNet preprocessors: each available one's time on a 512 px image on the CPU, cold (the first call, its model
loaded from disk included), warm (a second call that misses the map cache) and cached (a MapCache hit).

    python -m bench.preprocessors [--all]

The preprocessors with weights run on full-size architectures with random weights written into a temporary annotator
folder in the Hub repositories' file layout: compute time does not depend on the weights' values. Two exceptions, said
in the output: OpenPose's hand and face networks run only where the body network finds a person, which random
weights never do; and the files were just written, so "cold" reads them from the page cache, not from a cold disk.
Left out unless --all: depth_zoe (BEiT-L, 1.4 GB), and the variants that run another row's network with other
post-processing (softedge_hedsafe, openpose_full, ...). To bound the run (under 3 minutes on 2 cores), depth, pose
and segmentation go first, then the others cheapest first, and after 120 s of timing no new preprocessor starts and
no warm call is made.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from extensions.controlnet import detectors, preprocessors
from extensions.controlnet.detectors import ANNOTATORS, controlnet_aux
from extensions.controlnet.preprocessors import MapCache
from testing.annotator_weights import save_annotators

SIZE = 512
BUDGET_S = 120.0
# timed in this order: the depth, pose and segmentation ones first, then cheapest first (measured on 2 cores), so
# that the time bound cuts the costliest
ORDER = ("depth_anything_v2", "openpose", "seg_upernet_ade20k", "mlsd", "softedge_hed", "lineart_anime",
         "lineart_realistic", "softedge_pidinet", "depth_midas", "normal_bae", "depth_zoe")
# the same network as another row, with other post-processing (or, for OpenPose's hand and face, networks that
# random weights never get to run): timed only with --all
VARIANTS = {"openpose_face": "openpose", "openpose_faceonly": "openpose", "openpose_hand": "openpose",
            "openpose_full": "openpose", "softedge_hedsafe": "softedge_hed", "scribble_hed": "softedge_hed",
            "softedge_pidisafe": "softedge_pidinet", "scribble_pidinet": "softedge_pidinet",
            "lineart_coarse": "lineart_realistic", "normal_midas": "depth_midas"}


def picture(size: int = SIZE) -> Image.Image:
    """Shapes on a gradient, with a little noise: something for edges, lines and depth to find."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, size, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=2) + rng.normal(0, 6, (size, size, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for index in range(8):
        x, y, r = rng.integers(40, size - 40, 2).tolist() + [int(rng.integers(16, 60))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if index % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    return image


def save_controlnet_aux_extras(folder: Path, zoe: bool = False) -> None:
    """Random full-size weights for controlnet-aux's other detectors, in lllyasviel/Annotators' file formats."""
    controlnet_aux()
    from controlnet_aux.hed import ControlNetHED_Apache2
    from controlnet_aux.lineart import Generator
    from controlnet_aux.lineart_anime import UnetGenerator
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large
    from controlnet_aux.normalbae.nets.NNET import NNET
    from controlnet_aux.pidi.model import pidinet

    target = folder / ANNOTATORS
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    bae = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                importance_ratio=0.7)
    files = {
        "sk_model.pth": lambda: Generator(3, 1, 3).state_dict(),
        "sk_model2.pth": lambda: Generator(3, 1, 3).state_dict(),
        "ControlNetHED.pth": lambda: ControlNetHED_Apache2().state_dict(),
        "table5_pidinet.pth": lambda: {"state_dict": {f"module.{k}": v for k, v in pidinet().state_dict().items()}},
        "mlsd_large_512_fp32.pth": lambda: MobileV2_MLSD_Large().state_dict(),
        "netG.pth": lambda: UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False).state_dict(),
        "dpt_hybrid-midas-501f0c75.pt": lambda: DPTDepthModel(backbone="vitb_rn50_384").state_dict(),
        "scannet.pt": lambda: {"model": NNET(bae).state_dict()},
    }
    if zoe:
        from controlnet_aux.zoe.zoedepth.models.zoedepth import ZoeDepth
        from controlnet_aux.zoe.zoedepth.utils.config import get_config

        files["ZoeD_M12_N.pt"] = lambda: {"model": ZoeDepth.build_from_config(get_config("zoedepth", "infer"))
                                          .state_dict()}
    for name, state in files.items():
        torch.save(state(), target / name)


def time_one(name: str, image: Image.Image, deadline: float) -> dict:
    preprocessor, cache = preprocessors.get(name), MapCache()
    started = time.perf_counter()
    first = cache.detect(image, name, SIZE)
    cold = time.perf_counter() - started
    warm = None
    if time.perf_counter() < deadline:
        started = time.perf_counter()
        preprocessor.run(image, SIZE)
        warm = time.perf_counter() - started
    hits = []
    for _ in range(5):
        started = time.perf_counter()
        cache.detect(image, name, SIZE)
        hits.append(time.perf_counter() - started)
    assert first.size == image.size and cache.hits == 5
    return {"cold_s": cold, "warm_s": warm, "cached_ms": statistics.median(hits) * 1000}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="the variants and depth_zoe too (BEiT-L: minutes)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    controlnet_aux()
    import_s = time.perf_counter() - started
    image, results = picture(), {}
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        started = time.perf_counter()
        with warnings.catch_warnings():  # timm's renamed models and the like, while building
            warnings.simplefilter("ignore")
            save_annotators(folder, full=True)
            save_controlnet_aux_extras(folder, zoe=args.all)
        build_s = time.perf_counter() - started
        detectors.set_annotator_dir(folder)
        names = [name for name in preprocessors.available() if args.all or name not in VARIANTS]
        names.sort(key=lambda name: ORDER.index(name) + 1 if name in ORDER else 0)  # weight-free first, as listed
        deadline = time.perf_counter() + BUDGET_S
        for name in names:
            results[name] = time_one(name, image, deadline) if time.perf_counter() < deadline else None
        detectors.set_annotator_dir(detectors.DEFAULT_ANNOTATOR_DIR)
    print(f"controlnet preprocessors  {SIZE} px on the CPU ({torch.get_num_threads()} threads); import controlnet_aux "
          f"(on the first use of any of its detectors, canny included) {import_s:.1f} s, not in the figures; random "
          f"full-size weights built in {build_s:.0f} s")
    print(f"{'preprocessor':<22}{'cold s':>9}{'warm s':>9}{'cached ms':>11}")
    for name, row in results.items():
        if row is None:
            print(f"{name:<22}{'skipped: over the time bound':>29}")
        else:
            warm = f"{row['warm_s']:>9.3f}" if row["warm_s"] is not None else f"{'-':>9}"
            print(f"{name:<22}{row['cold_s']:>9.3f}{warm}{row['cached_ms']:>11.2f}")
    variants = ", ".join(f"{name} ({of})" for name, of in VARIANTS.items() if name not in results)
    if variants:
        print(f"not timed (--all times them), as the row in brackets: {variants}")
    print("random weights: compute time does not depend on their values, but OpenPose's hand and face networks run "
          "only where the body network finds a person, which random weights never do (openpose_hand/face/full time "
          "the body network); cold reads the just-written files from the page cache")
    return {"import_s": import_s, "build_s": build_s, "rows": results}


if __name__ == "__main__":
    main()
