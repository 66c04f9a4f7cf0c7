"""models.lru.LRU, the one least-recently-used map behind the LoRA adapters, the loaded ControlNets and the detected
ControlNet maps."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from models.lru import LRU
from tests.conftest import ROOT


def test_get_marks_used_and_put_evicts_the_least_recently_used():
    evicted = []
    cache = LRU(2, on_evict=lambda key, value: evicted.append((key, value)))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    assert cache.put("c", 3) == [("b", 2)] and evicted == [("b", 2)]
    assert cache.keys() == ["a", "c"] and list(cache) == ["a", "c"] and len(cache) == 2
    assert "b" not in cache and cache.get("b") is None and cache.get("b", 0) == 0


def test_peek_and_indexing_do_not_mark_used():
    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1 and cache["a"] == 1
    cache.put("c", 3)
    assert cache.keys() == ["b", "c"]
    with pytest.raises(KeyError):
        cache["a"]


def test_kept_keys_are_not_evicted_even_beyond_the_cap():
    cache = LRU(2)
    for key in "abc":
        cache.put(key, key, evict=False)
    assert cache.keys() == ["a", "b", "c"]
    assert cache.evict(keep={"a", "b", "c"}) == [] and len(cache) == 3
    assert cache.evict(keep={"a"}) == [("b", "b")] and cache.keys() == ["a", "c"]


def test_pop_and_clear_do_not_call_on_evict():
    evicted = []
    cache = LRU(3, on_evict=lambda key, value: evicted.append(key))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.pop("a") == 1 and cache.pop("a") is None
    cache.clear()
    assert len(cache) == 0 and evicted == []


@pytest.mark.parametrize("cap", [0, -1, 1.5, "2", None])
def test_a_bad_cap_is_named(cap):
    with pytest.raises(ValueError, match="cap must be an integer >= 1"):
        LRU(cap)


def test_threads_never_see_more_than_the_cap():
    cache, errors = LRU(4), []

    def work(offset: int) -> None:
        for index in range(500):
            cache.put((offset + index) % 9, index)
            cache.get(index % 9)
            if len(cache) > 4:
                errors.append(len(cache))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(cache) == 4


def test_it_imports_no_torch():
    code = "import sys, models.lru; assert 'torch' not in sys.modules, 'models.lru imported torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
