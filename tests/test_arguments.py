"""The flags of ``start``/``restart``, shared by the magic and the console script (pure)."""

from __future__ import annotations

import pytest

from mlflow_magic.settings.arguments import build_parser, server_options, split_passthrough


@pytest.mark.parametrize(("argv", "ours", "theirs"), [
    (["start", "--port", "5001"], ["start", "--port", "5001"], None),
    (["start", "--"], ["start"], []),
    (["start", "--", "--expose-prometheus", "/m", "--", "x"], ["start"],
     ["--expose-prometheus", "/m", "--", "x"]),
])
def test_split_passthrough(argv, ours, theirs):
    assert split_passthrough(argv) == (ours, theirs)


def test_flags_become_exactly_the_named_options():
    ours, theirs = split_passthrough(["start", "--path", "/d", "--workers", "2", "--no-serve-"
                                      "artifacts", "--", "--expose-prometheus", "/m"])
    options = server_options(build_parser().parse_args(ours), theirs)
    assert (options.path, options.workers, options.serve_artifacts) == ("/d", 2, False)
    assert options.extra_args == ("--expose-prometheus", "/m")
    assert options.port is None and options.backend_store_uri is None  # not named: not set
