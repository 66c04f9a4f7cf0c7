"""PNG Info: infotext read back from our PNGs and from A1111's PNG/JPEG/WebP files, and turned into tab fields."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from extensions.controlnet.extension import ControlNet
from extensions.controlnet.units import ControlUnit
from extensions.inpaint import Inpaint
from extensions.inpaint.options import InpaintOptions
from models.infotext import format_infotext, save_png
from service.pnginfo import decode_user_comment, describe, fields_from_infotext, read_infotext

# As A1111 1.10 writes it (the style of its wiki's examples).
A1111_TEXT = (
    "a photo of a cat, <lora:detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)

# the extensions that read infotext entries back (ControlNet's folder is not read for that)
EXTENSIONS = [Inpaint(), ControlNet(Path(tempfile.gettempdir()) / "no-controlnets")]


def ours() -> str:
    """An inpaint infotext as StudioService writes it: LoRA tags, Karras schedule, inpaint entries, 2 ControlNets."""
    units = [
        ControlUnit(module="canny", model="cn-canny", weight=0.8, guidance_end=0.9, threshold_a=50, threshold_b=150,
                    pixel_perfect=False,
                    control_mode="ControlNet is more important").infotext("cn-canny [0123abcd]", (512, 512),
                                                                          (512, 768)),
        ControlUnit(module="lineart_standard", model="cn-lineart", resize_mode="Resize and Fill",
                    pixel_perfect=True).infotext("cn-lineart", (256, 256), (512, 768)),
    ]
    inpaint = InpaintOptions(mask_blur=8, invert_mask=True, inpaint_area="Only masked", padding=48,
                             masked_content="latent noise").infotext()
    parameters = {"Steps": 30, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 6.5, "Seed": 3563187419,
                  "Size": "512x768", "Model hash": "fba674e9c2", "Model": "sd-demo-inpainting",
                  "Denoising strength": 0.75, **inpaint, "ControlNet 0": units[0], "ControlNet 1": units[1]}
    return format_infotext("a castle, <lora:detail:0.6> <lora:style: 1.2>\nat dusk", "blurry, lowres", parameters)


def test_round_trip_through_our_png(tmp_path):
    text = ours()
    path = save_png(Image.new("RGB", (16, 16)), tmp_path / "out.png", text)
    assert read_infotext(path) == text
    fields = fields_from_infotext(read_infotext(path), EXTENSIONS)
    assert fields["prompt"] == "a castle, <lora:detail:0.6> <lora:style: 1.2>\nat dusk"
    assert fields["negative_prompt"] == "blurry, lowres"
    assert (fields["steps"], fields["sampler"], fields["guidance_scale"], fields["seed"]) == (
        30, "DPM++ 2M Karras", 6.5, 3563187419)
    assert (fields["width"], fields["height"], fields["strength"]) == (512, 768, 0.75)
    assert (fields["model"], fields["model_hash"]) == ("sd-demo-inpainting", "fba674e9c2")
    assert {name: fields[name] for name in ("mask_blur", "invert_mask", "inpaint_area", "padding", "masked_content")} \
        == {"mask_blur": 8, "invert_mask": True, "inpaint_area": "Only masked", "padding": 48,
            "masked_content": "latent noise"}
    canny, lineart = fields["controlnet_units"]
    assert canny == {"enabled": True, "module": "canny", "model": "cn-canny", "weight": 0.8, "resize_mode":
                     "Crop and Resize", "processor_res": 512, "threshold_a": 50, "threshold_b": 150,
                     "guidance_start": 0.0, "guidance_end": 0.9, "pixel_perfect": False,
                     "control_mode": "ControlNet is more important"}
    assert lineart["model"] == "cn-lineart" and lineart["resize_mode"] == "Resize and Fill"
    assert lineart["pixel_perfect"] is True and lineart["threshold_b"] is None  # -1: the preprocessor's default
    assert fields["other"] == {} and fields["warnings"] == []


def test_units_parse_as_the_api_takes_them():
    """What comes out is accepted by ControlUnit.parse, the API's own reader."""
    for index, raw in enumerate(fields_from_infotext(ours(), EXTENSIONS)["controlnet_units"]):
        unit, ignored = ControlUnit.parse(index, raw)
        assert unit is not None and ignored == []


def test_units_are_ordered_by_their_number():
    text = ('x\nSteps: 5, Sampler: Euler, Seed: 1, ControlNet 10: "Module: canny, Model: b", '
            'ControlNet 2: "Module: none, Model: a"')
    assert [unit["model"] for unit in fields_from_infotext(text, EXTENSIONS)["controlnet_units"]] == ["a", "b"]


def test_a1111_infotext():
    fields = fields_from_infotext(A1111_TEXT, EXTENSIONS)
    assert fields["prompt"] == "a photo of a cat, <lora:detail:0.6>"
    assert fields["negative_prompt"] == "lowres, bad anatomy"
    assert fields["sampler"] == "DPM++ 2M Karras"
    assert (fields["steps"], fields["guidance_scale"], fields["seed"], fields["width"], fields["height"]) == (
        20, 7.0, 1234, 512, 768)
    assert fields["other"] == {"Version": "v1.10.1"}
    # only what the infotext says: no strength, inpaint settings or units for a txt2img picture
    assert not {"strength", "mask_blur", "inpaint_area", "controlnet_units"} & set(fields)


@pytest.mark.parametrize(("sampler", "expected"), [
    ("Sampler: DPM++ 2M Karras", "DPM++ 2M Karras"),  # before A1111 1.9: one name, no Schedule type
    ("Sampler: Euler a, Schedule type: Automatic", "Euler a"),
    ("Sampler: LMS, Schedule type: Karras", "LMS Karras"),
])
def test_sampler_names(sampler, expected):
    fields = fields_from_infotext(f"p\nSteps: 20, {sampler}, Seed: 1", EXTENSIONS)
    assert fields["sampler"] == expected and fields["warnings"] == []


def test_sampler_we_lack_is_left_out_with_a_warning():
    fields = fields_from_infotext("p\nSteps: 20, Sampler: DPM++ 3M SDE, Schedule type: Exponential, Seed: 1",
                                  EXTENSIONS)
    assert "sampler" not in fields and "DPM++ 3M SDE" in fields["warnings"][0]
    fields = fields_from_infotext("p\nSteps: 20, Sampler: Euler, Schedule type: Exponential, Seed: 1", EXTENSIONS)
    assert fields["sampler"] == "Euler" and "Exponential" in fields["warnings"][0]


def test_malformed_numbers_become_warnings():
    fields = fields_from_infotext("p\nSteps: 20, Sampler: Euler, Seed: 12ab, CFG scale: seven, Size: 512 by 512",
                                  EXTENSIONS)
    assert fields["steps"] == 20
    assert not {"seed", "guidance_scale", "width", "height"} & set(fields)
    assert len(fields["warnings"]) == 3 and any(warning.startswith("Seed: '12ab'") for warning in fields["warnings"])


def test_inpaint_defaults_fill_what_a1111_leaves_out():
    fields = fields_from_infotext("p\nSteps: 20, Sampler: Euler, Seed: 1, Denoising strength: 0.5, Mask blur: 4",
                                  EXTENSIONS)
    assert {name: fields[name] for name in ("mask_blur", "invert_mask", "inpaint_area", "padding", "masked_content")} \
        == {"mask_blur": 4, "invert_mask": False, "inpaint_area": "Whole picture", "padding": 32,
            "masked_content": "original"}


def test_a_prompt_without_parameters():
    assert fields_from_infotext("just words", EXTENSIONS) == {"prompt": "just words", "negative_prompt": "",
                                                              "other": {}, "warnings": []}


def test_describe_lists_prompt_negative_and_entries():
    assert describe(A1111_TEXT).splitlines()[:4] == [
        "Prompt: a photo of a cat, <lora:detail:0.6>", "Negative prompt: lowres, bad anatomy", "Steps: 20",
        "Sampler: DPM++ 2M"]


# -- A1111's JPEG and WebP: the infotext in EXIF UserComment ------------------------------------------------------

COMMENTS = {  # how the UserComment bytes are written
    "unicode-be": lambda text: b"UNICODE\0" + text.encode("utf-16-be"),  # A1111 (piexif's encoding="unicode")
    "unicode-le": lambda text: b"UNICODE\0" + text.encode("utf-16-le"),  # tools that follow the TIFF byte order
    "ascii": lambda text: b"ASCII\0\0\0" + text.encode("ascii"),
}


def with_user_comment(image_format: str, comment: bytes) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment  # UserComment lives in the Exif IFD
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "navy").save(buffer, image_format, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", list(COMMENTS))
def test_exif_user_comment(image_format, encoding, tmp_path):
    data = with_user_comment(image_format, COMMENTS[encoding](A1111_TEXT))
    path = tmp_path / f"a1111.{image_format.lower()}"
    path.write_bytes(data)
    assert read_infotext(data) == A1111_TEXT
    assert read_infotext(path) == A1111_TEXT
    assert read_infotext({"path": str(path)}) == A1111_TEXT  # as gr.File hands it over
    with Image.open(path) as image:
        assert read_infotext(image) == A1111_TEXT
    assert fields_from_infotext(read_infotext(data), EXTENSIONS)["seed"] == 1234


def test_unicode_outside_ascii_and_a_bom():
    text = "café, 猫\nSteps: 20, Sampler: Euler, Seed: 1"
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16-be")) == text
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16")) == text  # with a byte-order mark
    assert decode_user_comment(text.encode("utf-8")) == text  # no character code: A1111's UTF-8 fallback


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_image_without_metadata(image_format):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, image_format)
    assert read_infotext(buffer.getvalue()) is None


def test_not_an_image():
    with pytest.raises(ValueError, match="not a readable image"):
        read_infotext(b"plain text")
    with pytest.raises(ValueError, match="image must be"):
        read_infotext(12)


# -- other readers agree -----------------------------------------------------------------------------------


def test_sd_parsers_reads_our_png(tmp_path):
    """sd-parsers (a third-party reader of A1111 metadata) sees what we wrote. It exposes the sampler as
    `samplers[0]` (name, parameters with normalised keys steps/cfg_scale/seed/scheduler), prompts as
    `full_prompt`/`full_negative_prompt`, and leaves Size and Model in `metadata` and `samplers[0].model`."""
    sd_parsers = pytest.importorskip("sd_parsers")
    text = format_infotext("a castle, <lora:detail:0.6>\nat dusk", "blurry, lowres", {
        "Steps": 28, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 6.5, "Seed": 3563187419,
        "Size": "512x768", "Model hash": "fba674e9c2", "Model": "sd-demo-inpainting", "Denoising strength": 0.75,
    })
    path = save_png(Image.new("RGB", (16, 16)), tmp_path / "ours.png", text)
    info = sd_parsers.ParserManager().parse(path)
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    sampler = info.samplers[0]
    assert info.full_prompt == "a castle, <lora:detail:0.6>\nat dusk"
    assert info.full_negative_prompt == "blurry, lowres"
    assert sampler.name == "DPM++ 2M" and sampler.parameters["scheduler"] == "Karras"
    assert (sampler.parameters["steps"], sampler.parameters["cfg_scale"], sampler.parameters["seed"]) == (
        "28", "6.5", "3563187419")
    assert info.metadata["Size"] == "512x768"
    assert (sampler.model.name, sampler.model.hash) == ("sd-demo-inpainting", "fba674e9c2")


def test_sd_parsers_reads_the_a1111_jpeg_we_read():
    sd_parsers = pytest.importorskip("sd_parsers")
    info = sd_parsers.ParserManager().parse(io.BytesIO(with_user_comment("JPEG", COMMENTS["unicode-be"](A1111_TEXT))))
    assert info is not None and info.samplers[0].parameters["seed"] == "1234"
