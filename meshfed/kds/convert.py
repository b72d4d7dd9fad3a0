"""Engine dataclasses <-> protobuf messages: the only place that knows the generated code."""

from __future__ import annotations

from meshfed._gen import kds_pb2 as pb
from meshfed.kds.messages import (
    ErrorDetail,
    FailedResource,
    SyncRequest,
    SyncResponse,
    WireResource,
)
from meshfed.resources.model import Key


def response_to_pb(resp: SyncResponse) -> pb.SyncResponse:
    return pb.SyncResponse(
        type=resp.type,
        resources=[
            pb.KdsResource(
                name=r.name,
                mesh=r.mesh,
                version=r.version,
                labels=r.labels,
                creation_time=r.creation_time,
                modification_time=r.modification_time,
                spec=r.spec,
            )
            for r in resp.resources
        ],
        removed=[pb.ResourceKey(name=k.name, mesh=k.mesh) for k in resp.removed],
        nonce=resp.nonce,
    )


def response_from_pb(msg: pb.SyncResponse) -> SyncResponse:
    return SyncResponse(
        type=msg.type,
        resources=[
            WireResource(
                name=r.name,
                mesh=r.mesh,
                version=r.version,
                labels=dict(r.labels),
                creation_time=r.creation_time,
                modification_time=r.modification_time,
                spec=r.spec,
            )
            for r in msg.resources
        ],
        removed=[Key(k.mesh, k.name) for k in msg.removed],
        nonce=msg.nonce,
    )


def request_to_pb(req: SyncRequest) -> pb.SyncRequest:
    msg = pb.SyncRequest(
        type=req.type,
        response_nonce=req.response_nonce,
        initial_resource_versions=[
            pb.ResourceVersion(name=k.name, mesh=k.mesh, version=v)
            for k, v in req.initial_resource_versions.items()
        ],
    )
    if req.error_detail is not None:
        msg.error_detail.CopyFrom(
            pb.ErrorDetail(
                message=req.error_detail.message,
                failed=[
                    pb.FailedResource(name=f.key.name, mesh=f.key.mesh, reason=f.reason)
                    for f in req.error_detail.failed
                ],
            )
        )
    return msg


def request_from_pb(msg: pb.SyncRequest) -> SyncRequest:
    detail: ErrorDetail | None = None
    if msg.HasField("error_detail"):
        detail = ErrorDetail(
            message=msg.error_detail.message,
            failed=[FailedResource(Key(f.mesh, f.name), f.reason) for f in msg.error_detail.failed],
        )
    return SyncRequest(
        type=msg.type,
        response_nonce=msg.response_nonce,
        error_detail=detail,
        initial_resource_versions={
            Key(v.mesh, v.name): v.version for v in msg.initial_resource_versions
        },
    )
