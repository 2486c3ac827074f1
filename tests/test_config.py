"""Settings: defaults, TOML file, PHOTOMAN_* environment, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from photoman.config import DEFAULT_MODEL, load_settings
from photoman.errors import ConfigError


def test_defaults_file_then_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "openai/clip-vit-base-patch32"\nbatch_size = 8\nqdrant_url = "http://nas:6333"\n')
    s = load_settings(cfg, env={"PHOTOMAN_BATCH_SIZE": "64", "PHOTOMAN_DATA_DIR": str(tmp_path / "d")})
    assert s.model == "openai/clip-vit-base-patch32" and s.batch_size == 64
    assert s.qdrant_url == "http://nas:6333" and s.data_dir == tmp_path / "d"
    assert s.catalog == f"sqlite:///{tmp_path / 'd' / 'catalog.sqlite3'}"
    default = load_settings(tmp_path / "c.toml", env={})
    assert default.batch_size == 8
    assert load_settings(env={"PHOTOMAN_CONFIG": str(tmp_path / "c.toml")}).batch_size == 8


def test_bad_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("model = ")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(bad, env={})
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(bad, env={})
    with pytest.raises(ConfigError, match="workers"):
        load_settings(env={"PHOTOMAN_WORKERS": "lots", "PHOTOMAN_CONFIG": ""})
    # values of the wrong kind are refused, not bent (1.5 and true were taken as 1, 5 as "5", an empty
    # data_dir as the folder a command ran in)
    for line, name in (("batch_size = 1.5", "batch_size"), ("batch_size = true", "batch_size"),
                       ("settle = true", "settle"), ("model = 5", "model"), ('data_dir = ""', "data_dir"),
                       ("state_dir = []", "state_dir"), ("exclude = [1]", "exclude"),
                       ("config_file = 'x.toml'", "config_file")):  # fmt: skip
        bad.write_text(line + "\n")
        with pytest.raises(ConfigError, match=name):
            load_settings(bad, env={})


def test_flags_take_words_and_relative_folders_follow_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "conf" / "photoman.toml"
    cfg.parent.mkdir()
    cfg.write_text('autostart = false\ndata_dir = "library-data"\nbatch_size = 4.0\n')
    monkeypatch.chdir(tmp_path)  # not the file's folder
    s = load_settings(cfg, env={})
    assert s.autostart == 0 and s.data_dir == cfg.parent / "library-data" and s.batch_size == 4
    for word, flag in (("true", 1), ("off", 0), ("1", 1)):
        assert load_settings(cfg, env={"PHOTOMAN_AUTOSTART": word}).autostart == flag


def test_default_model_is_laion_b32(tmp_path: Path) -> None:
    """With no config file and no environment, the LAION checkpoint is what a library uses."""
    (tmp_path / "empty.toml").write_text("")
    settings = load_settings(tmp_path / "empty.toml", env={})
    assert settings.model == DEFAULT_MODEL == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def test_config_shows_each_setting_and_its_source(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    from typer.testing import CliRunner

    from photoman.cli import app

    cfg = tmp_path / "photoman.toml"
    cfg.write_text('batch_size = 8\ncatalog_url = "postgresql://me:secret@nas/photos"\n')
    monkeypatch.setenv("PHOTOMAN_CONFIG", str(cfg))
    monkeypatch.setenv("PHOTOMAN_SETTLE", "3.5")
    monkeypatch.setenv("PHOTOMAN_QDRANT_API_KEY", "topsecret")
    res = CliRunner().invoke(app, ["--device", "cpu", "config", "--json"])
    rows = json.loads(res.stdout)
    assert rows["batch_size"] == {"value": 8, "source": f"file {cfg}"}
    assert rows["settle"] == {"value": 3.5, "source": "env PHOTOMAN_SETTLE"}
    assert rows["device"] == {"value": "cpu", "source": "option"}
    assert rows["precision"]["source"] == "default"
    assert "secret" not in res.stdout and rows["qdrant_api_key"]["value"] == "***"
    assert CliRunner().invoke(app, ["config", "path"]).stdout.strip() == str(cfg)
    cfg.write_text("modle = 'x'\n")
    bad = CliRunner().invoke(app, ["config"])
    assert bad.exit_code == 2 and "did you mean 'model'" in bad.stderr and str(cfg) in bad.stderr
    cfg.write_text("model = [\n")  # not TOML, and a value of the wrong kind: bad settings too (2)
    assert CliRunner().invoke(app, ["config"]).exit_code == 2
    cfg.write_text("")
    monkeypatch.setenv("PHOTOMAN_WORKERS", "abc")
    bad = CliRunner().invoke(app, ["config"])
    assert bad.exit_code == 2 and "workers" in bad.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PHOTOMAN_PRECISION": "bogus"}, "unknown precision 'bogus'"),  # a daemon said running, then died
        ({"PHOTOMAN_DEVICE": "tpu"}, "unknown device 'tpu'"),
        ({"PHOTOMAN_BATCH_SIZE": "0"}, "batch_size: at least 1"),
        ({"PHOTOMAN_WORKERS": "-5"}, "workers: 0"),
        ({"PHOTOMAN_SETTLE": "nan"}, "settle: seconds"),
        ({"PHOTOMAN_DEBOUNCE": "inf"}, "debounce: seconds"),
        ({"PHOTOMAN_RESCAN_INTERVAL": "0"}, "rescan_interval"),
        ({"PHOTOMAN_MIN_FREE_MB": "-1"}, "min_free_mb"),
        ({"PHOTOMAN_AUTOSTART": "5"}, "autostart: 0 or 1"),
        ({"PHOTOMAN_TUI_IMAGES": "bogus"}, "tui_images"),
        ({"PHOTOMAN_QDRANT_URL": "bogus"}, "an http(s):// address"),  # it made a folder named bogus here
        ({"PHOTOMAN_QDRANT_URL": "localhost:6333"}, "did you mean http://localhost:6333"),
        ({"PHOTOMAN_CATALOG_URL": "sqlite:///:memory:"}, "in memory"),  # a daemon without tables
        ({"PHOTOMAN_CATALOG_URL": "sqlite://"}, "in memory"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_when_read(env: dict[str, str], words: str) -> None:
    """Checked as settings are made, from any source: one line (exit 2), not a later failure."""
    from photoman.errors import SettingValueError

    with pytest.raises(SettingValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env={**env, "PHOTOMAN_CONFIG": ""})


def test_an_empty_model_option_is_refused() -> None:
    from photoman.config import Settings
    from photoman.errors import SettingValueError

    with pytest.raises(SettingValueError, match="model: give"):
        Settings().with_overrides(model="")  # `--model ''` (an empty variable is taken as unset)


def test_settings_that_work_are_taken(tmp_path: Path) -> None:
    for env in ({"PHOTOMAN_QDRANT_URL": "https://nas:6333"}, {"PHOTOMAN_QDRANT_URL": str(tmp_path / "q")},
                {"PHOTOMAN_CATALOG_URL": f"sqlite:///{tmp_path / 'c.db'}"}, {"PHOTOMAN_DEVICE": "cuda:1"},
                {"PHOTOMAN_WORKERS": "0"}, {"PHOTOMAN_SETTLE": "0"}):  # fmt: skip
        load_settings(env={**env, "PHOTOMAN_CONFIG": ""})
