"""The ``kerve`` command line: serve, upload, models, alias, delete, download, predict."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from kerve.clients import DEFAULT_SERVER

USAGE_ERROR = 2


class UserError(Exception):
    """A mistake on the command line or in its files: one line, exit 1."""


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _progress_factory(label: str):
    """A tqdm bar on a terminal, nothing when piped."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def start(total: int, _parts: int):
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                   leave=False)

        def advance(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()
        return advance
    return start


def _client(args):
    from kerve.clients.client import Client

    return Client(args.server, token=args.token)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _parse_tags(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--tag expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        tags[key] = value
    return tags


def _ref(text: str):
    from kerve.registry.errors import KerveError
    from kerve.registry.names import VersionRef

    try:
        return VersionRef.parse(text)
    except KerveError as exc:
        raise UserError(exc.message) from None


# --- commands ------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    import logging

    from pydantic import ValidationError

    from kerve.registry.errors import KerveError
    from kerve.registry.plugins import PluginImportError
    from kerve.server.app import run_event_loop, serve
    from kerve.server.settings import Settings, flag_name

    given = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = flag_name(str(error["loc"][0])) if error["loc"] else "settings"
        raise UserError(f"{where}: {error['msg']}") from None
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        run_event_loop(serve(settings), settings.event_loop)
    except PluginImportError as exc:
        raise UserError(str(exc)) from None
    except KerveError as exc:  # a store unreachable, a --model-dir model refused, ...
        raise UserError(f"cannot start: {exc.message}") from None
    except OSError as exc:
        raise UserError(f"cannot start: {exc}") from None
    return 0


def cmd_health(args) -> int:
    """Exit 0 only if grpc.health.v1 says SERVING; else one line and exit 1."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kerve.clients.client import channel_for

    with channel_for(args.server) as channel:
        request = health_pb2.HealthCheckRequest(service=args.service)
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise UserError(f"{args.server}: {exc.code().name}: {exc.details()}") from None
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
    if status.status != health_pb2.HealthCheckResponse.SERVING:
        raise UserError(f"{args.server}: {name}")
    if not args.quiet:
        print(f"{args.server}: {name}")
    return 0


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field, its docstring as help; only flags given reach Settings,
    so the environment (KERVE_*) and the defaults stay Settings' own."""
    import typing

    from kerve.server.settings import Settings, env_name, flag_name

    for name, field in Settings.model_fields.items():
        kind = field.annotation
        args = typing.get_args(kind)
        if typing.get_origin(kind) is typing.Union or type(kind).__name__ == "UnionType":
            kind = next(a for a in args if a is not type(None))
            args = typing.get_args(kind)
        default = field.get_default(call_default_factory=True)
        shown = "none" if default is None or default == [] else default
        help_text = " ".join((field.description or "").split())
        options: dict = dict(dest=name, default=argparse.SUPPRESS)
        if typing.get_origin(kind) is typing.Annotated:
            kind = args[0]
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            options.update(action="append", metavar="MODULE")
            help_text += " Repeatable."
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = list(typing.get_args(kind))
        else:
            options["type"] = kind if kind in (int, float) else str
            options["metavar"] = {int: "N", float: "X", Path: "PATH"}.get(
                kind, "URL" if name.endswith("_url") else "VALUE")
        parser.add_argument(flag_name(name), help=f"{help_text} (default: {shown}; "
                            f"env {env_name(name)})", **options)


def cmd_upload(args) -> int:
    if args.model and (args.architecture or args.weights):
        raise UserError("give MODEL.keras or --architecture/--weights, not both")
    if not args.model and not args.weights:
        raise UserError("give MODEL.keras, or --architecture A.json --weights W.h5")
    if args.architecture and not args.weights:
        raise UserError("--architecture needs --weights")
    with _client(args) as client:
        version = client.upload(
            args.name, keras_path=args.model, architecture=args.architecture,
            weights=args.weights, aliases=args.alias, description=args.description,
            tags=_parse_tags(args.tag), examples=args.examples,
            progress=_progress_factory("upload"))
    if args.json:
        _print_json(version)
    else:
        aliases = f" ({', '.join(version['aliases'])})" if version.get("aliases") else ""
        print(f"{version['name']}:{version['version']}{aliases} "
              f"{version['parameter_count']} parameters, status {version['status']}")
    return 0


def cmd_models(args) -> int:
    with _client(args) as client:
        if args.action == "show":
            if not args.name:
                raise UserError("kerve models show NAME")
            model = client.get_model(args.name)
            if args.json:
                _print_json(model)
                return 0
            _print_model(model)
            return 0
        if args.action:
            raise UserError(f"unknown action {args.action!r}; did you mean 'models show NAME'?")
        models = client.list_models()
    if args.json:
        _print_json(models)
        return 0
    if not models:
        print("no models")
    for m in models:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items()))
        print(f"{m['name']}\tversions {','.join(map(str, m['versions']))}\t"
              f"default {m['default_version']}" + (f"\t{aliases}" if aliases else ""))
    return 0


def _print_model(model: dict) -> None:
    print(f"{model['name']}  default version {model['default_version']}")
    for alias, version in sorted(model["aliases"].items()):
        print(f"  alias {alias} -> {version}")
    for v in model["versions"]:
        sig = v["signature"]
        ins = ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in sig.get("inputs", []))
        outs = ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in sig.get("outputs", []))
        print(f"  version {v['version']}  {v['status']}  created {v['created']}"
              + (f" by {v['created_by']}" if v.get("created_by") else "")
              + f"  {v['parameter_count']} parameters")
        print(f"    inputs  {ins}\n    outputs {outs}")
        if v.get("custom_objects"):
            print(f"    custom objects {', '.join(v['custom_objects'])}")
        if v.get("examples"):
            print(f"    golden examples {v['examples']['sha256'][:12]} "
                  f"({v['examples']['size']} bytes)")
        for warning in v.get("warnings", []):
            print(f"    warning: {warning}")
        if v.get("status_message"):
            print(f"    {v['status_message']}")
    if model.get("writes"):
        print("  recent writes:")
    for w in model.get("writes", []):
        what = w["action"] + (f" {w['alias']}" if w.get("alias") else "") + \
            (f" -> {w['version']}" if w.get("alias") and w.get("version")
             else f" {w['version']}" if w.get("version") else "")
        print(f"    {w['at']}  {what}  by {w['actor'] or '-'}")


def cmd_alias(args) -> int:
    with _client(args) as client:
        if args.delete:
            if args.version is not None:
                raise UserError("--delete takes no VERSION")
            model = client.delete_alias(args.name, args.alias)
        else:
            if args.version is None:
                raise UserError("kerve alias NAME ALIAS VERSION (or --delete)")
            model = client.set_alias(args.name, args.alias, args.version)
    if args.json:
        _print_json(model)
    else:
        target = model["aliases"].get(args.alias)
        print(f"{args.name}@{args.alias} -> {target}" if target else
              f"{args.name}@{args.alias} deleted")
    return 0


def cmd_delete(args) -> int:
    with _client(args) as client:
        client.delete_version(args.name, args.version)
    print(f"deleted {args.name}:{args.version}")
    return 0


def cmd_download(args) -> int:
    ref = _ref(args.ref)
    with _client(args) as client:
        result = client.download(ref.name, args.dir, version=ref.version, alias=ref.alias,
                                 progress=_progress_factory("download"))
    if args.json:
        _print_json(result)
    else:
        print(f"{result['name']}:{result['version']} -> {result['architecture_path']}, "
              f"{result['weights_path']}")
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from kerve.clients.arrays import printable, read_input, text_or_bytes

    ref = _ref(args.ref)
    inputs = {}
    for item in args.input:
        if "=" not in item:
            raise UserError(f"--input expects NAME=FILE.npy, got {item!r}")
        name, path = item.split("=", 1)
        try:
            inputs[name] = read_input(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    with _client(args) as client:
        outputs = client.predict(ref.name, inputs, version=ref.version, alias=ref.alias,
                                 outputs=args.output or None)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, arr in outputs.items():
            arr = text_or_bytes(arr)
            np.save(out / f"{name}.npy", arr)
            print(f"{name}: {arr.dtype}{list(arr.shape)} -> {out / (name + '.npy')}")
    else:
        _print_json({k: printable(v) for k, v in outputs.items()})
    return 0


# --- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerve", description="Store and serve Keras models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--server", default=_env("KERVE_SERVER", DEFAULT_SERVER),
                       help="HOST:PORT of the kerve server (env KERVE_SERVER)")
        p.add_argument("--token", default=_env("KERVE_TOKEN"),
                       help="bearer token (env KERVE_TOKEN)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    s = sub.add_parser("serve", help="run the registry and inference server",
                       description="Run registry + inference on one gRPC port. Every flag can "
                       "also be set in the environment as KERVE_<FLAG> (KERVE_MAX_BATCH_SIZE).")
    add_settings_arguments(s)
    s.set_defaults(func=cmd_serve)

    h = sub.add_parser("health", help="exit 0 only if the server is SERVING",
                       description="Ask grpc.health.v1 whether the server is SERVING: exit 0 "
                       "if so, else print one line and exit 1 (for probes and scripts).")
    h.add_argument("--server", default=_env("KERVE_SERVER", DEFAULT_SERVER),
                   help="HOST:PORT or any gRPC target of the kerve server (env KERVE_SERVER)")
    h.add_argument("--service", default="",
                   help="a service name (default: the server as a whole)")
    h.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    h.add_argument("--quiet", action="store_true", help="print nothing when SERVING")
    h.set_defaults(func=cmd_health)

    u = client_command("upload", "upload a new version of a model")
    u.add_argument("name")
    u.add_argument("model", nargs="?", help="a .keras archive")
    u.add_argument("--architecture", help="Keras config JSON (model.to_json())")
    u.add_argument("--weights", help="HDF5 weights (.weights.h5 or legacy .h5)")
    u.add_argument("--alias", action="append", default=[], help="point this alias at it")
    u.add_argument("--description", default="")
    u.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    u.add_argument("--examples", metavar="EX.npz",
                   help="golden examples (arrays input/NAME, output/NAME): the version "
                   "serves only if it reproduces them")
    u.set_defaults(func=cmd_upload)

    m = client_command("models", "list models, or show one model's versions")
    m.add_argument("action", nargs="?", choices=["show"], help="show NAME")
    m.add_argument("name", nargs="?")
    m.set_defaults(func=cmd_models)

    a = client_command("alias", "move or delete an alias")
    a.add_argument("name")
    a.add_argument("alias")
    a.add_argument("version", nargs="?", type=int)
    a.add_argument("--delete", action="store_true")
    a.set_defaults(func=cmd_alias)

    d = client_command("delete", "delete a version (refused while an alias points at it)")
    d.add_argument("name")
    d.add_argument("version", type=int)
    d.set_defaults(func=cmd_delete)

    dl = client_command("download", "write a version's architecture JSON and weights")
    dl.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    dl.add_argument("dir")
    dl.set_defaults(func=cmd_download)

    p = client_command("predict", "one prediction; prints outputs or saves them")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   required=True, help="an input from .npy, or .json (a list of numbers or "
                   "strings)")
    p.add_argument("--output", action="append", default=[], help="only these outputs")
    p.add_argument("--output-dir", help="save each output as NAME.npy here")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    import grpc

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"kerve: error: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"kerve: error: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        if code == "UNAVAILABLE" and "connect" in (details or "").lower():
            details = f"cannot reach a kerve server at {args.server}: {details}"
        print(f"kerve: error: {code}: {details}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
