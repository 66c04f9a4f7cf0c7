"""extensions.lora.switch.activate writes two private attributes of peft's LoRA layers (`_active_adapter` and
`_disable_adapters`) because peft has no public way to switch adapters at a cost that does not grow with the number
loaded. These tests fail loudly if peft renames those attributes or stops reading them: on real peft LoRA layers
(Linear and 1x1 Conv2d, as diffusers loads into the U-Net and text encoder), each switch must leave the public
properties and every output exactly as diffusers' own `set_adapters` / `disable_lora` path does. The pixels of a
whole generation are compared against `set_adapters` in tests/test_lora.py
(test_two_loras_equal_plain_diffusers_with_the_same_adapters)."""

from __future__ import annotations

import copy
import warnings

import torch
from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters
from peft import LoraConfig, inject_adapter_in_model

from extensions.lora.switch import activate, lora_layers

PRIVATE = ("_active_adapter", "_disable_adapters")
SETS = [
    (("a", 1.0),),
    (("b", 0.5), ("c", -1.0)),
    (),
    (("a", 0.3), ("b", 0.7), ("c", 2.0)),
    (("c", 1.5),),
    (("a", 1.0),),
    (),
]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.conv = torch.nn.Conv2d(8, 8, 1)
        self.out = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.proj(x)[:, :, None, None])[:, :, 0, 0]
        return self.out(torch.nn.functional.silu(x))


def with_adapters() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    for rank, (name, targets) in enumerate((("a", ["proj", "conv", "out"]), ("b", ["proj", "out"]), ("c", ["conv"])),
                                           start=2):
        config = LoraConfig(r=rank, lora_alpha=4, target_modules=targets, init_lora_weights=False)  # random, not 0
        with warnings.catch_warnings():  # peft warns that the model holds several adapters: it is meant to
            warnings.simplefilter("ignore")
            inject_adapter_in_model(config, model, adapter_name=name)
    return model.eval().requires_grad_(False)


def the_diffusers_way(model: torch.nn.Module, names: list[str], weights: list[float]) -> None:
    """What diffusers' set_adapters (and disable_lora for no adapters) does on a model."""
    if names:
        set_adapter_layers(model, enabled=True)
        set_weights_and_activate_adapters(model, names, weights)
    else:
        set_adapter_layers(model, enabled=False)


def test_peft_still_keeps_its_state_in_the_private_attributes_switch_writes():
    layers = lora_layers(with_adapters())
    assert len(layers) == 3
    for layer in layers:
        for attribute in PRIVATE:
            assert hasattr(layer, attribute), (
                f"peft's {type(layer).__name__} has no {attribute} any more: extensions/lora/switch.py writes it; "
                "switch adapters another way"
            )
        layer.set_adapter(["b", "a"])  # peft's own public setters write exactly these attributes
        layer.enable_adapters(False)
        assert layer._active_adapter == ["b", "a"] and layer._disable_adapters is True
        layer.enable_adapters(True)
        assert layer._disable_adapters is False


def test_activate_sets_what_peft_reads():
    layers = lora_layers(with_adapters())
    for tags in SETS:
        names, weights = [name for name, _ in tags], [weight for _, weight in tags]
        activate(layers, names, weights)
        for layer in layers:
            assert layer.active_adapters == names, f"peft no longer reads _active_adapter ({type(layer).__name__})"
            assert layer.disable_adapters is (not names), "peft no longer reads _disable_adapters"
            for name, weight in tags:
                if name in layer.scaling:
                    assert layer.scaling[name] == weight * layer.lora_alpha[name] / layer.r[name]


def test_every_switch_gives_exactly_the_outputs_of_set_adapters():
    ours = with_adapters()
    theirs = copy.deepcopy(ours)
    layers = lora_layers(ours)
    inputs = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = []
        for tags in SETS:
            names, weights = [name for name, _ in tags], [weight for _, weight in tags]
            activate(layers, names, weights)
            the_diffusers_way(theirs, names, weights)
            ours_out, theirs_out = ours(inputs), theirs(inputs)
            assert torch.equal(ours_out, theirs_out), f"{tags}: activate differs from diffusers' set_adapters"
            outputs.append(ours_out)
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2]), "the sets differ"
    assert torch.equal(outputs[0], outputs[5]), "a, then others, then a again: a's output exactly"
    assert torch.equal(outputs[2], outputs[6])


def test_no_adapters_gives_the_base_model_exactly():
    torch.manual_seed(0)
    plain = Tiny().eval()
    model = with_adapters()
    inputs = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    activate(lora_layers(model), ["a", "b"], [1.0, 1.0])
    activate(lora_layers(model), [], [])
    with torch.no_grad():
        assert torch.equal(model(inputs), plain(inputs))
