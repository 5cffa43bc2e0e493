"""Regenerate the committed Python stubs from proto/gpufleet/v1/*.proto.

python scripts/gen_proto.py            # rewrite the stubs beside the .proto files
python scripts/gen_proto.py --out DIR  # write them under DIR instead (the staleness test)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "gpufleet" / "v1").glob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]

    cwd = os.getcwd()
    os.chdir(PROTO_ROOT)  # relative names keep absolute paths out of the stubs
    try:
        code = protoc.main(args)
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    generate(parser.parse_args().out.resolve())


if __name__ == "__main__":
    main()
