"""The ``msgflux`` command: see a gateway fall back from the cloud to a local model.

``msgflux demo`` needs nothing but the ``[local]`` extra: with no ``OPENAI_API_KEY`` (or no
network) the cloud deployment fails fast and the embedded model answers; the table printed
after the answer shows every attempt, so the fallback is visible rather than magic.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from msgflux.exceptions import ModelRouterError, StreamInterruptedError

__all__ = ["app", "main"]

DEFAULT_QUESTION = "Who was Frank Rosenblatt?"
DEFAULT_CLOUD = "openai/gpt-4.1-nano"
DEFAULT_LOCAL = "local/smollm2-135m-instruct"
DEMO_SYSTEM_PROMPT = "You are a concise assistant. Answer briefly."

app = typer.Typer(
    name="msgflux",
    help=(
        "msgflux-gateway: reliable calls to AI models.\n\n"
        "Run [bold]msgflux demo[/bold] to watch a ModelGateway fall back from a cloud model "
        "to the local model that ships with the \\[local] extra.\n\n"
        "Run [bold]msgflux models[/bold] to list providers, model types and local models."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _consoles() -> tuple[Console, Console]:
    """stdout for the answer and the table; stderr for spinners, hints and logs."""
    return Console(highlight=False), Console(stderr=True, highlight=False)


def _configure_logging(verbose: bool, err: Console) -> None:
    root = logging.getLogger("msgflux")
    if verbose:
        from rich.logging import RichHandler

        root.addHandler(RichHandler(console=err, show_path=False))
        root.setLevel(logging.DEBUG)
    else:
        # The attempt table already tells the story; keep the gateway's fallback WARNING
        # from reaching Python's last-resort stderr handler.
        root.addHandler(logging.NullHandler())


def _print_attempts(out: Console, records: list[dict[str, Any]], winner: str | None) -> None:
    """The attempt table, then one line per failure with its message (which can be long)."""
    table = Table(title="Attempts", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("deployment", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    notes: list[str] = []
    for i, rec in enumerate(records, 1):
        if rec.get("skipped"):
            outcome = "[yellow]skipped[/yellow]"
            notes.append(f"  #{i} skipped: {_short(rec['skipped'])}")
        elif rec.get("error"):
            outcome = f"[red]{rec['error']}[/red]"
            notes.append(f"  #{i} {rec['error']}: {_short(rec.get('message'))}")
        else:
            outcome = "[green]answered[/green]" if rec.get("model_name") == winner else "ok"
        ms = float(rec.get("duration") or 0.0) * 1000
        latency = f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
        table.add_row(str(i), str(rec.get("model_name")), outcome, latency)
    out.print(table)
    for note in notes:
        out.print(note, markup=False)


def _short(message: Any, limit: int = 160) -> str:
    text = " ".join(str(message or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _records(gateway_meta: Any) -> list[dict[str, Any]]:
    if not isinstance(gateway_meta, dict):
        return []
    history = gateway_meta.get("history")
    if isinstance(history, list):
        return [r for r in history if isinstance(r, dict)]
    return []  # pragma: no cover - older gateways kept no per-attempt records


def _build(cloud: str, local: str, max_tokens: int, cloud_timeout: float, err: Console) -> Any:
    """The demo gateway; the local model is loaded up front (under a spinner) when possible."""
    from msgflux import Model
    from msgflux.models.gateway import ModelGateway

    cloud_model = Model.chat_completion(cloud, max_tokens=max_tokens)
    # A 135M model loops without a repeat penalty; other providers do not take the option.
    extra = {"repeat_penalty": 1.1} if local.startswith("local/") else {}
    local_model = Model.chat_completion(local, max_tokens=max_tokens, **extra)
    load = getattr(local_model, "load", None)
    if callable(load) and not getattr(local_model, "is_loaded", True):
        try:
            with err.status(f"Loading the local model {local} …", spinner="dots"):
                load()
        except (ImportError, FileNotFoundError) as exc:
            err.print(f"[yellow]The local model cannot run:[/yellow] {exc}")
    return ModelGateway(
        [
            {"model_name": cloud, "model": cloud_model, "timeout": cloud_timeout},
            {"model_name": local, "model": local_model},
        ]
    )


DEMO_HELP = (
    "Ask a ModelGateway of \\[cloud model, local model] a question; show who answered.\n\n"
    "Without OPENAI_API_KEY (or without network) the cloud deployment fails fast and the "
    "local model answers; a table of every attempt follows the answer. "
    "Exit code 0 when a deployment answered, 1 when all of them failed."
)


@app.command(help=DEMO_HELP)
def demo(
    question: Annotated[
        str, typer.Argument(help="What to ask the gateway.", show_default=True)
    ] = DEFAULT_QUESTION,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the answer token by token as it arrives.")
    ] = False,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Longest answer, in tokens.")
    ] = 200,
    cloud: Annotated[
        str, typer.Option("--cloud", help="The first deployment (provider/model_id).")
    ] = DEFAULT_CLOUD,
    local: Annotated[
        str, typer.Option("--local", help="The fallback deployment (local/<model or .gguf>).")
    ] = DEFAULT_LOCAL,
    cloud_timeout: Annotated[
        float,
        typer.Option(
            "--cloud-timeout", min=0.1, help="Seconds before the cloud attempt is abandoned."
        ),
    ] = 20.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every gateway attempt to stderr.")
    ] = False,
) -> None:
    """Ask the demo gateway; the help text is ``DEMO_HELP`` (one paragraph per line there)."""
    out, err = _consoles()
    _configure_logging(verbose, err)
    provider = cloud.partition("/")[0]
    env_key = f"{provider.upper()}_API_KEY"
    if provider != "local" and not os.environ.get(env_key):
        err.print(
            f"[dim]{env_key} is not set: {cloud} will fail and the gateway falls back "
            f"to {local}.[/dim]"
        )
    try:
        gateway = _build(cloud, local, max_tokens, cloud_timeout, err)
    except (TypeError, ValueError) as exc:
        err.print(f"[red]Cannot build the gateway:[/red] {exc}")
        raise typer.Exit(2) from None
    call: dict[str, Any] = {"messages": question, "system_prompt": DEMO_SYSTEM_PROMPT}
    try:
        with err.status("Asking the gateway …", spinner="dots"):
            response = gateway(**call, stream=stream)
        out.print(f"[bold]Q:[/bold] {question}", markup=True)
        out.print("[bold]A:[/bold] ", end="")
        if stream:
            for chunk in response:
                out.out(chunk, end="", highlight=False)
            out.print()
        else:
            out.print(str(response.consume()).strip(), markup=False)
    except ModelRouterError as exc:
        out.print("[bold red]Every deployment failed.[/bold red]")
        _print_attempts(out, [a.as_dict() for a in exc.attempts], None)
        err.print(f"[red]{exc.message}[/red]; see the table above.")
        raise typer.Exit(1) from None
    except StreamInterruptedError as exc:
        out.print()
        err.print(f"[red]The answer broke off:[/red] {exc.message}")
        raise typer.Exit(1) from None
    meta = (response.metadata or {}).get("gateway") or {}
    out.print()
    _print_attempts(out, _records(meta), meta.get("model_name"))
    usage = (response.metadata or {}).get("usage")
    footer = f"Answered by [bold]{meta.get('model_name')}[/bold]"
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        footer += f" · {usage['completion_tokens']} tokens"
    if meta.get("model_name") == local and local == DEFAULT_LOCAL:
        footer += " · a 135M-parameter model: fluent, often wrong"
    out.print(footer)


@app.command()
def models() -> None:
    """List the providers of every model type, and the local models you can run."""
    from msgflux import Model
    from msgflux.models.providers import local as local_provider

    out, _ = _consoles()
    table = Table(title="Providers by model type", title_justify="left")
    table.add_column("model type")
    table.add_column("providers", overflow="fold")
    for model_type, providers in Model.providers().items():
        table.add_row(model_type, ", ".join(providers))
    out.print(table)

    has_llama = importlib.util.find_spec("llama_cpp") is not None
    local_table = Table(title="Local models (provider 'local')", title_justify="left")
    local_table.add_column("model")
    local_table.add_column("status", overflow="fold")
    for alias in sorted(local_provider.BUILTIN_MODELS):
        try:
            path = local_provider.resolve_model_path(alias)
            status = f"[green]installed[/green] {path}"
        except (ImportError, FileNotFoundError):
            status = f"[yellow]not installed[/yellow]: {local_provider.INSTALL_HINT}"
        if not has_llama:
            status = f"[yellow]llama-cpp-python missing[/yellow]: {local_provider.INSTALL_HINT}"
        local_table.add_row(f"local/{alias}", status)
    local_table.add_row("local/<path to a .gguf file>", "any GGUF file llama.cpp can load")
    out.print(local_table)


SERVE_HELP = (
    "Serve the gateways of a config file over the OpenAI API (chat, embeddings, moderations, "
    "audio, images, models, health).\n\n"
    "The config is YAML: see the README's Server section, or check one with "
    "[bold]msgflux config check FILE[/bold]. SIGTERM drains (in-flight requests and streams "
    "finish) and exits 0."
)


@app.command(help=SERVE_HELP)
def serve(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The YAML config file.", show_default=False)
    ],
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Address to listen on \\[default: server.host, else 127.0.0.1]."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port; 0 picks a free one \\[default: server.port, else 4000].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes sharing the port (SO_REUSEPORT) \\[default: server.workers, else 1].",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth", help="Allow a non-loopback --host without client keys (server.keys)."
        ),
    ] = False,
) -> None:
    """Run the server; the help text is ``SERVE_HELP``."""
    from msgflux.server.config import ConfigError, load_config
    from msgflux.server.lifecycle import StartupError, configure_logging
    from msgflux.server.lifecycle import serve as run_server

    _, err = _consoles()
    configure_logging()
    try:
        cfg = load_config(config)
        code = run_server(cfg, host=host, port=port, workers=workers, no_auth=no_auth)
    except (ConfigError, StartupError) as exc:
        err.print(f"[red]msgflux serve:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


config_app = typer.Typer(help="Work with server config files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The YAML config file.", show_default=False)],
) -> None:
    """Validate a config (building every gateway, without calling any model) and print the
    resolved plan with secrets masked; exit code 1 on an error."""
    import os

    from msgflux.server import config_lint
    from msgflux.server.config import ConfigError, parse_config, plan, yaml
    from msgflux.server.config_yaml import read_file
    from msgflux.server.runtime import build_runtime

    out, err = _consoles()
    logging.getLogger("msgflux").addHandler(logging.NullHandler())
    logging.getLogger("msgflux").propagate = False

    def fail(problems: list[str]) -> typer.Exit:
        for problem in problems:
            err.print(f"[red]config error:[/red] {problem}", highlight=False, soft_wrap=True)
        return typer.Exit(1)

    try:
        text = read_file(file)
        missing = config_lint.missing_env(text, str(file), os.environ)
        if missing:
            raise fail(missing)
        cfg = parse_config(text, source=str(file))
        runtime = build_runtime(cfg, shared_state=False)
    except ConfigError as exc:
        raise fail([str(exc)]) from None
    try:
        errors = config_lint.credentials(runtime)
    finally:
        runtime.close()
    for hint in config_lint.hints(cfg):
        err.print(f"[yellow]hint:[/yellow] {hint}", highlight=False, soft_wrap=True)
    if cfg.server.state:
        why = config_lint.state_reachable(cfg.server.state)
        if why is not None:
            err.print(
                f"[yellow]warning:[/yellow] server.state does not answer ({why}); the server "
                "would start and keep its limits and breakers in its own memory until it does",
                highlight=False,
                soft_wrap=True,
            )
    shown = plan(cfg, resolve_credentials=True)
    out.out(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True), highlight=False)
    if errors:
        raise fail(errors)
    err.print("[green]config OK[/green]")


IMPORT_LITELLM_HELP = (
    "Convert a LiteLLM proxy config.yaml into a msgflux config, printed on stdout "
    "(msgflux config import-litellm litellm.yaml > msgflux.yaml).\n\n"
    "Every model_name becomes a gateway of its deployments, keeping LiteLLM's load balancing "
    "(a weighted or least-busy strategy, said in a comment); fallbacks append the fallback "
    "groups' deployments; retries, cooldowns, Redis and the master key map to max_retries, "
    "breaker, server.state and server.keys. Everything that cannot be converted is listed on "
    "stderr. Exit code 1 when the file cannot be read or nothing could be imported."
)


@config_app.command("import-litellm", help=IMPORT_LITELLM_HELP)
def config_import_litellm(
    file: Annotated[Path, typer.Argument(help="LiteLLM's config.yaml.", show_default=False)],
) -> None:
    """Convert a LiteLLM config; the help text is ``IMPORT_LITELLM_HELP``."""
    import sys

    from msgflux.tools.litellm_import import (
        LiteLLMImportError,
        import_litellm,
        parse_litellm,
        render,
    )

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"msgflux config import-litellm: cannot read {str(file)!r}: {exc}\n")
        raise typer.Exit(1) from None
    try:
        imported = import_litellm(parse_litellm(text))
    except LiteLLMImportError as exc:
        sys.stderr.write(f"msgflux config import-litellm: {exc}\n")
        raise typer.Exit(1) from None
    sys.stdout.write(render(imported, file.name))
    sys.stdout.flush()
    if imported.unmapped:
        sys.stderr.write(f"Not imported ({len(imported.unmapped)}):\n")
        sys.stderr.writelines(f"  - {item}\n" for item in imported.unmapped)
    if imported.approximated:
        sys.stderr.write("Approximated:\n")
        sys.stderr.writelines(f"  - {item}\n" for item in imported.approximated)
    gateways = imported.config["gateways"]
    sys.stderr.write(
        f"Imported {len(gateways)} gateway(s): {', '.join(gateways)}. "
        "Check the result with `msgflux config check FILE`.\n"
    )


keys_app = typer.Typer(
    help=(
        "Client keys: issue, list, rotate and revoke virtual keys, and read usage. Each command "
        "talks to a running server (--url, with the admin key in MSGFLUX_ADMIN_KEY) or to the "
        "config's server.state (--config)."
    ),
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

_URL = typer.Option(
    "--url", help="A running server, e.g. http://127.0.0.1:4000.", show_default=False
)
_CONFIG = typer.Option("--config", "-c", help="The YAML config file.", show_default=False)
_JSON = typer.Option("--json", help="Print the API's JSON.")


def _keys(command: str, url: str | None, config: Path | None) -> Any:
    """The server's API (``--url``) or the config's store (``--config``); exits on a mistake."""
    from msgflux.server.config import ConfigError, load_config
    from msgflux.server.keys_client import ADMIN_KEY_ENV, HTTPKeys, KeysError, StoreKeys

    _, err = _consoles()
    try:
        if (url is None) == (config is None):
            raise KeysError("give either --url (a running server) or --config (its file)")
        if url is not None:
            admin_key = os.environ.get(ADMIN_KEY_ENV)
            if not admin_key:
                raise KeysError(f"--url needs an admin key in the {ADMIN_KEY_ENV} variable")
            return HTTPKeys(url, admin_key)
        assert config is not None
        return StoreKeys(load_config(config))
    except (ConfigError, KeysError) as exc:
        err.print(f"[red]msgflux keys {command}:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _keys_call(command: str, call: Any) -> Any:
    from msgflux.server.keys_client import KeysError

    try:
        return call()
    except KeysError as exc:
        _, err = _consoles()
        err.print(f"[red]msgflux keys {command}:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _print_secret(out: Console, answer: dict[str, Any], as_json: bool) -> None:
    import json

    if as_json:
        out.out(json.dumps(answer), highlight=False)
        return
    key = answer["key"]
    out.out(f"{key['name']} (fingerprint {key['fingerprint']}), secret shown this once:")
    out.out(answer["secret"], highlight=False)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The key's name.", show_default=False)],
    models: Annotated[str, typer.Option("--models", help='"*" or gateway names, a,b.')] = "*",
    rpm: Annotated[int | None, typer.Option("--rpm", min=1)] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1)] = None,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", min=1)] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", help="Spend cap.")] = None,
    budget_period: Annotated[str, typer.Option("--budget-period", help="day|week|month")] = "day",
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="ISO-8601 (UTC) or epoch seconds.")
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="key=value (repeatable): team, owner...")
    ] = None,
    url: Annotated[str | None, _URL] = None,
    config: Annotated[Path | None, _CONFIG] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Issue a virtual key; its secret is printed once and never stored."""
    body: dict[str, Any] = {
        "name": name,
        "models": "*" if models.strip() == "*" else [m.strip() for m in models.split(",")],
    }
    for field, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrency", max_concurrency)):
        if value is not None:
            body[field] = value
    if budget_usd is not None:
        body["budget"] = {"usd": budget_usd, "period": budget_period}
    if expires_at is not None:
        body["expires_at"] = (
            float(expires_at) if expires_at.replace(".", "").isdigit() else expires_at
        )
    if meta:
        body["metadata"] = dict(item.partition("=")[::2] for item in meta)
    keys = _keys("create", url, config)
    out, _ = _consoles()
    _print_secret(out, _keys_call("create", lambda: keys.create(body)), as_json)


@keys_app.command("list")
def keys_list(
    url: Annotated[str | None, _URL] = None,
    config: Annotated[Path | None, _CONFIG] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """List the keys (never a secret): with --url the config file's too, with their usage."""
    import json

    from msgflux.server.keys_client import render_keys

    keys = _keys("list", url, config)
    answer = _keys_call("list", keys.list)
    out, _ = _consoles()
    out.out(json.dumps(answer) if as_json else render_keys(answer["keys"]), highlight=False)


@keys_app.command("rotate")
def keys_rotate(
    name: Annotated[str, typer.Argument(show_default=False)],
    grace: Annotated[
        float | None,
        typer.Option("--grace", min=0, help="Seconds the old secret keeps working [3600]."),
    ] = None,
    url: Annotated[str | None, _URL] = None,
    config: Annotated[Path | None, _CONFIG] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Give a virtual key a new secret (printed once); the old one works --grace seconds more."""
    keys = _keys("rotate", url, config)
    out, _ = _consoles()
    _print_secret(out, _keys_call("rotate", lambda: keys.rotate(name, grace)), as_json)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(show_default=False)],
    url: Annotated[str | None, _URL] = None,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Refuse a virtual key from now on (every worker and instance within a second)."""
    keys = _keys("revoke", url, config)
    answer = _keys_call("revoke", lambda: keys.revoke(name))
    out, _ = _consoles()
    out.out(f"{answer['name']}: {answer['status']}", highlight=False)


@keys_app.command("usage")
def keys_usage(
    config: Annotated[Path | None, _CONFIG] = None,
    url: Annotated[str | None, _URL] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
) -> None:
    """Print each client key's spend in its budget period, what is left, when it resets (UTC)
    and its current rpm and concurrency use, read from the config's server.state (Redis), or
    from a running server (--url). Exit code 1 when there is no shared state or Redis cannot
    be read."""
    import json

    from msgflux.server.config import ConfigError, load_config
    from msgflux.server.keys_client import render_keys
    from msgflux.server.usage import UsageError, read_usage, render_usage

    out, err = _consoles()
    if url is not None and config is None:
        answer = _keys_call("usage", _keys("usage", url, None).list)
        if as_json:
            for key in answer["keys"]:
                out.out(json.dumps({"name": key["name"], **(key.get("usage") or {})}))
        else:
            out.out(render_keys(answer["keys"]), highlight=False)
        return
    if config is None:
        err.print("[red]msgflux keys usage:[/red] give --config (or --url)", highlight=False)
        raise typer.Exit(1)
    try:
        rows = read_usage(load_config(config))
    except (ConfigError, UsageError) as exc:
        err.print(f"[red]msgflux keys usage:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        for row in rows:
            out.out(json.dumps(row.as_dict()), highlight=False)
    elif not rows:
        err.print("no client keys configured (server.keys)")
    else:
        out.out(render_usage(rows), highlight=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("msgflux-gateway")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            number = "unknown (not installed)"
        typer.echo(f"msgflux-gateway {number}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """msgflux-gateway: reliable calls to AI models."""


def _one_paragraph_per_paragraph(group: typer.Typer) -> None:
    """Command help from docstrings wrapped at 100 columns reads as the source's line breaks
    in a terminal (a sentence broken mid-way); join each paragraph's lines."""
    import inspect

    for info in group.registered_commands:
        text = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if text:
            info.help = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_paragraph_per_paragraph(sub.typer_instance)


def main() -> None:
    """Console-script entry point (``msgflux = "msgflux.cli:main"``)."""
    _one_paragraph_per_paragraph(app)
    app()


if __name__ == "__main__":  # pragma: no cover - `python -m msgflux.cli`
    main()
