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


def test_image_copies_every_room_the_package_installs():
    import tomllib

    rooms = [p.rstrip("*") for p in tomllib.loads((ROOT / "pyproject.toml").read_text())
             ["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "Dockerfile").read_text()
    missing = [room for room in rooms if f"COPY {room} ./{room}" not in dockerfile]
    assert not missing, f"Dockerfile does not copy {missing}: the installed bot would fail to import them"
