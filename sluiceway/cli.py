"""Command line: ``sluiceway serve``, ``sluiceway chat`` and ``sluiceway keys``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys

from .engine.config import Config, ConfigError, load_config, parse_provider_flag


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    for flag in args.provider or ():
        name, settings = parse_provider_flag(flag)
        cfg.providers[name] = settings
    if getattr(args, "api_key", None):
        cfg.server.api_keys = [*cfg.server.api_keys, *args.api_key]
    elif os.environ.get("SLUICEWAY_API_KEYS"):
        cfg.server.api_keys = [k.strip() for k in os.environ["SLUICEWAY_API_KEYS"].split(",") if k.strip()]
    if getattr(args, "default_model", None):
        cfg.default_model = args.default_model
    if getattr(args, "workflows", None):  # model-compose files or folders, served as workflow/<id>
        cfg.workflows = [*cfg.workflows, *(os.path.abspath(w) for w in args.workflows)]
    return cfg


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .engine.gateway import Gateway
    from .server.app import create_app
    from .server.guards import guarded_protocol
    from .server.streaming import drain_streams

    cfg = _config(args)
    from .engine.tracing import setup_tracing

    # with --log-format json every line is JSON, the banner too
    say = (lambda msg: print(f"sluiceway: {msg}", flush=True)) if args.log_format != "json" else \
        logging.getLogger("sluiceway").info
    if setup_tracing(cfg.telemetry.otlp_endpoint, service_name=cfg.telemetry.service_name):
        say("OpenTelemetry traces on")
    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    gateway = Gateway(cfg)
    app = create_app(cfg, gateway)
    names = ", ".join([*sorted(gateway.router.routes), *(f"{p}/*" for p in gateway.providers)]) or "(none)"
    say(f"chat UI at http://{host}:{port}/  ·  OpenAI base URL http://{host}:{port}/v1")
    say(f"models: {names}; providers: {', '.join(gateway.providers)}")
    app.state.access_log = args.access_log  # our access entries (server/observe.py), with fields
    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            # Start winding runs down at the signal, not after uvicorn's drain:
            # clients attached to a run see it end within runs.shutdown_grace
            # instead of holding the drain for its whole timeout.
            # Direct streams (/v1, /v1/messages, plain SSE) likewise end within that
            # grace with their protocol's error frame, not cut at the drain timeout.
            state = app.state.sluiceway
            runs = state.runs
            stopping = [asyncio.ensure_future(drain_streams(state.streams, cfg.runs.shutdown_grace))]
            if runs is not None:
                stopping.append(asyncio.ensure_future(runs.stop_runs()))
            await super().shutdown(sockets)
            await asyncio.gather(*stopping)

    # What startup made (modules, config, schemas, routes) lives as long as the process: keep the
    # collector from walking it again in every full collection, a pause in some request's stream.
    gc.collect()
    gc.freeze()
    # log_config=None: uvicorn's loggers go through our handler (request ids, JSON)
    Server(uvicorn.Config(app, host=host, port=port, log_level=args.log_level, access_log=False,
                          timeout_graceful_shutdown=10, lifespan="on", log_config=None,
                          http=guarded_protocol(cfg.server.header_timeout, cfg.server.body_timeout))).run()
    return 0


def chat(args: argparse.Namespace) -> int:
    from .chat_cli import run

    return run(_config(args), model=args.model, system=args.system, max_tokens=args.max_tokens,
               prompt=args.prompt, log_file=args.log_file)


async def _keys(args: argparse.Namespace) -> int:
    import json

    from .core import SluicewayError
    from .engine import keys as store_keys

    store = await store_keys.open_store(load_config(args.config))
    try:
        if args.keys_command == "create":
            models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
            try:
                record, raw = await store_keys.create_key(store, name=args.name, models=models, rpm=args.rpm,
                                                          tpm=args.tpm, max_concurrent_streams=args.max_streams)
            except SluicewayError as e:
                print(f"sluiceway: {e.message}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps({**record, "key": raw}))
            else:
                print(f"created key {record['id']} ({record['name']}); it is shown only this once:\n{raw}")
        elif args.keys_command == "list":
            rows = await store_keys.list_keys(store)
            if args.json:
                print(json.dumps(rows))
            for r in [] if args.json else rows:
                limits = " ".join(f"{k}={r[k]}" for k in ("rpm", "tpm", "max_concurrent_streams") if r[k])
                state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                print(f"{r['id']}  {r['prefix']}…  {r['name']}  models={','.join(r['models']) or '*'}  "
                      f"{limits or 'no limits'}  {state}")
        else:
            record = await store_keys.revoke_key(store, args.id)
            if record is None:
                print(f"sluiceway: no API key with id {args.id}", file=sys.stderr)
                return 1
            print(json.dumps(record) if args.json else f"revoked key {record['id']} ({record['name']})")
        return 0
    finally:
        await store.close()


def keys(args: argparse.Namespace) -> int:
    return asyncio.run(_keys(args))


async def _run_workflow(args: argparse.Namespace) -> int:
    from .engine.workflows.terminal import parse_input, run_file

    gateways: list = []

    def get_router():  # a gateway only for workflows with model components
        if not gateways:
            from .engine.gateway import Gateway

            gateways.append(Gateway(_config(args)))
        return gateways[0].router

    try:
        return await run_file(args.file, args.workflow_id, parse_input(args.input), get_router=get_router)
    finally:
        for gw in gateways:
            await gw.aclose()


def run_workflow(args: argparse.Namespace) -> int:
    for kv in args.env or ():
        key, sep, value = kv.partition("=")
        if not sep:
            print(f"sluiceway: --env {kv!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        os.environ[key] = value
    try:
        return asyncio.run(_run_workflow(args))
    except ValueError as e:  # bad --input, a workflow file that does not load
        print(f"sluiceway: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    p = argparse.ArgumentParser(prog="sluiceway", description="LLM streaming gateway and chat server")
    p.add_argument("--version", action="version", version=f"sluiceway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML config file (default: ./sluiceway.yaml if present)")
        sp.add_argument("--provider", action="append", metavar="NAME=KIND,KEY=VALUE,…",
                        help="declare a provider, e.g. up=openai,base_url=http://localhost:8080/v1")

    s = sub.add_parser("serve", help="run the HTTP server")
    common(s)
    s.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default: server.port, 8000)")
    s.add_argument("--api-key", action="append", help="require this bearer key (repeatable)")
    s.add_argument("--default-model", help="model used when a request says 'default'")
    s.add_argument("--log-level", default="info", type=str.lower,
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="least severe log level printed (default: info)")
    s.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("SLUICEWAY_LOG_FORMAT", "text"),
                   help="json: one JSON object per log line, with the request id")
    s.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    s.add_argument("--workflows", action="append", metavar="PATH",
                   help="model-compose file or folder to serve (repeatable); see README 'Workflows'")
    s.set_defaults(func=serve)

    r = sub.add_parser("run", help="run a model-compose workflow in the terminal (like `model-compose run`)")
    common(r)
    r.add_argument("file", help="model-compose YAML file")
    r.add_argument("workflow_id", nargs="?", help="workflow id (default: the file's default workflow)")
    r.add_argument("-i", "--input", help="the workflow input as JSON, e.g. '{\"prompt\": \"hi\"}'")
    r.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="set an environment variable")
    r.set_defaults(func=run_workflow)

    c = sub.add_parser("chat", help="streaming chat in the terminal (interactive, one-shot or from a pipe)",
                       description="Without PROMPT and with a terminal: interactive (Ctrl-C stops an answer, "
                                   "Ctrl-C or Ctrl-D at the prompt leaves). With PROMPT or piped input: "
                                   "one answer on stdout, then exit.")
    common(c)
    c.add_argument("prompt", nargs="?", metavar="PROMPT", help="ask this once and exit (piped input is appended)")
    c.add_argument("--log-file", metavar="PATH", help="write logs here (chat mode prints none)")
    c.add_argument("--model", help="model or alias (default: the default model)")
    c.add_argument("--system", help="system prompt")
    c.add_argument("--max-tokens", type=int, help="longest answer, in tokens (default: the model's)")
    c.set_defaults(func=chat)

    k = sub.add_parser("keys", help="virtual API keys: create, list, revoke (only hashes are stored)")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key and print it (once)")
    kc.add_argument("--name", required=True, help="a label for the key, e.g. who uses it")
    kc.add_argument("--models", help="comma-separated allow-list of models (default: all)")
    kc.add_argument("--rpm", type=int, help="requests per minute")
    kc.add_argument("--tpm", type=int, help="tokens per minute")
    kc.add_argument("--max-streams", type=int, help="concurrent streams")
    kl = ksub.add_parser("list", help="list keys (prefixes only)")
    kr = ksub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("id", help="the key's id, as `keys list` shows it")
    for sp in (kc, kl, kr):
        sp.add_argument("--config", help="YAML config file (its store is used; DATABASE_URL overrides)")
        sp.add_argument("--json", action="store_true", help="print JSON")
    k.set_defaults(func=keys)

    args = p.parse_args(argv)
    if args.command == "serve":
        from .server.observe import setup_logging

        setup_logging(args.log_level, args.log_format)
    else:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"sluiceway: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
