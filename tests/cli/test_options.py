"""The shared ``--option KEY=VALUE`` grammar, checked against ``json.loads`` and ``ast.literal_eval``."""

from __future__ import annotations

import argparse
import ast
import json

import pytest

from exaug.cli import main
from exaug.cli.options import OPTION_GRAMMAR, options_by_section, parse_option, parse_value

JSON_VALUES = ["500", "-3", "1e-3", "2.5E+2", "true", "false", "null", '"blur"', "[0.3,0.45]", '[1, "a", null]',
               '{"a": [1, {"b": false}]}', '"say \\"hi\\""', '"it\'s"', '"a=b"', '""']
PYTHON_VALUES = ["True", "False", "None", "'blur'", "(1, 2)", "0.3,0.45", "[True, None]", "'say \"hi\"'",
                 "{'a': (1,)}"]
BARE_WORDS = ["blur", "encoder.layer2.1.conv2", "gaussian_noise,contrast", "a b", "nan", "[unclosed", "'half"]


@pytest.mark.parametrize("text", JSON_VALUES)
def test_json_values_read_as_json(text):
    value = parse_value(text)
    assert value == json.loads(text) and type(value) is type(json.loads(text))


@pytest.mark.parametrize("text", PYTHON_VALUES)
def test_python_literals_read_as_python(text):
    value = parse_value(text)
    assert value == ast.literal_eval(text) and type(value) is type(ast.literal_eval(text))


@pytest.mark.parametrize("text", BARE_WORDS)
def test_other_text_is_kept_as_a_string(text):
    assert parse_value(text) == text


@pytest.mark.parametrize("text, expected", [
    ("relu=False", ("relu", False)), ("relu=false", ("relu", False)), ("relu=True", ("relu", True)),
    ("x=1e-3", ("x", 0.001)), ("n_masks=500", ("n_masks", 500)), ("fill=None", ("fill", None)),
    ("fill=null", ("fill", None)), ("keep_fractions=[0.3,0.45]", ("keep_fractions", [0.3, 0.45])),
    ('baseline="blur"', ("baseline", "blur")), ("baseline=blur", ("baseline", "blur")),
    ("""title='say "hi"'""", ("title", 'say "hi"')), ('title="it\'s"', ("title", "it's")),
    ("expr=a=b", ("expr", "a=b")), (" key = 5 ", ("key", 5)), ("calibration.severity=5", ("calibration.severity", 5)),
])
def test_parse_option(text, expected):
    key, value = parse_option(text)
    assert (key, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize("text, message", [
    ("n_masks", "must look like KEY=VALUE"), ("=5", "KEY must be a name"), ("n masks=5", "KEY must be a name"),
    ("1x=5", "KEY must be a name"), ("a..b=5", "KEY must be a name"), ("a.=5", "KEY must be a name"),
    ("-x=1", "KEY must be a name"),
])
def test_malformed_items_name_option(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message) as info:
        parse_option(text)
    assert str(info.value).startswith("--option ")


def test_sections_split_at_the_first_dot():
    pairs = [parse_option(t) for t in ("calibration.severity=5", "a.b.c=1", "calibration.severity=2")]
    assert options_by_section(pairs) == {"calibration": {"severity": 2}, "a": {"b.c": 1}}
    with pytest.raises(ValueError, match=r"--option severity=2 must look like METRIC\.KEY=VALUE"):
        options_by_section([("severity", 2)])


@pytest.mark.parametrize("command", ["train", "evaluate", "explain"])
def test_every_command_uses_the_grammar(command, capsys):
    """Each command with --option refuses a malformed KEY in argparse, on one line that names --option."""
    with pytest.raises(SystemExit) as info:
        main([command, "--option", "bad key=1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"exaug {command}: error: argument --option: --option 'bad key=1'") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert " ".join(OPTION_GRAMMAR.split()) in " ".join(capsys.readouterr().out.split())
