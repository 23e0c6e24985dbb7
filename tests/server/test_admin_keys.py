"""The admin API of a real ``msgflux serve`` without ``server.state``: virtual keys in one
process's memory, the role table of every admin route, the dashboard's static files.

Shared keys (two workers, two instances, one Redis) are in ``test_admin_keys_shared.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from msgflux.server import admin, admin_keys, dashboard, ui
from msgflux.server.routes import ROUTES
from tests.server.harness import (
    SERVER_KEY,
    Served,
    chat_gateway,
    run_cli,
    start,
    write_config,
)
from tests.upstream import Upstream

USER_KEY = "sk-test-plain-user-0001"
CHAT: Any = [{"role": "user", "content": "hi"}]


class Env:
    def __init__(self, server: Served, up: Upstream) -> None:
        self.server = server
        self.up = up

    def call(self, method: str, path: str, key: str | None = SERVER_KEY, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with self.server.client() as client:
            return client.request(method, path, headers=headers, **kw)

    def chat(self, key: str, model: str = "chat") -> int:
        with self.server.client() as client:
            resp = client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": CHAT},
                headers={"Authorization": f"Bearer {key}"},
            )
        return int(resp.status_code)

    def create(self, name: str, **fields: Any) -> tuple[dict[str, Any], str]:
        resp = self.call("POST", "/admin/keys", json={"name": name, "models": "*", **fields})
        assert resp.status_code == 201, resp.text
        out = resp.json()
        return out["key"], out["secret"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("admin-keys")
    with Upstream() as up:
        config = {
            "server": {
                "keys": [
                    {"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True},
                    {"name": "user", "key": USER_KEY, "models": "*"},
                ]
            },
            "gateways": {"chat": chat_gateway(up.base_url), "other": chat_gateway(up.base_url)},
        }
        server = start(directory, config)
        try:
            yield Env(server, up)
        finally:
            assert server.stop() == 0


# -- who may call what: one table for every admin route ------------------------------------------
ADMIN_ROUTES = [
    ("POST", "/admin/reload", None),
    ("GET", "/admin/config", None),
    ("GET", "/metrics", None),
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"name": "role-made", "models": "*"}),
    ("GET", "/admin/keys/role-target", None),
    ("PATCH", "/admin/keys/role-target", {"rpm": 9}),
    ("POST", "/admin/keys/role-target/rotate", {}),
    ("POST", "/admin/keys/role-target/revoke", None),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/dashboard", None),
]
"""Every admin route (:func:`test_the_table_lists_every_admin_route` keeps it complete)."""
ROLES = {"no key": 401, "wrong key": 401, "plain key": 403, "virtual key": 403}


def test_the_table_lists_every_admin_route() -> None:
    served = {p for p in ROUTES if p.startswith("/admin") or p in admin.PATHS}
    served |= {admin_keys.KEYS, admin_keys.KEYS + "/{name}", admin_keys.KEYS + "/{name}/rotate"}
    served |= {admin_keys.KEYS + "/{name}/revoke", dashboard.PATH}
    listed = {path.replace("role-target", "{name}") for _, path, _ in ADMIN_ROUTES}
    assert served == listed


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_role_table(env: Env, method: str, path: str, body: Any) -> None:
    """method x path x role: only an admin key gets past authorization."""
    _, virtual = env.create(f"role-{method}-{path.replace('/', '_')}"[:60])
    keys = {
        "no key": None,
        "wrong key": "sk-not-a-key-at-all-000",
        "plain key": USER_KEY,
        "virtual key": virtual,
    }
    env.call("POST", "/admin/keys", json={"name": "role-target", "models": "*"})
    for role, status in ROLES.items():
        resp = env.call(method, path, keys[role], json=body)
        assert resp.status_code == status, (role, resp.text)
        assert resp.json()["error"]["code"] in ("invalid_api_key", "forbidden")
    resp = env.call(method, path, SERVER_KEY, json=body)
    if path.endswith("/revoke"):
        env.call("POST", "/admin/keys", json={"name": "role-target", "models": "*"})
    assert resp.status_code not in (401, 403), resp.text
    assert resp.status_code in (200, 201, 409), resp.text  # 409: made by an earlier row


# -- the virtual key life cycle in memory ---------------------------------------------------------
def test_a_key_is_issued_used_rotated_and_revoked(env: Env) -> None:
    key, secret = env.create("life", rpm=100, metadata={"team": "search", "owner": "ana"})
    assert key["status"] == "active" and key["metadata"] == {"team": "search", "owner": "ana"}
    client = openai.OpenAI(base_url=env.server.base_url, api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model="chat", messages=CHAT)
    assert answer.choices[0].message.content

    resp = env.call("POST", "/admin/keys/life/rotate", json={"grace_seconds": 0})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    new = resp.json()["secret"]
    assert new != secret and resp.json()["key"]["fingerprint"] != key["fingerprint"]
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="chat", messages=CHAT)
    assert env.chat(new) == 200

    assert env.call("POST", "/admin/keys/life/revoke").json()["status"] == "revoked"
    assert env.chat(new) == 401
    listed = {k["name"]: k for k in env.call("GET", "/admin/keys").json()["keys"]}
    assert listed["life"]["status"] == "revoked" and listed["life"]["usage"] is not None
    assert env.call("PATCH", "/admin/keys/life", json={"rpm": 5}).status_code == 409


def test_memory_storage_says_keys_do_not_survive(env: Env) -> None:
    storage = env.call("GET", "/admin/keys").json()["storage"]
    assert storage["durable"] is False and "restart" in storage["note"]


def test_models_limit_what_a_virtual_key_may_use(env: Env) -> None:
    _, secret = env.create("only-other", models=["other"])
    assert env.chat(secret, "other") == 200
    assert env.chat(secret, "chat") == 403


def test_limits_of_a_virtual_key_apply(env: Env) -> None:
    _, secret = env.create("rpm2", rpm=2)
    assert [env.chat(secret) for _ in range(3)] == [200, 200, 429]
    got = env.call("GET", "/admin/keys/rpm2").json()
    assert got["usage"]["requests_last_minute"] == 2


def test_a_short_real_expiry_is_enforced(env: Env) -> None:
    _, secret = env.create("short", expires_at=time.time() + 1.0)
    assert env.chat(secret) == 200
    time.sleep(1.1)
    assert env.chat(secret) == 401
    assert env.call("GET", "/admin/keys/short").json()["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "v", "models": ["nope"]}, "models[0]"),
        ({"name": "v", "models": "*", "rpm": "x"}, "rpm"),
        ({"name": "v", "models": "*", "budget": {"usd": 1, "period": "year"}}, "budget.period"),
        ({"name": "has space", "models": "*"}, "name"),
        ({"name": "ops", "models": "*"}, "name"),
    ],
)
def test_mistakes_are_typed_4xx_naming_the_field(env: Env, body: Any, param: str) -> None:
    resp = env.call("POST", "/admin/keys", json=body)
    assert resp.status_code in (400, 409)
    assert resp.json()["error"]["param"] == param


def test_config_keys_are_listed_read_only(env: Env) -> None:
    keys = {k["name"]: k for k in env.call("GET", "/admin/keys").json()["keys"]}
    assert keys["ops"]["source"] == "config" and keys["ops"]["read_only"] and keys["ops"]["admin"]
    assert set(keys["ops"]["usage"].values()) == {None}  # no limits: nothing counted, nor read
    assert env.call("POST", "/admin/keys/user/revoke").status_code == 409
    assert env.call("PATCH", "/admin/keys/user", json={"rpm": 1}).status_code == 409
    assert env.chat(USER_KEY) == 200


def test_no_secret_reaches_logs_listings_or_the_audit(env: Env) -> None:
    _, secret = env.create("secretive")
    rotated = env.call("POST", "/admin/keys/secretive/rotate").json()["secret"]
    env.chat(secret)
    env.chat(rotated)
    env.chat(rotated + "x")  # a wrong key
    texts = [
        env.server.log(),
        env.call("GET", "/admin/keys").text,
        env.call("GET", "/admin/keys/secretive").text,
        env.call("GET", "/admin/audit").text,
        env.call("GET", "/admin/dashboard").text,
        env.call("GET", "/metrics").text,
    ]
    for text in texts:
        for value in (secret, rotated, SERVER_KEY):
            assert value not in text and value[4:20] not in text


def test_wrong_methods_and_paths(env: Env) -> None:
    assert env.call("DELETE", "/admin/keys").status_code == 405
    assert env.call("POST", "/admin/keys/x").status_code == 405
    assert env.call("GET", "/admin/keys/x/rotate").status_code == 405
    assert env.call("POST", "/admin/keys/x/y/z").status_code == 404
    assert env.call("GET", "/admin/keys/never-made").status_code == 404
    assert env.call("GET", "/admin/audit?limit=0").json()["error"]["param"] == "limit"


def test_the_audit_is_append_only(env: Env) -> None:
    """Nothing removes or rewrites an entry: the audit has no route but GET."""
    env.create("kept")
    before = env.call("GET", "/admin/audit?limit=1000").json()["entries"]
    for method in ("DELETE", "POST", "PUT", "PATCH"):
        assert env.call(method, "/admin/audit", json={}).status_code == 405
    after = env.call("GET", "/admin/audit?limit=1000").json()["entries"]
    assert after == before and after[0]["key"] == "kept"


def test_audit_lists_changes_newest_first(env: Env) -> None:
    env.create("audited")
    env.call("PATCH", "/admin/keys/audited", json={"metadata": {"team": "t"}})
    entries = env.call("GET", "/admin/audit?limit=2").json()["entries"]
    assert [(e["action"], e["key"], e["actor"]) for e in entries] == [
        ("update", "audited", "ops"),
        ("create", "audited", "ops"),
    ]
    assert entries[0]["changes"] == {"metadata": {"team": "t"}}


def test_the_cli_drives_the_api(env: Env, tmp_path: Path) -> None:
    cli_env = {"MSGFLUX_ADMIN_KEY": SERVER_KEY}
    url = env.server.url
    made = run_cli("keys", "create", "from-cli", "--rpm", "5", "--meta", "team=x", "--url", url,
                   env=cli_env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("mfx-") and env.chat(secret) == 200
    listed = run_cli("keys", "list", "--url", url, env=cli_env)
    assert "from-cli" in listed.stdout and secret not in listed.stdout
    rotated = run_cli("keys", "rotate", "from-cli", "--grace", "0", "--url", url, env=cli_env)
    new = rotated.stdout.strip().splitlines()[-1]
    assert env.chat(secret) == 401 and env.chat(new) == 200
    revoked = run_cli("keys", "revoke", "from-cli", "--url", url, env=cli_env)
    assert revoked.stdout.strip() == "from-cli: revoked" and env.chat(new) == 401
    usage = run_cli("keys", "usage", "--url", url, "--json", env=cli_env)
    assert usage.returncode == 0 and '"name": "from-cli"' in usage.stdout
    missing = run_cli("keys", "list", "--url", url)
    assert missing.returncode == 1 and "MSGFLUX_ADMIN_KEY" in missing.stderr
    wrong = run_cli("keys", "revoke", "ops", "--url", url, env=cli_env)
    assert wrong.returncode == 1 and "409" in wrong.stderr


def test_the_cli_on_a_config_without_state_says_to_use_the_api(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"gateways": {"chat": chat_gateway("http://127.0.0.1:9/v1")}})
    for command in (("create", "x"), ("list",), ("rotate", "x"), ("revoke", "x")):
        out = run_cli("keys", *command, "--config", str(config))
        assert out.returncode == 1 and "server.state" in out.stderr and "--url" in out.stderr
    both = run_cli("keys", "list", "--config", str(config), "--url", "http://127.0.0.1:9")
    assert both.returncode == 1 and "either --url" in both.stderr


def test_the_cli_issues_no_key_a_server_without_client_keys_would_not_check(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        {
            "server": {"state": "redis://127.0.0.1:9/0"},  # refused before it is reached
            "gateways": {"chat": chat_gateway("http://127.0.0.1:9/v1")},
        },
    )
    for command in (("create", "x"), ("rotate", "x")):
        out = run_cli("keys", *command, "--config", str(config))
        assert out.returncode == 1 and "server.keys" in out.stderr, out.stderr


def test_the_dashboard_files_are_served_with_a_strict_policy(env: Env) -> None:
    for path, kind in (("/ui", "text/html"), ("/ui/app.js", "text/javascript")):
        resp = env.call("GET", path, key=None)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
        assert resp.headers["content-security-policy"] == ui.CSP.decode()
        assert resp.headers["x-content-type-options"] == "nosniff"
    assert env.call("GET", "/ui/style.css", key=None).headers["content-type"].startswith("text/css")
    page = env.call("GET", "/ui", key=None).text
    assert "http" not in page.replace("http-equiv", "")  # no CDN, nothing off-origin
    assert env.call("GET", "/ui/other.js", key=None).status_code == 404
    assert env.call("POST", "/ui", key=None).status_code == 405


def test_the_page_never_turns_api_values_into_html_or_code() -> None:
    """Every value from the API is written as text: a key's metadata cannot inject a script."""
    from importlib import resources

    script = resources.files("msgflux.server").joinpath("ui", "app.js").read_text("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "localStorage" not in script and "document.cookie" not in script
    assert "sessionStorage" in script


def test_the_admin_api_holds_no_request_or_answer_content(env: Env) -> None:
    prompt = "the-prompt-text-only-the-upstream-may-see"
    with env.server.client() as client:
        client.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": prompt}]},
            headers={"Authorization": f"Bearer {USER_KEY}"},
        )
    for path in ("/admin/dashboard", "/admin/keys", "/admin/audit"):
        shown = env.call("GET", path).text
        assert prompt not in shown and "Hello from" not in shown  # nor the answer


def test_dashboard_json_shows_each_deployment(env: Env) -> None:
    env.chat(USER_KEY)
    data = env.call("GET", "/admin/dashboard").json()
    (dep,) = data["gateways"]["chat"]["deployments"]
    assert dep["name"] == "d0" and dep["breaker"] == "closed" and dep["window"] is None
    assert {"in_flight", "p50_ms", "p95_ms", "error_rate", "last_error"} <= set(dep)
    assert sum(data["activity"]["keys"]["user"]["requests"]) >= 1


def test_with_workers_and_no_state_creating_keys_is_refused(tmp_path: Path) -> None:
    config = {
        "server": {"keys": [{"name": "ops", "key": SERVER_KEY, "models": "*", "admin": True}]},
        "gateways": {"chat": chat_gateway("http://127.0.0.1:9/v1")},
    }
    server = start(tmp_path, config, "--workers", "2")
    try:
        pids: set[int] = set()
        while len(pids) < 2:  # both workers serve (a SIGTERM before that is another story)
            with httpx.Client() as fresh:
                pids.add(fresh.get(f"{server.url}/health/liveness").json()["pid"])
        resp = httpx.post(
            f"{server.url}/admin/keys",
            json={"name": "x", "models": "*"},
            headers={"Authorization": f"Bearer {SERVER_KEY}"},
        )
        assert resp.status_code == 409 and "server.state" in resp.json()["error"]["message"]
    finally:
        assert server.stop() == 0, server.log()


def test_the_cli_never_follows_a_redirect_with_the_admin_key() -> None:
    import http.server
    import threading

    from msgflux.server.keys_client import HTTPKeys, KeysError

    seen: list[str | None] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"keys": []}')

        def log_message(self, *args: Any) -> None:
            pass

    target = http.server.HTTPServer(("127.0.0.1", 0), Target)

    class Redirect(Target):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target.server_port}/admin/keys")
            self.end_headers()

    redirect = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    for server in (target, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(KeysError, match="302"):
            HTTPKeys(f"http://127.0.0.1:{redirect.server_port}", "sk-admin-secret-1").list()
        assert seen == []
    finally:
        for server in (target, redirect):
            server.shutdown()
            server.server_close()
