"""The procedural shapes dataset and its evaluation: captions redraw the scene, the metrics pass the ground truth
and fail noise, the pastel style and the edges are detectable."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from training import evaluate_shapes as ev
from training import shapes
from training.shapes import Scene, Shape


def random_scenes(n: int, two_shapes_probability: float = 0.3) -> list[Scene]:
    return [shapes.random_scene(np.random.default_rng(seed), two_shapes_probability) for seed in range(n)]


@pytest.fixture(scope="module")
def prompts() -> list[tuple[str, Scene]]:
    return ev.seeded_prompts()


def test_importing_the_dataset_and_evaluation_needs_no_torch():
    code = "import sys, training.shapes, training.evaluate_shapes; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_captions_parse_back_to_the_same_scene():
    scenes = random_scenes(300)
    assert any(len(scene.shapes) == 2 for scene in scenes)
    for scene in scenes:
        for template in range(len(shapes.TEMPLATES)):
            text = shapes.caption(scene, seed=template)
            assert shapes.parse_caption(text) == scene, text


def test_captions_name_every_attribute_that_is_not_the_default():
    scene = Scene(shapes=(Shape("circle", "red", "large", "top left"),), background="blue")
    assert shapes.caption(scene) == "a large red circle in the top left on a blue background"
    plain = Scene(shapes=(Shape("square", "yellow"),), background="black")
    assert shapes.caption(plain, seed=1) == "a yellow square on black"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A Red Circle in the top-left on a blue background.", Shape("circle", "red", "medium", "top left")),
        ("a medium green triangle in the center on white", Shape("triangle", "green")),
        (
            "black background with a small white square at the bottom right",
            Shape("square", "white", "small", "bottom right"),
        ),
    ],
)
def test_parse_caption_accepts_variants(text, expected):
    assert shapes.parse_caption(text).shapes == (expected,)


@pytest.mark.parametrize(
    "text",
    [
        "a purple circle on a white background",
        "a red star on a white background",
        "a huge red circle on a white background",
        "a red circle on a red background",  # shape colour = background
        "a large red circle in the top left and a large blue square in the top right on white",  # overlap
        "a red circle",
        "",
    ],
)
def test_parse_caption_refuses_what_cannot_be_drawn(text):
    assert shapes.parse_caption(text) is None


def test_a_scene_never_has_the_background_colour_in_a_shape():
    for scene in random_scenes(1000, two_shapes_probability=0.5):
        assert all(shape.colour != scene.background for shape in scene.shapes)
    with pytest.raises(ValueError, match="Scene.background.*'red'"):
        Scene(shapes=(Shape("circle", "red"),), background="red")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Shape("star", "red"), "Shape.kind.*'star'"),
        (lambda: Shape("circle", "orange"), "Shape.colour.*'orange'"),
        (lambda: Shape("circle", "red", size="huge"), "Shape.size.*'huge'"),
        (lambda: Shape("circle", "red", position="left"), "Shape.position.*'left'"),
        (lambda: Scene(shapes=(), background="red"), "Scene.shapes"),
        (lambda: shapes.render(random_scenes(1)[0], size=8), "size.*8"),
        (lambda: shapes.render(random_scenes(1)[0], style="dotted"), "style.*'dotted'"),
    ],
)
def test_bad_input_names_the_field_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("size", [64, 128])
def test_render_is_deterministic_and_the_right_size(size):
    for scene in random_scenes(5):
        image = shapes.render(scene, size=size)
        assert image.mode == "RGB" and image.size == (size, size)
        assert np.array_equal(np.asarray(image), np.asarray(shapes.render(scene, size=size)))
        image.paste((1, 2, 3), (0, 0, size, size))  # renders are cached: a caller's change must not reach the next
        assert not np.array_equal(np.asarray(image), np.asarray(shapes.render(scene, size=size)))
    first, second = random_scenes(2)
    assert not np.array_equal(np.asarray(shapes.render(first)), np.asarray(shapes.render(second)))


def test_sample_and_stream_are_reproducible():
    image, text, scene = shapes.sample(7)
    again = shapes.sample(7)
    assert (text, scene) == again[1:] and np.array_equal(np.asarray(image), np.asarray(again[0]))
    assert shapes.parse_caption(text) == scene
    run = [item[1] for item, _ in zip(shapes.stream(seed=3), range(6))]
    assert run == [item[1] for item, _ in zip(shapes.stream(seed=3), range(6))]
    assert run[2:] == [item[1] for item, _ in zip(shapes.stream(seed=3, start=2), range(4))]
    assert run != [item[1] for item, _ in zip(shapes.stream(seed=4), range(6))]


@pytest.mark.parametrize("size", [64, 128])
def test_ground_truth_renders_pass_the_evaluation(prompts, size):
    scenes = [scene for _, scene in prompts]
    assert len(scenes) == 50 and all(len(scene.shapes) == 1 for scene in scenes)
    result = ev.evaluate([shapes.render(scene, size=size) for scene in scenes], scenes)
    assert min(result["background"], result["colour"], result["shape"]) >= 0.95, result


def test_two_shape_scenes_are_evaluated_on_their_first_shape():
    scenes = random_scenes(400, two_shapes_probability=1.0)[:60]
    result = ev.evaluate([shapes.render(scene) for scene in scenes], scenes)
    assert min(result["background"], result["colour"], result["shape"]) >= 0.95, result


def test_evaluation_fails_a_wrong_drawing(prompts):
    _, scene = prompts[0]
    shape = scene.shapes[0]
    other_kind = next(kind for kind in shapes.KINDS if kind != shape.kind)
    other_colour = next(c for c in shapes.COLOURS if c not in (shape.colour, scene.background))
    wrong = Scene(shapes=(Shape(other_kind, other_colour, shape.size, shape.position),), background=scene.background)
    image = shapes.render(wrong)
    assert ev.background_correct(image, scene)
    assert not ev.colour_correct(image, scene) and not ev.shape_correct(image, scene)


def test_random_noise_scores_near_chance(prompts):
    rng = np.random.default_rng(0)
    scenes = [scene for _, scene in prompts]
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in scenes]
    result = ev.evaluate(noise, scenes)
    assert result["background"] <= 0.4 and result["colour"] <= 0.4 and result["shape"] <= 0.6, result


def test_pastel_style_scores_clearly_higher_than_plain(prompts):
    scores = {style: [ev.pastel_share(shapes.render(scene, style=style)) for _, scene in prompts]
              for style in shapes.STYLES}
    assert max(scores["plain"]) < 0.15 and min(scores["pastel"]) > 0.9, scores  # plain: anti-aliased rims only
    for _, scene in prompts:
        assert ev.pastel_background(shapes.render(scene, style="pastel")) == scene.background
    pastel_scenes = [scene for _, scene in prompts[:20]]
    result = ev.evaluate([shapes.render(scene, style="pastel") for scene in pastel_scenes], pastel_scenes)
    assert result["pastel"] > 0.9 and result["shape"] >= 0.95, result


def test_edges_agree_with_their_own_image_and_not_with_another_scene(prompts):
    rng = np.random.default_rng(0)
    for _, scene in prompts[:20]:
        image = shapes.render(scene)
        control = shapes.edges(image)
        assert control.mode == "L" and control.size == image.size
        assert ev.edge_agreement(image, control) > 0.9
        shape = scene.shapes[0]
        position = shapes.POSITIONS[(shapes.POSITIONS.index(shape.position) + 1) % len(shapes.POSITIONS)]
        moved = Scene(shapes=(dataclasses.replace(shape, position=position),), background=scene.background)
        assert ev.edge_agreement(shapes.render(moved), control) < 0.5
        assert ev.edge_agreement(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), control) < 0.5


def test_edges_are_thin_outlines_of_the_shape():
    scene = Scene(shapes=(Shape("square", "red", "large", "centre"),), background="black")
    edge = np.asarray(shapes.edges(shapes.render(scene))) > 0
    x0, y0, x1, y1 = (round(v * 64) for v in shapes.shape_box(scene.shapes[0]))
    side = x1 - x0
    assert 4 * (side - 2) <= edge.sum() <= 4 * (side + 2)  # one pixel wide, closed
    ys, xs = np.nonzero(edge)
    assert ys.min() >= y0 - 1 and ys.max() <= y1 and xs.min() >= x0 - 1 and xs.max() <= x1


def test_edges_match_the_apps_opencv_canny():
    cv2 = pytest.importorskip("cv2")
    for seed in range(20):
        image, _, _ = shapes.sample(seed)
        ours = np.asarray(shapes.edges(image))
        assert np.array_equal(ours > 0, cv2.Canny(np.asarray(image), 100, 200) > 0), seed


def test_moved_puts_the_one_shape_at_another_position():
    scene = shapes.Scene(shapes=(shapes.Shape("triangle", "red", "small", "top right"),), background="blue")
    assert shapes.moved(scene) == shapes.Scene(
        shapes=(shapes.Shape("triangle", "red", "small", "bottom left"),), background="blue")
    assert shapes.moved(scene, len(shapes.POSITIONS)) == scene
    two = shapes.Scene(shapes=(shapes.Shape("circle", "red", "small", "top left"),
                               shapes.Shape("square", "green", "small", "bottom right")), background="blue")
    with pytest.raises(ValueError, match="scene must hold one shape to be moved, got 2"):
        shapes.moved(two)


def test_grown_box_holds_the_drawn_shape_with_its_pad_and_stays_inside_the_image():
    for position in shapes.POSITIONS:
        for size in shapes.SIZES:
            shape = Shape("square", "red", size, position)
            drawn = np.asarray(shapes.render(Scene(shapes=(shape,), background="black")))[..., 0] > 110
            ys, xs = np.nonzero(drawn)
            x0, y0, x1, y1 = shapes.grown_box(shape, 64, pad=3)
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            # the drawn square with 3 px around it (2 where truncating to whole pixels takes one), cut at the image
            for low, high, start, end in ((x0, x1, xs.min(), xs.max() + 1), (y0, y1, ys.min(), ys.max() + 1)):
                assert max(start - 4, 0) <= low <= max(start - 2, 0), (position, size)
                assert min(end + 2, 64) <= high <= min(end + 4, 64), (position, size)


def test_pair_metrics_score_both_shapes_and_see_the_colours_the_wrong_way_round():
    pairs = ev.seeded_pairs(40)
    assert pairs == ev.seeded_pairs(40) and all(len(scene.shapes) == 2 for _, scene in pairs)
    assert all(shapes.parse_caption(text) == scene for text, scene in pairs)
    scenes = [scene for _, scene in pairs]
    truth = ev.evaluate_pairs([shapes.render(scene) for scene in scenes], scenes)
    assert truth == {"n": 40, "colours": 1.0, "kinds": 1.0, "both": 1.0, "swapped": 0.0}

    def colours_exchanged(scene):
        a, b = scene.shapes
        return Scene(shapes=(dataclasses.replace(a, colour=b.colour), dataclasses.replace(b, colour=a.colour)),
                     background=scene.background)

    crossed = ev.evaluate_pairs([shapes.render(colours_exchanged(scene)) for scene in scenes], scenes)
    differ = np.mean([a.colour != b.colour for a, b in (scene.shapes for scene in scenes)])
    assert crossed["kinds"] == 1.0 and crossed["swapped"] == differ and crossed["colours"] == pytest.approx(1 - differ)
    with pytest.raises(ValueError, match="two-shape scenes"):
        ev.evaluate_pairs([shapes.render(scenes[0])], [ev.seeded_prompts(1)[0][1]])
