"""The History tab's data (service/history.py) over a real output folder: order, pages, filter, the lazy text cache,
and deletion that cannot reach outside the folder."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from models.infotext import save_png
from service.history import History
from service.saving import OutputFolder


def saved(folder, mode: str, day: str, name: str, text: str, age: int):
    path = save_png(Image.new("RGB", (8, 8), "red"), folder / f"{mode}-images" / day / name, text)
    os.utime(path, ns=(age * 10**9, age * 10**9))
    return path


@pytest.fixture
def outputs(tmp_path):
    """Six outputs over two days and three modes; the larger `age`, the newer."""
    files = [saved(tmp_path, mode, day, f"{index:05d}-{index}.png", f"a {colour} circle\nSteps: 20, Seed: {index}",
                   age=index)
             for index, (mode, day, colour) in enumerate([
                 ("txt2img", "2026-11-29", "red"), ("img2img", "2026-11-29", "green"),
                 ("txt2img", "2026-11-30", "blue"), ("inpaint", "2026-11-30", "red"),
                 ("txt2img", "2026-11-30", "green"), ("img2img", "2026-11-30", "red")])]
    (tmp_path / "txt2img-images" / "2026-11-30" / "notes.txt").write_text("not an image")
    return tmp_path, files


def test_pages_list_newest_first_across_modes_and_days_with_their_infotexts(outputs):
    folder, files = outputs
    first = History(folder).page(size=4)
    assert first.files == files[::-1][:4] and (first.number, first.pages, first.total) == (1, 2, 6)
    assert first.infotexts[0] == "a red circle\nSteps: 20, Seed: 5"
    last = History(folder).page(number=99, size=4)  # clamped to the last page
    assert last.files == files[1::-1] and last.number == 2


def test_a_new_history_over_the_folder_lists_what_an_earlier_run_saved(tmp_path):
    """What a restart sees: nothing is kept in memory but a cache; the folder is the history."""
    OutputFolder(tmp_path).save("txt2img", Image.new("RGB", (8, 8)), 7, "a cat\nSeed: 7")
    OutputFolder(tmp_path).save("txt2img", Image.new("RGB", (8, 8)), 8, "a dog\nSeed: 8")
    page = History(tmp_path).page()
    assert [path.name for path in page.files] == ["00001-8.png", "00000-7.png"]
    assert page.infotexts == ["a dog\nSeed: 8", "a cat\nSeed: 7"]


def test_captions_tell_apart_images_of_the_same_file_name(tmp_path):
    import datetime
    import os

    for mode in ("txt2img", "inpaint"):
        OutputFolder(tmp_path).save(mode, Image.new("RGB", (8, 8)), 42, "x\nSeed: 42")
    page = History(tmp_path).page()
    assert [path.name for path in page.files] == ["00000-42.png", "00000-42.png"]
    today = datetime.date.today().isoformat()
    expected = [f"{path.parent.parent.name.removesuffix('-images')} · {today} "
                f"{datetime.datetime.fromtimestamp(os.stat(path).st_mtime).strftime('%H:%M')} · seed 42"
                for path in page.files]
    assert page.captions == expected
    assert {caption.split(" · ")[0] for caption in page.captions} == {"txt2img", "inpaint"}


def test_the_filter_matches_any_case_and_reads_each_file_once(outputs, monkeypatch):
    folder, files = outputs
    history = History(folder)
    reads = []
    import service.history as module

    real = module._read_text
    monkeypatch.setattr(module, "_read_text", lambda path: reads.append(path) or real(path))
    page = history.page("RED Circle")
    assert page.files == [files[5], files[3], files[0]] and page.total == 3
    assert len(reads) == 6
    history.page("green")
    assert len(reads) == 6, "cached"
    os.utime(files[4], ns=(100 * 10**9, 100 * 10**9))  # a file written again is read again
    assert history.page("green").files == [files[4], files[1]] and len(reads) == 7


def test_an_unreadable_png_is_listed_without_text(tmp_path):
    broken = tmp_path / "txt2img-images" / "2026-11-30" / "00000-1.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n half written")
    page = History(tmp_path).page()
    assert page.files == [broken] and page.infotexts == [""]


def test_delete_removes_a_saved_output_and_nothing_else(outputs, tmp_path_factory):
    folder, files = outputs
    history = History(folder)
    history.delete(files[2])
    assert not files[2].exists() and files[2] not in history.page().files
    outside = tmp_path_factory.mktemp("elsewhere") / "keep.png"
    outside.write_bytes(b"precious")
    link = folder / "txt2img-images" / "2026-11-30" / "link.png"
    link.symlink_to(outside)
    for path in (outside, folder / "txt2img-images" / "2026-11-30" / "notes.txt", link,
                 folder / "txt2img-images" / "2026-11-30" / ".." / ".." / ".." / outside.parent.name / "keep.png"):
        with pytest.raises(ValueError, match="is not a saved output"):
            history.delete(path)
    assert outside.read_bytes() == b"precious"
