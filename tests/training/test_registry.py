"""The training-method registry, method options and the trainer's independence from method names."""

from __future__ import annotations

import argparse
import ast
import inspect
import math

import pytest
import torch.nn.functional as F

from exaug.training import METHODS, TrainConfig, Trainer, describe_methods, is_method, list_methods
from exaug.training import trainer as trainer_module
from exaug.training.config import add_config_arguments, config_from_args
from exaug.training.methods import JointMethod, MethodOption, TrainingMethod, get_method, register_method, \
    unregister_method
from exaug.training.methods.contrastive import ExConB

BUILT_IN = ("ce", "supcon", "supcon_ori", "excon", "exconb", "edda", "cgc", "cutmix", "mixup", "saliencymix",
            "keepcutout", "keepautoaugment", "attentive_cutmix", "snapmix", "sgt")


@pytest.fixture
def plugin():
    """A temporary joint method with one option, unregistered afterwards."""

    @register_method("test_smooth_ce", "cross-entropy with label smoothing (test plugin)")
    class SmoothCE(JointMethod):
        options = {"smoothing": MethodOption(0.1, "label smoothing", lambda v: 0.0 <= v < 1.0, "in [0, 1)")}

        def extra_metric_keys(self, epoch):
            return ("smoothing",)

        def step_loss(self, images, labels, epoch):
            with self.trainer.autocast():
                logits = self.trainer.joint_forward(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.option("smoothing"))
            return loss, logits, {"smoothing": loss.new_tensor(self.option("smoothing"))}

    yield SmoothCE
    if is_method("test_smooth_ce"):
        unregister_method("test_smooth_ce")


def test_built_in_methods_in_order_and_described():
    assert tuple(list_methods()) == BUILT_IN and METHODS == BUILT_IN and tuple(METHODS) == BUILT_IN
    assert list(describe_methods()) == list(BUILT_IN) and all(describe_methods().values())
    assert list_methods("supcon*") == ["supcon", "supcon_ori"] and list_methods("exc*") == ["excon", "exconb"]
    assert get_method("exconb") is ExConB and ExConB.name == "exconb" and is_method("cgc") and not is_method("x")


def test_methods_view_follows_the_registry(plugin):
    assert "test_smooth_ce" in METHODS and METHODS[-1] == "test_smooth_ce" and len(METHODS) == len(BUILT_IN) + 1
    assert describe_methods()["test_smooth_ce"] == "cross-entropy with label smoothing (test plugin)"
    unregister_method("test_smooth_ce")
    assert "test_smooth_ce" not in METHODS and METHODS == BUILT_IN


def test_unknown_names_list_the_valid_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"unknown method 'supcon_orig'\. Did you mean 'supcon_ori'\? "
                                         r"Valid methods: ce, supcon, supcon_ori, excon, exconb, edda, cgc"):
        TrainConfig(method="supcon_orig")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        unregister_method("nope")


def test_registration_errors(plugin):
    with pytest.raises(ValueError, match="already registered"):
        register_method("ce", "another ce")(type("OtherCE", (JointMethod,), {}))
    with pytest.raises(TypeError, match="TrainingMethod subclasses"):
        register_method("not_a_method", "x")(object)
    with pytest.raises(ValueError, match="without spaces"):
        register_method("two words", "x")
    with pytest.raises(ValueError, match="description"):
        register_method("nodesc", " ")

    class Incomplete(TrainingMethod):  # no run_epoch / metric_keys
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(object())


def test_plugin_trains_and_reads_its_option(plugin, tiny_config):
    config = tiny_config(method="test_smooth_ce", epochs=1, method_options={"smoothing": 0.3})
    trainer = Trainer(config)
    assert trainer.fit()["status"] == "finished"
    row = trainer.history[0]
    assert list(row) == ["epoch", "method", "encoder_loss", "train_top1", "lr", "smoothing", "val_top1", "val_loss",
                         "epoch_time"]
    assert math.isclose(row["smoothing"], 0.3, rel_tol=1e-6)
    assert TrainConfig(method="test_smooth_ce").is_joint and not TrainConfig(method="test_smooth_ce").uses_explanations


def test_method_options_are_validated(plugin):
    with pytest.raises(ValueError, match=r"has no option 'smoothin'\. Did you mean 'smoothing'\?"):
        TrainConfig(method="test_smooth_ce", method_options={"smoothin": 0.2})
    with pytest.raises(ValueError, match=r"method_options\['smoothing'\] of method 'test_smooth_ce' "
                                         r"must be in \[0, 1\)"):
        TrainConfig(method="test_smooth_ce", method_options={"smoothing": 1.5})
    with pytest.raises(ValueError, match="method 'ce' has no option 'smoothing'.*none"):
        TrainConfig(method="ce", method_options={"smoothing": 0.2})


def test_method_options_flag_parses_json(plugin):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--method", "test_smooth_ce", "--method-options", '{"smoothing": 0.25}'])
    assert config_from_args(args).method_options == {"smoothing": 0.25}
    with pytest.raises(SystemExit):
        parser.parse_args(["--method-options", "[1, 2]"])


def test_every_method_validates_its_options_whatever_the_selected_method():
    # The edda / cgc / explanation checks now live in the methods; they still run for any method.
    for option, value in (("edda_ratio", 2.0), ("cgc_lambda", -1.0), ("exp_start_epoch", -1)):
        with pytest.raises(ValueError, match=option):
            TrainConfig(method="supcon", **{option: value})


def test_the_trainer_names_no_method():
    tree = ast.parse(inspect.getsource(trainer_module))
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not strings & set(BUILT_IN)  # (docstring examples are whole strings, not method names)
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"is_joint", "is_contrastive"}
    comparisons = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)]
    assert not [c for c in comparisons if "config.method" in c], comparisons
