"""An admin's settings in Jupyter's configuration (jupyter/config.py): pure logic. The
``jupyter`` fixture (conftest.py) sets the data folder this way, so every tile, route and
notebook test runs on it."""

from __future__ import annotations

import getpass
import os
import shlex
import threading

import pytest
from traitlets.config import Config

from mlflow_magic.contract import FIRST_PORT_ENV, IDLE_TIMEOUT_ENV
from mlflow_magic.errors import ConfigError
from mlflow_magic.jupyter import forwarder
from mlflow_magic.jupyter.config import MlflowMagic, from_server


class FakeServerApp:
    def __init__(self, **traits: object) -> None:
        self.config = Config({"MlflowMagic": traits})


def test_the_settings_come_from_jupyters_config_with_the_users_name():
    settings = from_server(FakeServerApp(data_dir="/data/{username}/mlflow", first_port=6100,
                                         start_flags=["--workers", "2", "--", "--dev"]))
    options = settings.options()
    assert options.path == f"/data/{getpass.getuser()}/mlflow"
    assert options.workers == 2 and options.extra_args == ("--dev",)
    assert settings.first_port == 6100


def test_no_settings_leave_the_defaults():
    settings = from_server(None)
    assert settings.folder() is None and settings.options().path is None
    environ: dict[str, str] = {}
    settings.export(environ)
    assert environ == {}


def test_the_kernels_inherit_them_unless_their_environment_says_otherwise():
    settings = MlflowMagic(data_dir="/srv/mlflow", first_port=7100, idle_timeout="30m")
    environ = {"MLFLOW_PATH": "/mine"}
    settings.export(environ)
    assert environ == {"MLFLOW_PATH": "/mine", FIRST_PORT_ENV: "7100",
                       IDLE_TIMEOUT_ENV: "30m"}


def test_a_bad_flag_is_one_paragraph_naming_the_setting():
    with pytest.raises(ConfigError, match=r"c\.MlflowMagic\.start_flags: .*--bogus"):
        MlflowMagic(start_flags=["--bogus"]).options()
    with pytest.raises(ConfigError, match=r"c\.MlflowMagic\.idle_timeout: 'soon' is not"):
        MlflowMagic(idle_timeout="soon").options()


def test_the_forwarder_gets_the_same_settings_as_arguments(monkeypatch):
    settings = MlflowMagic(data_dir="/srv/mlflow", first_port=7100,
                           start_flags=["--workers", "2", "--", "--gunicorn-opts", "a b"])
    seen = {}

    async def serve(unix_socket, options, route):
        seen.update(socket=unix_socket, options=options, route=route)

    monkeypatch.setattr(forwarder, "serve", serve)
    monkeypatch.delenv(FIRST_PORT_ENV, raising=False)  # set back after the test
    # Its own thread, as in its own process: no event loop of another test is running there.
    thread = threading.Thread(target=forwarder.main, args=(
        ["--unix-socket", "/run/x.sock", "--route", "/user/a/mlflow-magic/proxy/",
         *settings.argv()],))
    thread.start()
    thread.join()
    assert seen["options"] == settings.options() and seen["route"].endswith("proxy/")
    assert shlex.split(settings.argv()[-1]) == settings.start_flags
    assert os.environ[FIRST_PORT_ENV] == "7100"
