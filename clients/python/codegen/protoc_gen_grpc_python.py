"""protoc plugin that runs grpcio-tools' built-in gRPC Python generator.

grpcio-tools ships protoc and the gRPC Python generator inside a Python
extension module (grpc_tools.protoc) rather than as plugin executables, and
buf only proxies protoc's own generators (python, pyi) through `protoc_path`.
This file is the missing plugin: it speaks the protoc plugin protocol on
stdin/stdout and hands the request to grpc_tools.protoc, exactly as buf's
protoc proxy does for built-in generators:

    CodeGeneratorRequest -> FileDescriptorSet file -> grpc_tools.protoc
      --descriptor_set_in=... --grpc_python_out=TMP FILES -> CodeGeneratorResponse

It must run with the Python that has the pinned grpcio-tools installed
(scripts/gen.sh installs it and puts a `protoc-gen-grpc_python` wrapper on
PATH). The output is byte-for-byte what `python -m grpc_tools.protoc
--grpc_python_out` writes.
"""

import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    req = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    resp = plugin_pb2.CodeGeneratorResponse()
    resp.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    fds = descriptor_pb2.FileDescriptorSet(file=req.proto_file)
    with tempfile.TemporaryDirectory(prefix="protoc-gen-grpc_python-") as tmp:
        desc = os.path.join(tmp, "descriptors.binpb")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        with open(desc, "wb") as f:
            f.write(fds.SerializeToString())
        args = ["grpc_tools.protoc", f"--descriptor_set_in={desc}", f"--grpc_python_out={out}"]
        if req.parameter:
            args.append(f"--grpc_python_opt={req.parameter}")
        args.extend(req.file_to_generate)
        code = protoc.main(args)
        if code != 0:
            resp.error = f"grpc_tools.protoc exited with status {code}"
        else:
            for root, _, files in os.walk(out):
                for name in sorted(files):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        resp.file.add(name=os.path.relpath(path, out).replace(os.sep, "/"), content=f.read())
    sys.stdout.buffer.write(resp.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
