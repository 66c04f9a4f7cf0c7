"""Click to mask with SAM (models/segment.py, extensions/segment/): the mask of a few clicks, as transformers' own SAM
code makes it; that it follows the clicks (a tiny SAM set by hand to select a disc around its include clicks); what is
refused, by name; the inpaint tab's editor value it writes, read back as a painted mask; and /segment through
gradio_client and REST."""

from __future__ import annotations

import base64
import io

import gradio as gr
import numpy as np
import pytest
import requests
import torch
from PIL import Image

from extensions.segment import Segment
from extensions.segment.panel import _editor, _mask, _scale, _shown
from models import segment
from models.images import png_base64
from testing.sam_files import save_sam
from ui.handlers import editor_image_and_mask


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Two annotator folders: a random tiny SAM, and one whose masks follow the clicks."""
    random, clicks = tmp_path_factory.mktemp("random"), tmp_path_factory.mktemp("clicks")
    save_sam(random)
    save_sam(clicks, follows_clicks=True)
    return {"random": random, "clicks": clicks}


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))


def selected(mask: Image.Image, x: int, y: int) -> bool:
    return mask.getpixel((x, y)) == 255


def test_the_mask_is_sams_best_of_three_at_the_pictures_size(weights):
    picture, points, labels = noise(96, 64), [[20, 40], [70, 12]], [1, 0]
    mask = segment.segment(picture, points, labels, annotator_dir=weights["random"])
    assert (mask.mode, mask.size) == ("L", (96, 64))
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    again = segment.segment(picture, points, labels, annotator_dir=weights["random"])  # its embedding kept
    assert np.array_equal(np.asarray(mask), np.asarray(again))
    # the same, as transformers' SAM documentation runs it
    from transformers import SamModel, SamProcessor

    folder = weights["random"] / segment.REPO
    model, processor = SamModel.from_pretrained(folder).eval(), SamProcessor.from_pretrained(folder)
    inputs = processor(picture, input_points=[points], input_labels=[labels], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    best = int(outputs.iou_scores[0, 0].argmax())
    assert np.array_equal(np.asarray(mask) == 255, masks[0][0, best].numpy())


def test_the_mask_follows_the_clicks(weights):
    picture, folder = noise(96, 64), weights["clicks"]
    mask = segment.segment(picture, [[60, 10]], annotator_dir=folder)
    assert selected(mask, 60, 10) and not selected(mask, 10, 60), "x and y in their places"
    assert not selected(mask, 5, 60) and 0.05 < np.asarray(mask).mean() / 255 < 0.4, "a disc around the click"
    both = segment.segment(picture, [[60, 10], [15, 50]], annotator_dir=folder)
    assert selected(both, 60, 10) and selected(both, 15, 50)
    trimmed = segment.segment(picture, [[60, 10], [85, 10]], [1, 0], annotator_dir=folder)
    assert selected(trimmed, 60, 10) and not selected(trimmed, 85, 10)
    assert np.asarray(trimmed).sum() < np.asarray(mask).sum(), "an exclude click takes its side off"


@pytest.mark.parametrize(("points", "labels", "message"), [
    ([], None, r"points must be a list of 1 to 16 \[x, y\] pairs, got \[\]"),
    ([[1, 1]] * 17, None, "points must be a list of 1 to 16"),
    ([[1, 2, 3]], None, r"points\[0\] must be an \[x, y\] pair of numbers, got \[1, 2, 3\]"),
    ([[5, 5], [96, 10]], None, r"points\[1\] = \[96, 10\] is outside the 96x64 picture"),
    ([[5, -1]], None, r"points\[0\] = \[5, -1\] is outside"),
    ([[5, 5]], [1, 1], r"labels must be a list of 1 labels \(one per point\), got \[1, 1\]"),
    ([[5, 5], [9, 9]], [1, 2], r"labels\[1\] must be 1 \(include\) or 0 \(exclude\), got 2"),
    ([[5, 5]], [0], r"labels must include at least one point \(a 1\), got \[0\]"),
])
def test_bad_clicks_are_refused_by_name(weights, points, labels, message):
    with pytest.raises(ValueError, match=message):
        segment.segment(noise(96, 64), points, labels, annotator_dir=weights["random"])


def test_missing_or_pickled_weights_say_what_to_put_where(tmp_path, weights):
    message = (r"SAM needs its weights: put config.json, model.safetensors, preprocessor_config.json of the Hub's "
               r"facebook/sam-vit-base in .*facebook/sam-vit-base")
    with pytest.raises(ValueError, match=message):
        segment.segment(noise(32, 32), [[5, 5]], annotator_dir=tmp_path)
    assert Segment(tmp_path).missing().startswith("SAM needs its weights")
    with pytest.raises(gr.Error, match="SAM needs its weights"):  # the accordion's clicks, exclude ones too
        _mask(Segment(tmp_path), noise(32, 32), [[5, 5, 0]])
    folder = tmp_path / segment.REPO
    folder.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((weights["random"] / segment.REPO / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(ValueError, match="pytorch_model.bin .* is a pickle, which can run code when loaded"):
        segment.segment(noise(32, 32), [[5, 5]], annotator_dir=tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="are not a readable SAM model"):
        segment.segment(noise(32, 32), [[5, 5]], annotator_dir=tmp_path)


def test_changed_weights_are_read_again(tmp_path):
    picture = noise(64, 64)
    save_sam(tmp_path, seed=0)
    first = segment.segment(picture, [[30, 30]], annotator_dir=tmp_path)
    save_sam(tmp_path, follows_clicks=True)
    followed = segment.segment(picture, [[30, 30]], annotator_dir=tmp_path)
    assert not np.array_equal(np.asarray(first), np.asarray(followed))
    assert selected(followed, 30, 30) and not selected(followed, 63, 63)


def test_the_clicks_mask_reaches_the_editor_as_a_painted_mask(weights, tmp_path):
    extension, picture, points = Segment(weights["clicks"]), noise(96, 64), [[60, 10, 1], [85, 10, 0]]
    mask = _mask(extension, picture, points)
    assert np.array_equal(np.asarray(mask), np.asarray(segment.segment(
        picture, [[60, 10], [85, 10]], [1, 0], annotator_dir=weights["clicks"])))
    files = _editor(picture, mask, lambda image, name: (image.save(tmp_path / name), str(tmp_path / name))[1])
    # as Gradio hands the tab the editor (type="pil"), and the tab reads it for a generation
    background, painted = editor_image_and_mask({"background": Image.open(files["background"]),
                                                 "layers": [Image.open(path) for path in files["layers"]]})
    assert np.array_equal(np.asarray(background), np.asarray(picture)), "the picture, lossless"
    assert np.array_equal(np.asarray(painted), np.asarray(mask))
    shown = _shown(picture, mask, points)
    assert shown.size == (480, 320), "a small picture is shown enlarged, to click on"
    assert shown.getpixel((60 * 5 + 2, 10 * 5 + 2)) == (34, 197, 94), "an include point's dot"
    assert shown.getpixel((85 * 5 + 2, 10 * 5 + 2)) == (239, 68, 68), "an exclude point's dot"
    assert _mask(extension, picture, [[85, 10, 0]]).getbbox() is None, "exclude points alone select nothing"


def test_segment_through_gradio_client_and_rest(client, app_server, tmp_path):
    from gradio_client import handle_file

    picture = noise(96, 64)
    picture.save(tmp_path / "picture.png")
    path = client.predict(handle_file(str(tmp_path / "picture.png")), [[60, 10]], None, api_name="/segment")
    mask = Image.open(path)
    assert (mask.mode, mask.size) == ("L", (96, 64)) and selected(mask, 60, 10)  # the app has the click-following SAM
    text = client.predict(image=handle_file(str(tmp_path / "picture.png")), points="[[60, 10], [85, 10]]",
                          labels=[1, 0], api_name="/segment")
    assert not selected(Image.open(text), 85, 10)
    with pytest.raises(Exception, match=r"points\[0\] = \[200, 10\] is outside the 96x64 picture"):
        client.predict(handle_file(str(tmp_path / "picture.png")), [[200, 10]], None, api_name="/segment")

    url = app_server[0]
    answer = requests.post(f"{url}/segment/v1/segment", json={"image": png_base64(picture), "points": [[60, 10]]},
                           timeout=60)
    assert answer.status_code == 200, answer.text
    rest = Image.open(io.BytesIO(base64.b64decode(answer.json()["mask"])))
    assert np.array_equal(np.asarray(rest), np.asarray(mask))
    refused = requests.post(f"{url}/segment/v1/segment", json={"image": png_base64(picture), "points": [[1, 1]],
                                                               "labels": [3]}, timeout=60)
    assert refused.status_code == 422 and "labels[0] must be 1 (include) or 0 (exclude), got 3" in refused.text


def test_a_click_on_the_shown_picture_is_a_pixel_of_the_picture():
    assert _scale((96, 64)) == 5 and _scale((512, 512)) == 1 and _scale((4096, 2048)) == 0.25
    large = _shown(noise(4096, 2048), Image.new("L", (4096, 2048), 0), [[4000, 100, 1]])
    assert large.size == (1024, 512)
    assert large.getpixel((1000, 25)) == (34, 197, 94), "the point, where it is on the smaller picture"
