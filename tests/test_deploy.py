"""Issue 18: the sample reverse-proxy configurations (deploy/) are valid and hand `serve` the
scheme the way CONNECTOR_REQUIRE_HTTPS reads it (X-Forwarded-Proto, never a client's own).

With Caddy and nginx installed (Debian packages; .ci/run installs them) the real binaries check
the files, and nginx runs in front of a real `connector serve`; without them a parser test
checks the same directives.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from connector import install
from connector.demo import free_port
from tests.fixtures_connector import WEBHOOK_SECRET, Connector

ROOT = Path(__file__).resolve().parent.parent
CADDYFILE = ROOT / "deploy" / "Caddyfile"
NGINX = ROOT / "deploy" / "nginx.conf"
HOST = "bounces.example.com"
UPSTREAM = "127.0.0.1:8080"
PROXIED_PATHS = ("/keap/", "/oauth/callback", "/healthz")


def _no_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


# --- Caddy -----------------------------------------------------------------------------------


def test_caddyfile_parses_to_one_https_site_proxying_to_serve() -> None:
    text = _no_comments(CADDYFILE.read_text())
    assert re.search(rf"^{re.escape(HOST)} \{{", text, flags=re.MULTILINE), (
        "a host name: auto HTTPS"
    )
    assert f"reverse_proxy {UPSTREAM}" in text
    assert "@connector path /keap/* /oauth/callback /healthz" in text
    assert "header_up" not in text, "X-Forwarded-Proto is Caddy's own, never rewritten"
    assert re.search(r"^\s*log\b", text, flags=re.MULTILINE) is None, "no log of ?key=..."
    assert "tls " not in text, "automatic HTTPS stays on"
    assert "http://" not in text


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed (.ci/run does)")
def test_caddy_validates_and_adapts_the_caddyfile(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    validated = subprocess.run(
        ["caddy", "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr
    adapted = subprocess.run(
        ["caddy", "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    config = json.loads(adapted.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    assert "logs" not in server
    flat = json.dumps(server)
    assert '"dial": "127.0.0.1:8080"' in flat
    assert "X-Forwarded-Proto" not in flat, "Caddy sets it; the file never overrides it"
    assert '"max_size": 65536' in flat
    assert HOST in flat


# --- nginx -----------------------------------------------------------------------------------


def _nginx_blocks() -> list[str]:
    text = _no_comments(NGINX.read_text())
    return [block for block in re.split(r"^server \{", text, flags=re.MULTILINE)[1:]]


def test_nginx_sets_the_scheme_and_port_80_only_redirects() -> None:
    plain, tls = _nginx_blocks()
    assert "listen 80;" in plain
    assert "proxy_pass" not in plain
    assert "return 301 https://" in plain
    assert "listen 443 ssl" in tls
    assert f"proxy_pass http://{UPSTREAM};" in tls
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in tls
    assert "client_max_body_size 64k;" in tls
    for block in (plain, tls):
        assert "connector_noquery" in block
    log_format = _no_comments(NGINX.read_text()).split("server {")[0]
    assert "$request " not in log_format
    assert "$request_uri" not in log_format
    assert "$args" not in log_format


def _nginx_test_copy(tmp_path: Path, serve_port: int) -> tuple[Path, int, int]:
    """deploy/nginx.conf with its certificate, log and ports moved into ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem"),
            "-subj", f"/CN={HOST}",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    plain_port, tls_port = free_port(), free_port()
    site = NGINX.read_text()
    site = site.replace(f"/etc/letsencrypt/live/{HOST}/", f"{tmp_path}/")
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    site = site.replace("listen [::]:80;", "").replace("listen [::]:443 ssl http2;", "")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{plain_port};")
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl")
    site = site.replace(UPSTREAM, f"127.0.0.1:{serve_port}")
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\ndaemon off;\n"
        f"events {{}}\nhttp {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    return main, plain_port, tls_port


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="nginx/openssl not installed (.ci/run installs nginx)",
)
def test_nginx_in_front_of_serve_with_require_https(connector: Connector, tmp_path: Path) -> None:
    connector.env["CONNECTOR_REQUIRE_HTTPS"] = "true"
    served = connector.serve()
    main, plain_port, tls_port = _nginx_test_copy(tmp_path / "nginx", served.port)
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(main.parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen(
        ["nginx", "-c", str(main), "-p", str(main.parent)], stderr=subprocess.PIPE
    )
    try:
        https = f"https://127.0.0.1:{tls_port}"
        deadline = time.monotonic() + 30
        while True:  # bounded wait for nginx to listen
            try:
                httpx.get(f"{https}/healthz", verify=False, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
                time.sleep(0.1)
        contact = "1001"
        through_https = httpx.post(
            f"{https}/keap/bounce/hard_bounce",
            params={"key": WEBHOOK_SECRET},
            content=f"contactId={contact}",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "host": HOST,
                "x-forwarded-proto": "http",  # a client's own value is replaced
            },
            verify=False,
            timeout=30,
        )
        assert through_https.status_code == 202, through_https.text
        plain = httpx.post(
            f"http://127.0.0.1:{plain_port}/keap/bounce/hard_bounce",
            params={"key": WEBHOOK_SECRET},
            content=f"contactId={contact}",
            headers={"content-type": "application/x-www-form-urlencoded", "host": HOST},
            timeout=30,
        )
        assert plain.status_code == 301, "port 80 never reaches serve"
        assert "key=" not in plain.headers["location"], "the redirect drops the query"
        for path in ("/metrics", "/readyz"):
            assert httpx.get(f"{https}{path}", verify=False, timeout=30).status_code == 404
        direct = served.post(
            "/keap/bounce/hard_bounce",
            f"contactId={contact}",
            headers={"x-forwarded-proto": "http"},
        )
        assert direct.status_code == 403, "without the proxy's https, serve refuses"
        log = (main.parent / "keap-bounce-connector.log").read_text()
        assert "/keap/bounce/hard_bounce" in log
        assert WEBHOOK_SECRET not in log
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


# --- the one install layout ------------------------------------------------------------------


def test_units_readme_and_init_share_one_layout() -> None:
    app, state = str(install.APP_DIR), str(install.STATE_DIR)
    for unit in sorted((ROOT / "scripts").glob("connector-*.service")):
        text = unit.read_text()
        assert f"WorkingDirectory={state}\n" in text, unit.name
        assert f"ExecStart={app}/bin/connector " in text, unit.name
        assert f"User={install.SERVICE_USER}\n" in text, unit.name
        assert "EnvironmentFile" not in text, f"{unit.name}: settings are {state}/.env"
        assert "/srv/" not in text, unit.name
        assert "/etc/keap-bounce-connector" not in text, unit.name
    readme = (ROOT / "README.md").read_text()
    assert "/srv/connector" not in readme
    assert "/etc/keap-bounce-connector" not in readme
    assert ".venv/bin/connector sync" not in readme
    assert f"cd {state} && {app}/bin/connector sync" in readme
