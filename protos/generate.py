"""Generate the Python modules of kerve's protos: ``python protos/generate.py [--check]``.

The one way generated code comes to be. Each ``.proto`` under ``protos/`` is compiled with
grpcio-tools under the virtual path ``kerve/protos/``, so that the generated modules import
each other as ``kerve.protos...`` (the installed package) without any rewriting. With
``--check`` nothing is written: the script regenerates into a temporary folder and exits 1 if
any committed module differs (CI runs it).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VIRTUAL_ROOT = Path("kerve/protos")


def proto_files() -> list[Path]:
    return sorted(p.relative_to(HERE) for p in HERE.rglob("*.proto"))


def generate_into(out_dir: Path) -> list[Path]:
    """Compile every proto into ``out_dir``; returns the generated paths relative to protos/."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{VIRTUAL_ROOT}={HERE}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(VIRTUAL_ROOT / p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    root = out_dir / VIRTUAL_ROOT
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed generated code differs from a fresh run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generated = generate_into(out)
        drift = []
        for rel in generated:
            fresh, committed = out / VIRTUAL_ROOT / rel, HERE / rel
            if args.check:
                if not committed.exists() or not filecmp.cmp(fresh, committed, shallow=False):
                    drift.append(str(rel))
            else:
                committed.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(fresh, committed)
                (committed.parent / "__init__.py").touch()
    if drift:
        print("generated code is out of date; run python protos/generate.py:", *drift,
              sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
