"""Settings loading details and the price book."""

from __future__ import annotations

import pytest

from flowgate_addon.config import ConfigError, load_settings
from flowgate_addon.paths import default_db_path
from flowgate_addon.pricing import PriceBook, litellm_price_map


def test_defaults_need_no_file(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWGATE_CONFIG", raising=False)
    monkeypatch.setenv("FLOWGATE_HOME", str(tmp_path))
    settings = load_settings()
    assert (settings.server.host, settings.server.port, settings.server.proxy_port) == (
        "127.0.0.1",
        7798,
        7799,
    )
    assert settings.database.path == default_db_path() == tmp_path / "flowgate.db"
    assert settings.smart_router.enabled is False
    assert settings.logging.store_prompts and settings.logging.store_responses


def test_env_references_take_yaml_types_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("GW_PORT", "9100")
    monkeypatch.setenv("LOCAL_KEY", "sk-abc")
    path = tmp_path / "c.yaml"
    path.write_text(
        "server: {port: '${GW_PORT}', proxy_port: '${PROXY_PORT:-9101}'}\n"
        "database: {path: logs/x.db}\n"
        "providers:\n  local: {base_url: 'http://h:1/v1/', api_key: 'Bearer-less ${LOCAL_KEY}'}\n"
    )
    monkeypatch.setenv("FLOWGATE_CONFIG", str(path))
    settings = load_settings()
    assert (settings.server.port, settings.server.proxy_port) == (9100, 9101)
    assert settings.providers["local"].api_key == "Bearer-less sk-abc"
    assert settings.providers["local"].base_url == "http://h:1/v1"
    assert settings.database.path == tmp_path / "logs" / "x.db"  # relative to the file


def test_duplicate_keys_and_non_mapping_files_are_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigError, match=r"line 3: server\.port: duplicate key"):
        load_settings(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(path)


TIERS_YAML = "  tiers: {SIMPLE: a, MEDIUM: b, COMPLEX: c, REASONING: d}\n"


@pytest.mark.parametrize(
    ("router", "error"),
    [
        ("  strategy: complexity\n", r"line 1: smart_router\.tiers: .*missing: SIMPLE, MEDIUM"),
        (
            "  strategy: complexity\n  tiers: {SIMPLE: a}\n",
            r"line 4: smart_router\.tiers: .*missing: MEDIUM, COMPLEX, REASONING",
        ),
        (
            "  strategy: complexity\n" + TIERS_YAML + "  complexity: {weights: {size: 1}}\n",
            r"line 5: smart_router\.complexity\.weights: unknown dimension .size.",
        ),
        (
            "  strategy: complexity\n"
            + TIERS_YAML
            + "  complexity: {thresholds: {MEDIUM: 0.5, COMPLEX: 0.4, REASONING: 0.9}}\n",
            r"line 5: smart_router\.complexity\.thresholds\.COMPLEX: ",
        ),
        ("  strategy: smart\n", r"line 3: smart_router\.strategy: Input should be 'off'"),
        (
            "  strategy: classifier\n" + TIERS_YAML + "  classifier: {router: sw_ranking}\n",
            r"line 5: smart_router\.classifier\.router",
        ),
        (
            "  strategy: classifier\n" + TIERS_YAML + "  classifier: {checkpoint: ./nowhere}\n",
            r"line 5: smart_router\.classifier\.checkpoint: .*nowhere does not exist",
        ),
    ],
)
def test_routing_settings_are_checked_with_the_key_named(tmp_path, router, error):
    path = tmp_path / "c.yaml"
    path.write_text("smart_router:\n  enabled: true\n" + router)
    with pytest.raises(ConfigError, match=error):
        load_settings(path)


def test_routing_off_needs_no_tiers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("smart_router:\n  enabled: false\n  strategy: complexity\n")
    assert not load_settings(path).smart_router.active


def test_price_book_uses_the_map_and_overrides():
    mapped = litellm_price_map()["gpt-4o"]
    book = PriceBook()
    assert book.cost("gpt-4o", 1000, 100) == pytest.approx(
        1000 * mapped["input_cost_per_token"] + 100 * mapped["output_cost_per_token"]
    )
    assert book.cost("never-heard-of-it", 1000, 100) is None
    assert book.cost("gpt-4o", None, None) is None

    from flowgate_addon.config import PriceSettings

    book = PriceBook(
        {
            "my-model": PriceSettings(input=2.0, output=8.0, cached_input=0.5),
            "gpt-4o": PriceSettings(input=1.0),
        }
    )
    assert book.cost("my-model", 1_000_000, 500_000, cached_tokens=200_000) == pytest.approx(
        0.8 * 2.0 + 0.2 * 0.5 + 0.5 * 8.0
    )
    assert book.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(1.0)


def test_price_map_is_read_without_importing_litellm():
    import sys

    litellm_price_map()
    assert "litellm" not in sys.modules or "litellm.main" not in sys.modules


def test_the_example_config_is_valid_and_documents_every_key(monkeypatch):
    """Keep config/flowgate.example.yaml true to the code."""
    from pathlib import Path

    import yaml

    from flowgate_addon.config import Settings

    example = Path(__file__).parent.parent / "config" / "flowgate.example.yaml"
    monkeypatch.delenv("LOCAL_LLM_KEY", raising=False)
    settings = load_settings(example)
    assert settings.providers["local"].models == ["my-model", "my-org-*"]
    documented = yaml.safe_load(example.read_text())

    def check(fields: dict, shown: dict, where: str) -> None:
        for key, field in fields.items():
            if key == "source":
                continue
            assert key in shown, f"{where}{key} is not in the example config"
            sub = getattr(field.annotation, "model_fields", None)
            if sub:
                check(sub, shown[key], f"{where}{key}.")

    check(Settings.model_fields, documented, "")


def test_providers_sharing_a_host_are_told_apart_by_base_path(tmp_path):
    from flowgate_addon.providers import ProviderRegistry

    path = tmp_path / "c.yaml"
    path.write_text(
        "providers:\n"
        "  openai: {base_url: 'http://h:1/v1'}\n"
        "  a: {base_url: 'http://h:1/team-a/v1'}\n"
        "  b: {base_url: 'http://h:1/team-a/v1/b'}\n"
    )
    registry = ProviderRegistry.from_config(load_settings(path).providers)
    assert list(registry.providers)[:3] == ["openai", "anthropic", "gemini"]
    assert list(registry.providers)[-2:] == ["a", "b"]

    def at(path: str) -> tuple[str, str] | None:
        found = registry.for_address("h", 1, path)
        return found and (found[0].name, found[1])

    assert at("/v1/chat/completions") == ("openai", "/chat/completions")
    assert at("/team-a/v1/embeddings") == ("a", "/embeddings")
    assert at("/team-a/v1/b/chat/completions") == ("b", "/chat/completions")
    assert at("/elsewhere") is None
    assert registry.for_address("h", 2, "/v1/chat/completions") is None
    # The public address still identifies the overridden built-in.
    found = registry.for_address("api.openai.com", 443, "/v1/embeddings")
    assert found and found[0].name == "openai" and found[0].upstream.host == "h"
    assert registry.intercepts("api.anthropic.com") and registry.intercepts("h")
    assert not registry.intercepts("example.com")
