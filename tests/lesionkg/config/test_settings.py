import json

import pytest

from lesionkg.config.settings import resolve_settings
from lesionkg.core.errors import ConfigurationError


def test_environment_gives_every_field():
    env = {
        "NEO4J_URI": "bolt://db:7687",
        "NEO4J_USERNAME": "alice",
        "NEO4J_PASSWORD": "pw",
        "NEO4J_DATABASE": "lesions",
    }
    s = resolve_settings(env=env)
    assert (s.uri, s.username, s.password, s.database) == (
        "bolt://db:7687",
        "alice",
        "pw",
        "lesions",
    )


def test_neo4j_user_is_accepted_and_username_wins():
    env = {"NEO4J_URI": "bolt://db", "NEO4J_USER": "bob", "NEO4J_PASSWORD": "pw"}
    assert resolve_settings(env=env).username == "bob"
    assert resolve_settings(env={**env, "NEO4J_USERNAME": "carol"}).username == "carol"


def test_options_override_environment():
    env = {"NEO4J_URI": "bolt://db", "NEO4J_PASSWORD": "pw"}
    s = resolve_settings(uri="bolt://other:1", password="x", database="d", env=env)
    assert (s.uri, s.password, s.database, s.username) == ("bolt://other:1", "x", "d", "neo4j")


def test_uri_without_password_is_an_error():
    with pytest.raises(ConfigurationError, match="NEO4J_PASSWORD"):
        resolve_settings(env={"NEO4J_URI": "bolt://db"})


def test_no_uri_falls_back_to_the_local_server(tmp_path):
    (tmp_path / "instance.json").write_text(
        json.dumps({"port": 17999, "username": "neo4j", "password": "gen"})
    )
    s = resolve_settings(env={}, data_dir=tmp_path)
    assert (s.uri, s.password) == ("bolt://127.0.0.1:17999", "gen")


def test_no_uri_and_no_local_server_says_what_to_do(tmp_path):
    with pytest.raises(ConfigurationError, match="lesionkg neo4j start"):
        resolve_settings(env={}, data_dir=tmp_path)
