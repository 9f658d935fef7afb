"""logits_of / LogitsOnly: every output kind a classifier returns, read as the same logits tensor."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from exaug.utils.outputs import LogitsOnly, logits_of

LOGITS = torch.randn(3, 5)


@pytest.mark.parametrize("output", [
    LOGITS,
    {"logits": LOGITS},
    {"loss": torch.tensor(0.5), "logits": LOGITS, "hidden_states": (torch.zeros(3, 4),)},
    OrderedDict(features=LOGITS),  # a single tensor value
    SimpleNamespace(logits=LOGITS, pooler_output=torch.zeros(3, 4)),
    (LOGITS,),
    (LOGITS, torch.zeros(3, 4)),
    [LOGITS, None],
], ids=["tensor", "dict", "dict-many", "single-value", "attribute", "1-tuple", "tuple", "list"])
def test_every_output_kind_gives_the_logits_object(output):
    assert logits_of(output) is LOGITS


def test_transformers_model_output_is_read_by_key():
    transformers = pytest.importorskip("transformers")
    output = transformers.modeling_outputs.ImageClassifierOutput(loss=torch.tensor(1.0), logits=LOGITS)
    assert logits_of(output) is LOGITS
    assert logits_of(output.to_tuple()[1:]) is LOGITS  # return_dict=False without a loss: (logits, ...)


@pytest.mark.parametrize("output, named", [
    ({"features": torch.zeros(3, 4), "hidden": torch.zeros(3, 4)}, "dict with keys ['features', 'hidden']"),
    ({"logits": None, "x": torch.zeros(3, 4)}, "dict with keys ['logits', 'x']"),
    ({"embedding": torch.zeros(3, 4), "n": 1}, "dict with keys ['embedding', 'n']"),
    ((None, LOGITS), "tuple of length 2 starting with NoneType"),
    ((), "tuple of length 0 starting with nothing"),
    (SimpleNamespace(logits=None), "SimpleNamespace"),
    (3.0, "float"),
])
def test_unreadable_outputs_name_what_was_returned_and_what_is_expected(output, named):
    with pytest.raises(TypeError) as error:
        logits_of(output)
    message = str(error.value)
    assert named in message
    assert "'logits' entry" in message and "tuple / list whose first element is the logits" in message


class DictNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, scale=1.0):
        return {"logits": self.fc(x) * scale, "features": x}


def test_logits_only_matches_the_wrapped_output_and_keeps_the_graph():
    net = DictNet()
    x = torch.randn(2, 4)
    wrapped = LogitsOnly(net)
    out = wrapped(x, scale=2.0)
    assert torch.equal(out, net.fc(x) * 2.0)
    out.sum().backward()
    assert net.fc.weight.grad is not None
    assert list(wrapped.parameters()) == list(net.parameters())  # no parameters of its own
    plain = nn.Linear(4, 3)
    assert torch.equal(LogitsOnly(plain)(x), plain(x))


def test_logits_only_refuses_a_non_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        LogitsOnly(lambda x: x)
