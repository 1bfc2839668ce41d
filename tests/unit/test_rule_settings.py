"""Every threshold of the monitor's Rules is a setting (TRACKER_<NAME>), and the Rules the service
runs with are built from all of them."""

import dataclasses
import typing

import pytest

from tracker.config import Settings, load_settings, rules_from
from tracker.monitor import Rules


def test_every_rule_is_a_setting_with_its_type_default_and_doc_line() -> None:
    types = typing.get_type_hints(Rules)
    for rule in dataclasses.fields(Rules):
        setting = Settings.model_fields.get(rule.name)
        assert setting is not None, f"Rules.{rule.name} has no setting"
        assert (setting.annotation, setting.default) == (types[rule.name], rule.default), rule.name
        assert setting.description, f"Rules.{rule.name} has no doc line"


def test_the_defaults_give_the_monitors_default_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for rule in dataclasses.fields(Rules):
        monkeypatch.delenv(f"TRACKER_{rule.name.upper()}", raising=False)
    assert rules_from(load_settings()) == Rules()


def test_every_rule_is_read_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # a value other than the default for every field (doubled, plus one for the counts)
    wanted = {
        f.name: f.default * 2 + 1 if isinstance(f.default, int) else f.default * 2 + 0.5
        for f in dataclasses.fields(Rules)
    }
    for name, value in wanted.items():
        monkeypatch.setenv(f"TRACKER_{name.upper()}", str(value))
    rules = rules_from(load_settings())
    assert dataclasses.asdict(rules) == wanted
    assert rules != Rules()


def test_a_rule_setting_is_validated_like_any_other() -> None:
    with pytest.raises(ValueError, match="place_confirm_fixes"):
        load_settings(place_confirm_fixes=0)
    with pytest.raises(ValueError, match="zone_near_m"):
        load_settings(zone_near_m="near")
