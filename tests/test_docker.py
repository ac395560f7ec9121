"""The compose service runs `fanout run` with production.env, as the design document's deployment flow needs."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_bot_service_runs_fanout_with_production_env():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bot = compose["services"]["bot"]
    assert bot["env_file"] == "production.env"
    assert bot["command"] == ["run"]
    assert all(p.startswith("127.0.0.1:") for p in bot.get("ports", [])), "webhook published on loopback only"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["fanout"]' in dockerfile
    assert "production.env" in (ROOT / ".dockerignore").read_text(), "secrets never baked into the image"
