"""The ``kerve`` command line: the parser, ``serve`` and ``health``, and ``main``; the client
commands live in kerve.clients.commands."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from kerve.clients import DEFAULT_SERVER
from kerve.clients.commands import (
    UserError,
    cmd_alias,
    cmd_delete,
    cmd_diff,
    cmd_download,
    cmd_models,
    cmd_predict,
    cmd_rollback,
    cmd_upload,
    from_env,
)

# --- commands ------------------------------------------------------------------------------

def _stop_starting(signum, frame) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args) -> int:
    import logging
    import signal

    # Until the event loop takes them over: as PID 1 in a container, a signal without a
    # handler is dropped, and a pod stopped while it imports TensorFlow would wait out its
    # whole grace period.
    signal.signal(signal.SIGTERM, _stop_starting)

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


# --- parser --------------------------------------------------------------------------------

def build_parser(serve_flags: bool = True) -> argparse.ArgumentParser:
    """``serve_flags``: derive ``serve``'s flags from Settings (pydantic; a few hundred ms),
    which the other commands need not wait for."""
    parser = argparse.ArgumentParser(
        prog="kerve", description="Store and serve Keras models.",
        epilog=f"Every command but serve talks to the server at --server HOST:PORT (env "
               f"KERVE_SERVER; default {DEFAULT_SERVER}), with --token or env KERVE_TOKEN where "
               "the server has tokens. `kerve COMMAND --help` tells each command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--server", default=from_env("KERVE_SERVER", DEFAULT_SERVER),
                       help="HOST:PORT of the kerve server (env KERVE_SERVER)")
        p.add_argument("--token", default=from_env("KERVE_TOKEN"),
                       help="bearer token (env KERVE_TOKEN)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    s = sub.add_parser("serve", help="run the registry and inference server",
                       description="Run registry + inference on one gRPC port. Every flag can "
                       "also be set in the environment as KERVE_<FLAG> (KERVE_MAX_BATCH_SIZE).")
    if serve_flags:
        add_settings_arguments(s)
    s.set_defaults(func=cmd_serve)

    h = sub.add_parser("health", help="exit 0 only if the server is SERVING",
                       description="Ask grpc.health.v1 whether the server is SERVING: exit 0 "
                       "if so, else print one line and exit 1 (for probes and scripts).")
    h.add_argument("--server", default=from_env("KERVE_SERVER", DEFAULT_SERVER),
                   help="HOST:PORT or any gRPC target of the kerve server (env KERVE_SERVER)")
    h.add_argument("--service", default="",
                   help="a service name (default: the server as a whole)")
    h.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    h.add_argument("--quiet", action="store_true", help="print nothing when SERVING")
    h.set_defaults(func=cmd_health)

    u = client_command("upload", "upload a new version of a model")
    u.add_argument("name", help="the model's name")
    u.add_argument("model", nargs="?", help="a .keras archive")
    u.add_argument("--architecture", help="Keras config JSON (model.to_json())")
    u.add_argument("--weights", help="HDF5 weights (.weights.h5 or legacy .h5)")
    u.add_argument("--alias", action="append", default=[],
                   help="point this alias at the new version (repeatable)")
    u.add_argument("--description", default="", help="a line about this version")
    u.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="a tag on the version (repeatable); kerve.* tags set serving options")
    u.add_argument("--from", dest="base", metavar="NAME:VERSION|NAME@ALIAS",
                   help="with --weights alone: the version whose architecture they fit "
                   "(default: the model's default version)")
    u.add_argument("--no-wait", action="store_true",
                   help="return once the version is committed, without waiting for this "
                   "server to load it")
    u.add_argument("--examples", metavar="EX.npz",
                   help="golden examples (arrays input/NAME, output/NAME): the version "
                   "serves only if it reproduces them")
    u.set_defaults(func=cmd_upload)

    m = client_command("models", "list models, or show one model's versions")
    m.add_argument("action", nargs="?", metavar="[show] NAME[:VERSION|@ALIAS]",
                   help="a model to show (its versions, aliases, signatures, states); "
                   "'show NAME' works too")
    m.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    m.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="list the versions with this tag (repeatable: all must match)")
    m.add_argument("--layer", action="append", default=[], metavar="CLASS",
                   help="list the versions using this layer class, e.g. Conv2D (repeatable)")
    m.add_argument("--custom-object", action="append", default=[], metavar="NAME",
                   help="list the versions needing this custom object, e.g. seedzoo>Linear "
                   "(repeatable)")
    m.set_defaults(func=cmd_models)

    a = client_command("alias", "move or delete an alias")
    a.add_argument("name", metavar="NAME[:VERSION|@ALIAS]",
                   help="the model, with the version the alias should point at")
    a.add_argument("alias", help="the alias to move, e.g. production")
    a.add_argument("version", nargs="?", type=int,
                   help="the version to point at (or give it as NAME:VERSION)")
    a.add_argument("--delete", action="store_true", help="delete the alias instead")
    a.add_argument("--history", action="store_true",
                   help="list the alias's moves instead: from, to, when, by which token")
    a.set_defaults(func=cmd_alias)

    rb = client_command("rollback", "move an alias back to its previous version")
    rb.add_argument("name", help="the model")
    rb.add_argument("alias", help="the alias to move back, e.g. production")
    rb.set_defaults(func=cmd_rollback)

    d = client_command("delete", "delete a version, or a whole model "
                       "(refused while an alias points at it)")
    d.add_argument("name", metavar="NAME[:VERSION|@ALIAS]",
                   help="the version to delete; NAME alone deletes every version")
    d.add_argument("version", nargs="?", type=int,
                   help="the version to delete (or give it as NAME:VERSION)")
    d.add_argument("--force", action="store_true",
                   help="with NAME alone: delete the model's aliases first")
    d.set_defaults(func=cmd_delete)

    dl = client_command("download", "write a version's architecture JSON and weights")
    dl.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", help="the version to download")
    dl.add_argument("dir", help="a folder to write into (made if missing)")
    dl.set_defaults(func=cmd_download)

    df = client_command("diff", "what changed between two versions of a model")
    df.add_argument("a", metavar="NAME[:VERSION|@ALIAS]", help="the version to compare from")
    df.add_argument("b", metavar="NAME[:VERSION|@ALIAS]", help="the version to compare to")
    df.set_defaults(func=cmd_diff)

    p = client_command("predict", "one prediction; prints outputs or saves them")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]",
                   help="the model (default version), a version, or an alias")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                   required=True, help="an input from .npy or .json (a list of numbers or "
                   "strings), or FILE.npz holding every input by name (repeatable)")
    p.add_argument("--output", action="append", default=[],
                   help="only this output (repeatable; default: all)")
    p.add_argument("--output-dir", help="save each output as NAME.npy here (and print where)")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    import grpc

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(serve_flags=argv[:1] == ["serve"]).parse_args(argv)
    warnings.formatwarning = lambda message, *_, **__: f"kerve: {message}\n"
    try:
        return args.func(args)
    except BrokenPipeError:  # `kerve models | head -1`: the reader left; so do we, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
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
