"""Builds bench/servers/cpp_echo/echo_server.cc: the echo server in C++, the line that tells
what a front end that is not Python would cost per request on this machine.

It needs Debian's gRPC C++ packages (`apt-get install libgrpc++-dev protobuf-compiler-grpc`),
g++ and pkg-config; kerve itself never does. The binary is cached under
~/.cache/kerve-bench/cpp-echo/<hash of its sources>/, so it is built once (about a minute).

    .venv/bin/python -m bench.cpp_echo      # build, print the binary's path
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "servers" / "cpp_echo" / "echo_server.cc"
PROTO = HERE.parent / "protos" / "inference" / "grpc_service.proto"
CACHE = Path.home() / ".cache" / "kerve-bench" / "cpp-echo"
NEEDS = ("needs g++, pkg-config and Debian's gRPC C++ packages: "
         "apt-get install g++ pkg-config libgrpc++-dev protobuf-compiler-grpc")


def build() -> Path:
    """The built binary; raises RuntimeError saying what is missing or what failed."""
    digest = hashlib.sha256(SOURCE.read_bytes() + PROTO.read_bytes()).hexdigest()[:16]
    folder = CACHE / digest
    binary = folder / "echo_server"
    if binary.exists():
        return binary
    tools = {t: shutil.which(t) for t in ("g++", "pkg-config", "protoc", "grpc_cpp_plugin")}
    missing = [t for t, found in tools.items() if not found]
    if missing:
        raise RuntimeError(f"cannot build the C++ echo server ({', '.join(missing)} not "
                           f"found): {NEEDS}")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"],
                           capture_output=True, text=True)
    if flags.returncode != 0:
        raise RuntimeError(f"cannot build the C++ echo server ({flags.stderr.strip()}): {NEEDS}")
    work = folder.with_name(digest + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steps = [
        [tools["protoc"], f"-I{PROTO.parent}", f"--cpp_out={work}", f"--grpc_out={work}",
         f"--plugin=protoc-gen-grpc={tools['grpc_cpp_plugin']}", PROTO.name],
        [tools["g++"], "-O2", "-std=c++17", "-o", str(work / "echo_server"), str(SOURCE),
         str(work / "grpc_service.pb.cc"), str(work / "grpc_service.grpc.pb.cc"), f"-I{work}",
         *flags.stdout.split(), "-lpthread"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROTO.parent)
        if done.returncode != 0:
            raise RuntimeError(f"building the C++ echo server failed: {' '.join(cmd[:2])}: "
                               f"{(done.stdout + done.stderr).strip()[-800:]}")
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)
    return binary


if __name__ == "__main__":
    try:
        print(build())
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
