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


def test_optional_postgres_service_the_bot_waits_for():
    """`docker compose --profile postgres up -d` adds PostgreSQL; without the profile the bot keeps SQLite."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:") and db["profiles"] == ["postgres"]
    assert "ports" not in db, "the database is reached on the compose network only"
    volume, target = db["volumes"][0].split(":")
    assert target == "/var/lib/postgresql/data" and volume in compose["volumes"], "data outlives the container"
    env = db["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD"), "the password comes from .env, not the file"
    test = " ".join(db["healthcheck"]["test"])
    assert f"pg_isready -U {env['POSTGRES_USER']} -d {env['POSTGRES_DB']}" in test
    dependency = compose["services"]["bot"]["depends_on"]["db"]
    assert dependency == {"condition": "service_healthy", "required": False}
    # the commented URL in production.env.example reaches that service
    example = (ROOT / "production.env.example").read_text()
    url = f"# DATABASE_URL=postgresql://{env['POSTGRES_USER']}:<the same password>@db:5432/{env['POSTGRES_DB']}"
    assert url in example.splitlines()
    for ignore in (".gitignore", ".dockerignore"):  # .env holds POSTGRES_PASSWORD
        assert any(line.strip("/") == ".env" for line in (ROOT / ignore).read_text().splitlines()), ignore
