"""The ``kerve`` client commands: upload, models, alias, delete, download, predict; and the
few helpers every command shares (errors as one line, the client, JSON, version names)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


class UserError(Exception):
    """A mistake on the command line or in its files: one line, exit 1."""


def from_env(name: str, default: str | None = None) -> str | None:
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
            progress=_progress_factory("upload"), wait=not args.no_wait,
            on_stage=_stage_printer(), base=_base(args))
    if args.json:
        _print_json(version)
    else:
        aliases = f" ({', '.join(version['aliases'])})" if version.get("aliases") else ""
        print(f"{version['name']}:{version['version']}{aliases} "
              f"{version['parameter_count']} parameters, status {version['status']}")
    if version["status"] == "FAILED":
        raise UserError(f"{version['name']}:{version['version']} failed to load: "
                        f"{version.get('status_message', '')}")
    return 0


def _base(args):
    """--from NAME:VERSION or NAME@ALIAS: the version whose architecture the weights fit."""
    if not args.base:
        return None
    ref = _ref(args.base)
    if ref.name != args.name:
        raise UserError(f"--from names {ref.name}, the upload is to {args.name}")
    if args.model or args.architecture:
        raise UserError("--from goes with --weights alone")
    return ref.version or ref.alias


def _stage_printer():
    """On a terminal, one line on stderr that says what the upload is doing; nothing when
    piped."""
    if not sys.stderr.isatty():
        return None

    def show(stage: str) -> None:
        done = stage in ("READY", "FAILED", "STORED")
        sys.stderr.write(f"\r\033[K{stage.lower()}" + ("\n" if done else " ..."))
        sys.stderr.flush()
    return show


def cmd_models(args) -> int:
    target = args.name if args.action == "show" else args.action
    if args.action == "show" and not args.name:
        raise UserError("kerve models show NAME[:VERSION|@ALIAS]")
    with _client(args) as client:
        if target:
            ref = _ref(target)
            model = client.get_model(ref.name)
            if ref.version is not None or ref.alias is not None:
                number = ref.version or model["aliases"].get(ref.alias)
                if number is None:
                    raise UserError(f"model {ref.name!r} has no alias {ref.alias!r}")
                model["versions"] = [v for v in model["versions"] if v["version"] == number]
                if not model["versions"]:
                    raise UserError(f"model {ref.name!r} has no version {number}")
            if args.json:
                _print_json(model)
            else:
                _print_model(model)
            return 0
        if args.tag or args.layer or args.custom_object:
            return _print_search(client.search(tags=_parse_tags(args.tag), layers=args.layer,
                                               custom_objects=args.custom_object), args.json)
        models = client.list_models()
    if args.json:
        _print_json(models)
        return 0
    if not models:
        print("no models")
    for m in models:
        aliases = ", ".join(f"{a}={_serving_words(m, v)}" for a, v in sorted(m["aliases"].items()))
        print(f"{m['name']}\tversions {','.join(map(str, m['versions']))}\t"
              f"default {_serving_words(m, m['default_version'], default=True)}"
              + (f"\t{aliases}" if aliases else ""))
    return 0


def _serving_words(model: dict, version: int, default: bool = False) -> str:
    """``2``, or ``2 (FAILED)`` where it does not answer here, and for the default which
    version answers instead: ``2 (FAILED; 1 answers)``. A registry-only server loads
    nothing, so it says the number only."""
    state = model.get("states", {}).get(version, "STORED")
    if state in ("READY", "STORED") and not (default and model.get("serving_version")
                                              not in (None, version)):
        return str(version)
    answering = model.get("serving_version") if default else None
    return f"{version} ({state}" + (f"; {answering} answers" if answering else "") + ")"


def _print_search(versions: list[dict], as_json: bool) -> int:
    if as_json:
        _print_json(versions)
        return 0
    if not versions:
        print("no version matches")
    for v in versions:
        tags = ", ".join(f"{k}={t}" for k, t in sorted(v.get("tags", {}).items()))
        print(f"{v['name']}:{v['version']}\t{v['status']}\t{v['parameter_count']} parameters"
              + (f"\t{tags}" if tags else ""))
    return 0


def _print_model(model: dict) -> None:
    print(f"{model['name']}  default version "
          f"{_serving_words(model, model['default_version'], default=True)}")
    for alias, version in sorted(model["aliases"].items()):
        print(f"  alias {alias} -> {_serving_words(model, version)}")
    for v in model["versions"]:
        sig = v["signature"]
        ins = ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in sig.get("inputs", []))
        outs = ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in sig.get("outputs", []))
        print(f"  version {v['version']}  {v['status']}  created {v['created']}"
              + (f" by {v['created_by']}" if v.get("created_by") else "")
              + f"  {v['parameter_count']} parameters")
        print(f"    inputs  {ins}\n    outputs {outs}")
        if v.get("description"):
            print(f"    description {v['description']}")
        if v.get("tags"):
            print(f"    tags {', '.join(f'{k}={t}' for k, t in sorted(v['tags'].items()))}")
        if v.get("custom_objects"):
            print(f"    custom objects {', '.join(v['custom_objects'])}")
        if v.get("producer"):
            print(f"    produced by {_producer(v['producer'], v.get('producer_sources', {}))}")
        for m in v.get("plugin_modules", []):
            print(f"    plugin {m['module']} {m['version']} ({m['version_source']}): "
                  f"{', '.join(m.get('custom_objects', []))}")
        for warning in v.get("load_warnings", []):
            print(f"    load warning: {warning}")
        if v.get("memory_estimate"):
            print(f"    memory {_memory(v['memory_estimate'])}")
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


_PRODUCER_WORDS = (("keras_version", "Keras {}"), ("tensorflow_version", "TensorFlow {}"),
                   ("backend", "backend {}"), ("date_saved", "saved {}"))


def _memory(estimate: dict) -> str:
    """The estimate in one line (proto uint64s arrive as strings)."""
    mib = {k: int(estimate.get(k, 0)) / 2**20 for k in (
        "total_bytes", "weights_bytes", "activation_bytes_fixed", "activation_bytes_per_row",
        "overhead_bytes")}
    rows = int(estimate.get("rows", 1))
    activations = mib["activation_bytes_fixed"] + mib["activation_bytes_per_row"] * rows
    line = (f"about {mib['total_bytes']:,.1f} MiB at batch {rows}: weights "
            f"{mib['weights_bytes']:,.1f}, activations {activations:,.1f}, overhead "
            f"{mib['overhead_bytes']:,.1f}")
    if int(estimate.get("load_bytes", 0)):
        line += f"; {int(estimate['load_bytes']) / 2**20:,.1f} more while it loads"
    return line + (f" ({estimate['note']})" if estimate.get("note") else "")


def _producer(producer: dict, sources: dict) -> str:
    """"Keras 3.15.1 (keras_archive), TensorFlow 2.21.0 (client), ...": each value with
    where the registry read it."""
    return ", ".join(words.format(producer[key]) + (f" ({sources[key]})" if key in sources
                                                   else "")
                     for key, words in _PRODUCER_WORDS if producer.get(key))


def _version_of(client, ref) -> int:
    """The version number NAME:VERSION or NAME@ALIAS means."""
    if ref.version is not None:
        return ref.version
    model = client.get_model(ref.name)
    if ref.alias is None:
        return model["default_version"]
    if ref.alias not in model["aliases"]:
        raise UserError(f"model {ref.name!r} has no alias {ref.alias!r}")
    return model["aliases"][ref.alias]


def cmd_alias(args) -> int:
    ref = _ref(args.name)
    with _client(args) as client:
        if args.history:
            moves = client.alias_history(ref.name, args.alias)
            if args.json:
                _print_json(moves)
            for m in [] if args.json else moves:
                print(f"{m['at']}  {m['from'] or '-'} -> {m['to'] or 'deleted'}  "
                      f"by {m['actor'] or 'unknown'}")
            return 0
        if args.delete:
            if args.version is not None or ref.version is not None or ref.alias is not None:
                raise UserError("kerve alias NAME ALIAS --delete takes no version")
            model = client.delete_alias(ref.name, args.alias)
        else:
            if args.version is not None and (ref.version is not None or ref.alias is not None):
                raise UserError("give the version once: NAME:VERSION ALIAS or NAME ALIAS VERSION")
            if args.version is None and ref.version is None and ref.alias is None:
                raise UserError("kerve alias NAME ALIAS VERSION, NAME:VERSION ALIAS, "
                                "NAME@OTHER ALIAS, or --delete")
            version = args.version if args.version is not None else _version_of(client, ref)
            model = client.set_alias(ref.name, args.alias, version)
    if args.json:
        _print_json(model)
    else:
        target = model["aliases"].get(args.alias)
        print(f"{ref.name}@{args.alias} -> {target}" if target else
              f"{ref.name}@{args.alias} deleted")
    return 0


def cmd_rollback(args) -> int:
    with _client(args) as client:
        result = client.rollback_alias(args.name, args.alias)
    if args.json:
        _print_json(result)
    else:
        print(f"{args.name}@{args.alias} -> {result['version']}")
    return 0


def cmd_delete(args) -> int:
    ref = _ref(args.name)
    if args.version is not None and (ref.version is not None or ref.alias is not None):
        raise UserError("give the version once: NAME:VERSION or NAME VERSION")
    with _client(args) as client:
        if args.version is None and ref.version is None and ref.alias is None:
            return _delete_model(client, ref.name, args.force)
        version = args.version if args.version is not None else _version_of(client, ref)
        client.delete_version(ref.name, version)
    print(f"deleted {ref.name}:{version}")
    return 0


def _delete_model(client, name: str, force: bool) -> int:
    """Every version of a model; refused while an alias points into it, unless forced."""
    model = client.get_model(name)
    if model["aliases"] and not force:
        shown = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
        raise UserError(f"model {name!r} has aliases ({shown}); delete them, or use --force")
    for alias in model["aliases"]:
        client.delete_alias(name, alias)
    for v in model["versions"]:
        client.delete_version(name, v["version"])
    print(f"deleted {name} ({len(model['versions'])} versions)")
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
        if "=" not in item and item.endswith(".npz"):
            try:
                with np.load(item, allow_pickle=False) as npz:
                    inputs.update({key: npz[key] for key in npz.files})
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read {item}: {exc}") from None
            continue
        if "=" not in item:
            raise UserError(f"--input expects NAME=FILE (.npy or .json) or FILE.npz, "
                            f"got {item!r}")
        name, path = item.split("=", 1)
        try:
            inputs[name] = read_input(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    with _client(args) as client:
        outputs = client.predict(ref.name, inputs, version=ref.version, alias=ref.alias,
                                 outputs=args.output or None)
    saved = {}
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, arr in outputs.items():
            saved[name] = out / f"{name}.npy"
            np.save(saved[name], text_or_bytes(arr))
    if args.json:
        _print_json({k: printable(v) | ({"path": str(saved[k])} if k in saved else {})
                     for k, v in outputs.items()})
        return 0
    for name, arr in outputs.items():
        shown = f"-> {saved[name]}" if name in saved else _summary(text_or_bytes(arr))
        print(f"{name}: {arr.dtype if arr.dtype != object else 'string'}{list(arr.shape)} "
              f"{shown}")
    return 0


def _summary(arr) -> str:
    """An array on one line, its middle elided when large."""
    import numpy as np

    return " ".join(np.array2string(arr, threshold=12, edgeitems=3, precision=6,
                                    max_line_width=10**6).split())


def cmd_diff(args) -> int:
    a, b = _ref(args.a), _ref(args.b)
    if a.name != b.name:
        raise UserError(f"kerve diff compares versions of one model, got {a.name} and {b.name}")
    with _client(args) as client:
        d = client.diff(a.name, a.version or a.alias, b.version or b.alias)
    if args.json:
        _print_json(d)
        return 0
    print(f"{d['name']}:{d['version_a']} -> {d['name']}:{d['version_b']}")
    if d["same_architecture"]:
        print("  same architecture")
    for layer in d["layers"]:
        classes = layer["class_a"] or layer["class_b"]
        if layer["change"] == "changed" and layer["class_a"] != layer["class_b"]:
            classes = f"{layer['class_a']} -> {layer['class_b']}"
        print(f"  {layer['change']:8} {layer['layer']} ({classes})")
        for key, (old, new) in layer["config"].items():
            print(f"           {key}: {old or '(none)'} -> {new or '(none)'}")
    if d["same_weights"]:
        print("  same weights")
    elif not d["weights"]:  # every variable has the same shape: the values changed
        print("  only the weights' values differ" if d["same_architecture"]
              else "  weights' values differ")
    for w in d["weights"]:
        print(f"  weights  {w['variable']}: {w['shape_a']} -> {w['shape_b']}")
    if d["parameters_a"] != d["parameters_b"]:
        print(f"  parameters {d['parameters_a']:,} -> {d['parameters_b']:,}")
    for name in d["custom_objects_added"]:
        print(f"  custom object added {name}")
    for name in d["custom_objects_removed"]:
        print(f"  custom object removed {name}")
    for c in d["signature"]:
        print(f"  {c['side']} {c['name']}: {c['a'] or '(none)'} -> {c['b'] or '(none)'}")
    return 0
