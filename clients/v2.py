"""The KServe v2 messages kerve's client sends, without TensorFlow and without clashing.

The client predicts through the Open Inference Protocol: TF Serving's messages import
TensorFlow (seconds, and its start-up chatter), these do not. They live in a descriptor pool
of kerve's own, built from the serialized descriptor of kerve's generated module, read
without importing it: a process that also uses tritonclient (whose generated module declares
the same ``inference`` package in protobuf's default pool) keeps working in either import
order.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from types import SimpleNamespace

SERVICE = "/inference.GRPCInferenceService/"
MESSAGES = ("ModelInferRequest", "ModelInferResponse", "ModelMetadataRequest",
            "ModelMetadataResponse")


def _serialized_descriptor() -> bytes:
    import kerve.protos.inference as package

    source = Path(package.__file__).with_name("grpc_service_pb2.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile"
                and isinstance(node.args[0], ast.Constant)):
            return node.args[0].value
    raise RuntimeError("no serialized descriptor in kerve.protos.inference.grpc_service_pb2")


@functools.cache
def messages() -> SimpleNamespace:
    """The v2 message classes, by name."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(_serialized_descriptor()))
    return SimpleNamespace(**{
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
        for name in MESSAGES})


def method(channel, name: str, request_class, response_class):
    """A unary-unary call of the v2 service on ``channel``."""
    return channel.unary_unary(SERVICE + name,
                               request_serializer=request_class.SerializeToString,
                               response_deserializer=response_class.FromString)
