"""Options as the user gave them: what a restart keeps and changes, and their saved form (pure)."""
from __future__ import annotations

import dataclasses
import json

from mlflow_magic.settings.options import ServerOptions, merge_options


def test_restart_options_change_only_what_is_named():
    old = ServerOptions(path="/d", backend_store_uri="postgresql://u:pw@h/db",
                        artifacts_destination="s3://b/p", workers=2, allowed_hosts="hub.org",
                        extra_args=("--expose-prometheus", "/m"))
    same = merge_options(old, ServerOptions(path="/d"))
    assert same == old
    assert merge_options(old, ServerOptions(path="/d", workers=4)) == \
        dataclasses.replace(old, workers=4)
    to_sqlite = merge_options(old, ServerOptions(path="/d", sqlite=True))
    assert to_sqlite.sqlite and to_sqlite.backend_store_uri is None
    assert to_sqlite.artifacts_destination == "s3://b/p"
    no_extra = merge_options(old, ServerOptions(path="/d", extra_args=()))
    assert no_extra.extra_args == ()
    direct = merge_options(old, ServerOptions(path="/d", serve_artifacts=False))
    assert direct.serve_artifacts is False and direct.artifacts_destination is None
    back = merge_options(direct, ServerOptions(path="/d", artifacts_destination="/a"))
    assert back.serve_artifacts is None and back.artifacts_destination == "/a"
    only = merge_options(old, ServerOptions(path="/d", artifacts_only=True))
    assert only.backend_store_uri is None and only.artifacts_only



def test_options_round_trip_through_json():
    options = ServerOptions(path="/d", serve_artifacts=False, extra_args=("--x", "1"),
                            upgrade_db=True)
    again = ServerOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == dataclasses.replace(options, upgrade_db=False)
