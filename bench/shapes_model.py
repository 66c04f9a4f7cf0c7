"""The shapes demo model, measured over seeded prompts with the app's defaults (20 steps, CFG 7, Euler a, 64 px):
txt2img background / colour / shape accuracy, inpainting a shape in a new colour, how well the canny ControlNet's
output edges match its control edges (vs the same prompts without it), how often the segmentation ControlNet's
map decides the shape's kind and place against the caption (vs without it), how much the pastel LoRA changes the
style (vs without it), both shapes of two-shape prompts, and the time of one generation.

    python -m bench.shapes_model [--prompts 150] [--pairs 50] [--gallery]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import interleaved
from extensions.controlnet.units import ControlInput, ControlNetPart, ControlUnit
from extensions.inpaint import Inpaint
from models.demo.shipped import CONTROLNET_NAME, LORA_NAME, SEGMENTATION_NAME
from models.manager import PipelineManager
from models.request import GenerationRequest
from service.studio import StudioService
from testing.demo_model import load_with_extras
from training.evaluate_shapes import (
    colour_correct,
    edge_agreement,
    evaluate,
    evaluate_pairs,
    pastel_background,
    seeded_pairs,
    seeded_prompts,
    shape_correct,
)
from training.shapes import (
    COLOURS,
    Scene,
    Shape,
    caption,
    edges,
    grown_box,
    moved,
    render,
    reshaped,
)
from training.shapes import (
    segmentation as segmentation_map,
)

SIZE = 64


def _image(manager: PipelineManager, prompt: str, seed: int, **fields) -> Image.Image:
    parts = {"lora": fields.pop("loras", ()), "controlnet": ControlNetPart(maps=fields.pop("controls", ()))}
    request = GenerationRequest(fields.pop("mode", "txt2img"), prompt, width=SIZE, height=SIZE, seed=seed, parts=parts,
                                **fields)
    return manager.generate(request).images[0]


def txt2img(manager, prompts) -> list[Image.Image]:
    """One image per prompt, seed = its index: the plain outputs the ControlNet and LoRA figures compare with."""
    return [_image(manager, text, seed) for seed, (text, _) in enumerate(prompts)]


def recoloured(scene: Scene) -> Scene:
    """The scene with its shape in the next colour that is neither its own nor the background's."""
    shape = scene.shapes[0]
    names = list(COLOURS)
    start = names.index(shape.colour)
    colour = next(name for name in names[start + 1:] + names[:start] if name != scene.background)
    return dataclasses.replace(scene, shapes=(dataclasses.replace(shape, colour=colour),))


def box_mask(scene: Scene, pad: int = 3) -> Image.Image:
    x0, y0, x1, y1 = grown_box(scene.shapes[0], SIZE, pad)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    return Image.fromarray(mask)


def _inpainted(service: StudioService, prompt: str, image: Image.Image, mask: Image.Image, seed: int) -> Image.Image:
    """Inpaint through the app's service, as the inpaint tab does (whole picture, no mask blur, denoising 1)."""
    generation = service.run("inpaint", dict(prompt=prompt, image=image, mask=mask, width=SIZE, height=SIZE,
                                             seed=seed, strength=1.0, mask_blur=0))
    return Image.open(generation.files[0]).convert("RGB")


def inpaint(manager, prompts) -> dict:
    """Repaint each rendered scene's shape (its box masked) with the caption of the recoloured scene: the share
    whose shape now has the new colour, and the largest change outside the mask (0: kept exactly)."""
    correct, outside = [], []
    with tempfile.TemporaryDirectory() as outputs:
        service = StudioService(manager, outputs, [Inpaint()])
        for seed, (_, scene) in enumerate(prompts):
            target, image, mask = recoloured(scene), render(scene, SIZE), box_mask(scene)
            result = _inpainted(service, caption(target), image, mask, seed)
            correct.append(colour_correct(result, target))
            keep = np.asarray(mask) == 0
            difference = np.abs(np.asarray(result, dtype=int) - np.asarray(image, dtype=int))[keep]
            outside.append(int(difference.max()))
    return {"colour": float(np.mean(correct)), "max_change_outside_mask": max(outside)}


def controlnet(manager, prompts, plain: list[Image.Image]) -> dict:
    """Edge agreement (F1 within 2 px) between each output's Canny edges and the control edges, with the ControlNet
    and without it (`plain`: the txt2img outputs of the same prompts). The control edges are those of the prompt's
    scene with the shape `moved` to another position, so only the ControlNet, not the caption, puts it there."""
    scores = {"with": [], "without": []}
    for seed, ((text, scene), without) in enumerate(zip(prompts, plain)):
        control = edges(render(moved(scene), SIZE)).convert("RGB")
        with_unit = _image(manager, text, seed, controls=(ControlInput(CONTROLNET_NAME, control),))
        scores["with"].append(edge_agreement(with_unit, control))
        scores["without"].append(edge_agreement(without, control))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def against_the_caption(scene: Scene) -> Scene:
    """The one-shape scene with its shape `moved` to the next position and `reshaped` to the next kind: the layout
    a segmentation map asks for against a caption that names the scene's own kind and place."""
    return reshaped(moved(scene))


def segmentation_unit(scene: Scene) -> ControlInput:
    """The shapes-seg unit of a scene's map, as the app makes it from a unit whose image is the map itself
    (preprocessor "none", pixel perfect, "Crop and Resize") at the demo's 64 px."""
    unit = ControlUnit(module="none", model=SEGMENTATION_NAME, image=segmentation_map(scene, SIZE))
    return unit.control_input(None, (SIZE, SIZE), 0)


def segmentation(manager, prompts, plain: list[Image.Image]) -> dict:
    """The share of outputs whose shape has the kind and the place of the segmentation map (`shape_correct`
    against the map's scene: the largest foreground component in the map's shape region is of the map's kind),
    with the shapes-seg ControlNet and without it (`plain`: the txt2img outputs of the same prompts). The map is
    that of `against_the_caption`, so the caption names another kind and another place; with the ControlNet, the
    share whose shape keeps the caption's colour (which the map does not carry)."""
    scores = {"with": [], "without": [], "colour_with": []}
    for seed, ((text, scene), without) in enumerate(zip(prompts, plain)):
        target = against_the_caption(scene)
        guided = _image(manager, text, seed, controls=(segmentation_unit(target),))
        scores["with"].append(shape_correct(guided, target))
        scores["without"].append(shape_correct(without, target))
        scores["colour_with"].append(colour_correct(guided, target))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def lora(manager, prompts, without: dict) -> dict:
    """Pastel share with the LoRA at weight 1 vs without it (`without`: the txt2img figures); with it, the share
    whose background is the pastel of the asked colour, and the shape accuracy."""
    styled = [_image(manager, text, seed, loras=((LORA_NAME, 1.0),)) for seed, (text, _) in enumerate(prompts)]
    scenes = [scene for _, scene in prompts]
    with_lora = evaluate(styled, scenes)
    return {"pastel_with": with_lora["pastel"], "pastel_without": without["pastel"],
            "background_with": float(np.mean([pastel_background(image) == scene.background
                                              for image, scene in zip(styled, scenes)])),
            "shape_with": with_lora["shape"]}


def two_shapes(manager, pairs) -> dict:
    """Two-shape prompts (`seeded_pairs`), which the one-shape figures leave out: whether each shape is drawn in
    its own place, and how often the two colours come out the wrong way round."""
    images = [_image(manager, text, seed) for seed, (text, _) in enumerate(pairs)]
    return evaluate_pairs(images, [scene for _, scene in pairs])


def speed(manager, rounds: int = 5) -> dict:
    """Median seconds of one 20-step txt2img at 64 px, and at 128 px (interleaved)."""
    requests = {size: GenerationRequest("txt2img", "a large red circle on a blue background", width=size,
                                        height=size, seed=1) for size in (64, 128)}
    times = interleaved({size: lambda request=request: manager.generate(request)
                         for size, request in requests.items()}, rounds)
    return {f"seconds_{size}px": statistics.median(values) for size, values in times.items()}


GALLERY = Path(__file__).resolve().parents[1] / "docs" / "shapes"
GALLERY_PROMPTS = (  # (file, prompt): the README shows these next to their images
    ("txt2img-1", "a large red circle on a blue background"),
    ("txt2img-2", "a small yellow square in the top left on black"),
    ("txt2img-3", "a large white triangle in the bottom right on a green background"),
    ("txt2img-4", "a small red circle in the top left and a large yellow triangle in the bottom right on blue"),
)


def gallery(manager, folder: Path = GALLERY, scale: int = 2) -> None:
    """The README's pictures, each enlarged `scale` times (nearest neighbour, so the pixels stay honest)."""
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str, image: Image.Image) -> None:
        image.resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST).save(folder / f"{name}.png")

    for name, prompt in GALLERY_PROMPTS:
        save(name, _image(manager, prompt, seed=1))
    scene = Scene(shapes=(Shape("square", "red", "large", "centre"),), background="white")
    source, mask = render(scene, SIZE), box_mask(scene)
    save("inpaint-source", source)
    save("inpaint-mask", mask.convert("RGB"))
    with tempfile.TemporaryDirectory() as outputs:
        result = _inpainted(StudioService(manager, outputs, [Inpaint()]), "a large green square on a white background",
                            source, mask, seed=1)
    save("inpaint-result", result)
    picture = render(Scene(shapes=(Shape("circle", "white", "medium", "top left"),), background="black"), SIZE)
    outline = edges(picture).convert("RGB")  # what the canny preprocessor makes of that picture
    save("controlnet-map", outline)
    save("controlnet-result", _image(manager, "a red circle on a blue background", 1,
                                     controls=(ControlInput(CONTROLNET_NAME, outline),)))
    segmented = Scene(shapes=(Shape("triangle", "white", "medium", "top right"),), background="black")
    save("seg-map", segmentation_map(segmented, SIZE))  # the map as a user gives it (preprocessor "none")
    save("seg-result", _image(manager, "a yellow circle on a blue background", 1,
                              controls=(segmentation_unit(segmented),)))
    for weight in (0.0, 1.0):
        save(f"lora-{weight:g}", _image(manager, "a large red circle on a blue background", 1,
                                        loras=((LORA_NAME, weight),)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=50, help="two-shape prompts")
    parser.add_argument("--gallery", action="store_true", help=f"also write the README's pictures to {GALLERY}")
    args = parser.parse_args(argv)
    manager, prompts = load_with_extras(), seeded_prompts(args.prompts)
    if args.gallery:
        gallery(manager)
    plain = txt2img(manager, prompts)
    accuracy = evaluate(plain, [scene for _, scene in prompts])
    figures = {"txt2img": accuracy, "inpaint": inpaint(manager, prompts),
               "controlnet": controlnet(manager, prompts, plain),
               "segmentation": segmentation(manager, prompts, plain), "lora": lora(manager, prompts, accuracy),
               "two_shapes": two_shapes(manager, seeded_pairs(args.pairs)), "speed": speed(manager)}
    print(f"shapes model ({args.prompts} seeded prompts): {json.dumps(figures)}")
    return figures


if __name__ == "__main__":
    main()
