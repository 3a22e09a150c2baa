#!/usr/bin/env python3
"""Talk to registrar from Python with nothing but grpcio and server reflection.

No generated code: the service and message types come from the server's
reflection service (v1alpha, the one grpcio speaks).

    pip install grpcio grpcio-reflection
    python3 examples/reflection_client.py [127.0.0.1:50051]

It lists the services, describes PullService, creates an environment, a
registry and an agent token with the admin token (REGISTRAR_TOKEN, or
./registrar-data/admin.token), then resolves an image as the agent.
"""

import json
import os
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def admin_token():
    token = os.environ.get("REGISTRAR_TOKEN")
    if token:
        return token.strip()
    data_dir = os.environ.get("REGISTRAR_DATA_DIR", "registrar-data")
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


class Reflected:
    """Calls any method of the server by its full name, as JSON in and out."""

    def __init__(self, channel):
        self.channel = channel
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)

    def services(self):
        return self.db.get_services()

    def describe(self, service):
        s = self.pool.FindServiceByName(service)
        return [
            f"rpc {m.name}({m.input_type.full_name}) returns "
            f"({'stream ' if m.server_streaming else ''}{m.output_type.full_name})"
            for m in s.methods
        ]

    def call(self, method, request, token):
        service, name = method.rsplit("/", 1)
        m = self.pool.FindServiceByName(service).methods_by_name[name]
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        rpc = self.channel.unary_unary(
            f"/{service}/{name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        response = rpc(
            json_format.ParseDict(request, req_cls()),
            metadata=[("authorization", f"Bearer {token}")],
        )
        return json_format.MessageToDict(response)


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    api = Reflected(grpc.insecure_channel(address))

    print("services:")
    for s in api.services():
        print(" ", s)
    print("registrar.v1.PullService:")
    for line in api.describe("registrar.v1.PullService"):
        print(" ", line)

    admin = admin_token()
    env = api.call(
        "registrar.v1.EnvironmentService/CreateEnvironment",
        {"name": "from-python", "orchestration": "ORCHESTRATION_KUBERNETES"},
        admin,
    )["environment"]["id"]
    registry = api.call(
        "registrar.v1.RegistryService/CreateRegistry",
        {
            "environment_id": env,
            "kind": "REGISTRY_KIND_CUSTOM",
            "address": "reg.example.com:5000",
            "email": "ops@example.com",
            "username": "py",
            "password": "from-python",
        },
        admin,
    )["registry"]
    print("created registry", registry["id"], "for", registry["address"])
    agent = api.call(
        "registrar.v1.TokenService/CreateToken",
        {"role": "ROLE_AGENT", "environment_id": env, "description": "python"},
        admin,
    )["token"]
    answer = api.call(
        "registrar.v1.PullService/ResolvePull",
        {"image": "reg.example.com:5000/team/app:1"},
        agent,
    )
    if "denied" in answer:
        sys.exit(f"denied: {answer['denied']['message']}")
    response = json.loads(answer["allowed"]["kubernetes"]["credentialProviderResponse"])
    user = response["auth"]["reg.example.com:5000"]["username"]
    print("resolved", answer["resolvedImage"], "as", user)


if __name__ == "__main__":
    main()
