"""The published contract page and the message classes must agree."""

from pathlib import Path

from shared.contract_doc import render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "contract.md"


def test_contract_page_matches_the_message_classes() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/contract.md is out of date: if the contract change is deliberate, run "
        "`.venv/bin/python -m shared.contract_doc > docs/contract.md`"
    )


CONFIG_PAGE = PAGE.with_name("configuration.md")


def test_configuration_page_matches_the_settings_classes() -> None:
    from services.settings_doc import render as render_settings

    assert CONFIG_PAGE.read_text(encoding="utf-8") == render_settings(), (
        "docs/configuration.md is out of date: if the change is deliberate, run "
        "`.venv/bin/python -m services.settings_doc > docs/configuration.md`"
    )
