#!/usr/bin/env python3
"""Proves that Perseus's .proto files are wire-compatible with NVIDIA Triton's.

Our files are parsed with the reference protobuf compiler (grpc_tools.protoc), independently of the protox
parser the Rust build uses, and compared with the descriptors NVIDIA publishes in `tritonclient`
(`tritonclient.grpc.service_pb2`, `tritonclient.grpc.model_config_pb2`).

Compared, by fully qualified name: every message and nested message; every field's name, number, type,
label, type_name, oneof membership, proto3 `optional`, packed-ness and map-ness (a map is a nested
`*Entry` message with `map_entry` set, so its key and value types are compared as that message's fields);
every enum and its values; every RPC's input and output types and streaming flags.

Any difference, and any Triton message, enum or RPC we do not declare, fails the check (exit 1): the
client and the emulator promise that nothing Triton sends is dropped on decode. Declarations of ours that
Triton lacks also fail, because a field Triton never sends is a sign of a wrong name or number.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
import grpc_tools
from tritonclient.grpc import model_config_pb2, service_pb2

PROTO_FILES = ("grpc_service.proto", "model_config.proto")
FDP = descriptor_pb2.FieldDescriptorProto


class Declarations:
    """Every message, enum and RPC of a set of files, keyed by fully qualified name."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.rpcs: dict[str, descriptor_pb2.MethodDescriptorProto] = {}
        for file in files:
            prefix = f".{file.package}" if file.package else ""
            for message in file.message_type:
                self._add_message(prefix, message)
            for enum in file.enum_type:
                self.enums[f"{prefix}.{enum.name}"] = enum
            for service in file.service:
                for method in service.method:
                    self.rpcs[f"{prefix}.{service.name}/{method.name}"] = method

    def _add_message(self, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = message
        for nested in message.nested_type:
            self._add_message(name, nested)
        for enum in message.enum_type:
            self.enums[f"{name}.{enum.name}"] = enum


def field_signature(message: descriptor_pb2.DescriptorProto, field: FDP) -> dict[str, object]:
    """What of a field reaches the wire, or decides how generated code decodes it."""
    oneof = None
    if field.HasField("oneof_index") and not field.proto3_optional:
        oneof = message.oneof_decl[field.oneof_index].name
    packed = field.options.packed if field.options.HasField("packed") else None
    return {
        "number": field.number,
        "type": FDP.Type.Name(field.type),
        "label": FDP.Label.Name(field.label),
        "type_name": field.type_name or None,
        "oneof": oneof,
        "proto3_optional": field.proto3_optional,
        "packed": packed,
    }


def compare_messages(ours: Declarations, theirs: Declarations, problems: list[str]) -> int:
    checked = 0
    for name, their_message in sorted(theirs.messages.items()):
        our_message = ours.messages.get(name)
        if our_message is None:
            continue
        checked += 1
        if our_message.options.map_entry != their_message.options.map_entry:
            problems.append(f"{name}: map entry is {our_message.options.map_entry}, Triton's is "
                            f"{their_message.options.map_entry}")
        our_fields = {f.name: f for f in our_message.field}
        their_fields = {f.name: f for f in their_message.field}
        for field_name, their_field in their_fields.items():
            our_field = our_fields.get(field_name)
            if our_field is None:
                problems.append(f"{name}.{field_name}: missing (Triton: field {their_field.number})")
                continue
            ours_sig = field_signature(our_message, our_field)
            theirs_sig = field_signature(their_message, their_field)
            for key, their_value in theirs_sig.items():
                if ours_sig[key] != their_value:
                    problems.append(f"{name}.{field_name}: {key} is {ours_sig[key]!r}, Triton's is "
                                    f"{their_value!r}")
        for field_name in sorted(our_fields.keys() - their_fields.keys()):
            problems.append(f"{name}.{field_name}: not in Triton's descriptor "
                            f"(ours: field {our_fields[field_name].number})")
    return checked


def compare_enums(ours: Declarations, theirs: Declarations, problems: list[str]) -> int:
    checked = 0
    for name, their_enum in sorted(theirs.enums.items()):
        our_enum = ours.enums.get(name)
        if our_enum is None:
            continue
        checked += 1
        our_values = {v.name: v.number for v in our_enum.value}
        their_values = {v.name: v.number for v in their_enum.value}
        for value, number in sorted(their_values.items(), key=lambda kv: kv[1]):
            if value not in our_values:
                problems.append(f"enum {name}.{value}: missing (Triton: {number})")
            elif our_values[value] != number:
                problems.append(f"enum {name}.{value}: number is {our_values[value]}, Triton's is {number}")
        for value in sorted(our_values.keys() - their_values.keys()):
            problems.append(f"enum {name}.{value}: not in Triton's descriptor (ours: {our_values[value]})")
    return checked


def compare_rpcs(ours: Declarations, theirs: Declarations, problems: list[str]) -> int:
    checked = 0
    for name, their_rpc in sorted(theirs.rpcs.items()):
        our_rpc = ours.rpcs.get(name)
        if our_rpc is None:
            continue
        checked += 1
        for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
            if getattr(our_rpc, key) != getattr(their_rpc, key):
                problems.append(f"rpc {name}: {key} is {getattr(our_rpc, key)!r}, Triton's is "
                                f"{getattr(their_rpc, key)!r}")
    return checked


def compile_ours(proto_dir: pathlib.Path) -> list[descriptor_pb2.FileDescriptorProto]:
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "perseus.pb"
        args = ["protoc", f"-I{proto_dir}", f"-I{include}", "--include_imports",
                f"--descriptor_set_out={out}", *PROTO_FILES]
        if protoc.main(args) != 0:
            raise SystemExit(f"compat: protoc could not compile {proto_dir} (see its message above)")
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return [f for f in descriptor_set.file if f.name in PROTO_FILES]


def nvidia_files() -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for module in (service_pb2, model_config_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files.append(proto)
    return files


def main() -> int:
    default_dir = pathlib.Path(__file__).resolve().parents[2] / "proto"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-dir", type=pathlib.Path, default=default_dir)
    args = parser.parse_args()

    ours_files = compile_ours(args.proto_dir)
    theirs_files = nvidia_files()
    problems: list[str] = []
    for ours_file, theirs_file in zip(ours_files, theirs_files, strict=True):
        if ours_file.package != theirs_file.package:
            problems.append(f"{ours_file.name}: package {ours_file.package!r}, Triton's is "
                            f"{theirs_file.package!r}")
        if ours_file.syntax != theirs_file.syntax:
            problems.append(f"{ours_file.name}: syntax {ours_file.syntax!r}, Triton's is "
                            f"{theirs_file.syntax!r}")
    ours, theirs = Declarations(ours_files), Declarations(theirs_files)

    messages = compare_messages(ours, theirs, problems)
    enums = compare_enums(ours, theirs, problems)
    rpcs = compare_rpcs(ours, theirs, problems)
    fields = sum(len(ours.messages[n].field) for n in theirs.messages if n in ours.messages)

    missing = [f"message {n}" for n in sorted(theirs.messages.keys() - ours.messages.keys())]
    missing += [f"enum {n}" for n in sorted(theirs.enums.keys() - ours.enums.keys())]
    missing += [f"rpc {n}" for n in sorted(theirs.rpcs.keys() - ours.rpcs.keys())]
    extra = [f"message {n}" for n in sorted(ours.messages.keys() - theirs.messages.keys())]
    extra += [f"enum {n}" for n in sorted(ours.enums.keys() - theirs.enums.keys())]
    extra += [f"rpc {n}" for n in sorted(ours.rpcs.keys() - theirs.rpcs.keys())]

    print(f"compat: compared {messages} messages ({fields} fields), {enums} enums and {rpcs} RPCs "
          f"with tritonclient's descriptors")
    print(f"compat: Triton declarations we do not declare: {len(missing)}")
    for item in missing:
        print(f"  missing  {item}")
    print(f"compat: our declarations Triton does not have: {len(extra)}")
    for item in extra:
        print(f"  extra    {item}")
    print(f"compat: differences: {len(problems)}")
    for problem in problems:
        print(f"  differs  {problem}")

    if missing or extra or problems:
        print("compat: FAILED: our .proto files are not wire-compatible with Triton's")
        return 1
    print("compat: OK: every message, field, enum and RPC matches Triton's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
