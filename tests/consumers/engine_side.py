"""The Jellyfin dynamic provider as the engine runs it: the serialized
``__provider`` from the mock registration, served by a fresh ``python -m
pulumi.dynamic`` process started in the project root and driven over gRPC
(Check, Diff, Create, Update, Delete)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.config import PROJECT
from components.consumers.component import JellyfinTranscoding
from tests.consumers.conftest import API_KEY, homelab_cfg, with_jellyfin
from tools.mockengine import is_secret, reveal, run_program

ROOT = Path(__file__).resolve().parents[2]
ENCODING = "pulumi-python:dynamic/consumers:JellyfinEncoding"
URN = f"urn:pulumi:test::{PROJECT}::{ENCODING}::jellyfin-encoding"


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return reveal(MessageToDict(struct))


class EngineSide:
    """A ``python -m pulumi.dynamic`` process and a gRPC stub to it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "pulumi.dynamic"], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        port = int(self.process.stdout.readline().decode().strip())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.process.kill()
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.process.stderr.close()

    def check(self, olds: dict, news: dict) -> dict:
        return _plain(self.stub.Check(provider_pb2.CheckRequest(urn=URN, olds=_struct(olds), news=_struct(news))).inputs)

    def diff(self, id_: str, olds: dict, news: dict) -> provider_pb2.DiffResponse:
        return self.stub.Diff(provider_pb2.DiffRequest(id=id_, urn=URN, olds=_struct(olds), news=_struct(news)))

    def create(self, props: dict) -> tuple[str, dict]:
        response = self.stub.Create(provider_pb2.CreateRequest(urn=URN, properties=_struct(props)))
        return response.id, _plain(response.properties)

    def update(self, id_: str, olds: dict, news: dict) -> dict:
        return _plain(self.stub.Update(provider_pb2.UpdateRequest(id=id_, urn=URN, olds=_struct(olds), news=_struct(news))).properties)

    def delete(self, id_: str, props: dict) -> None:
        self.stub.Delete(provider_pb2.DeleteRequest(id=id_, urn=URN, properties=_struct(props)))


def registered_inputs(url: str, timeout_seconds: int = 1, **jellyfin: Any) -> dict[str, Any]:
    """The dynamic resource's inputs as the engine hands them to this provider:
    the provider's Configure answers acceptSecrets=false, so the engine strips
    the secret wrappers (and puts them back on what the provider returns)."""
    cfg = with_jellyfin(homelab_cfg(), url=url, timeout_seconds=timeout_seconds, **jellyfin)

    def program() -> None:
        JellyfinTranscoding("jellyfin", cfg, api_key=pulumi.Config(PROJECT).require_secret("jellyfinApiKey"))

    reg = run_program(program, {}, secret_keys={"jellyfinApiKey": API_KEY}).one(ENCODING)
    assert is_secret(reg.inputs["apiKey"])
    return {key: value for key, value in reveal(reg.inputs).items() if value is not None}
