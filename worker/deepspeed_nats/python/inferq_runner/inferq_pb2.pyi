from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
STATUS_CANCELLED: Status
STATUS_EXPIRED: Status
STATUS_FAILED: Status
STATUS_QUEUED: Status
STATUS_RUNNING: Status
STATUS_SUCCEEDED: Status
STATUS_UNSPECIFIED: Status

class Batch(_message.Message):
    __slots__ = ["created_unix_nano", "id", "inputs", "jobs", "masks", "model", "version"]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    created_unix_nano: int
    id: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    jobs: _containers.RepeatedCompositeFieldContainer[BatchJob]
    masks: _containers.RepeatedCompositeFieldContainer[Tensor]
    model: str
    version: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., created_unix_nano: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[BatchJob, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., masks: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class BatchJob(_message.Message):
    __slots__ = ["attempt", "callback_url", "created_unix_nano", "deadline_unix_nano", "id", "input_shapes", "jobs_seq", "outputs", "parameters_json", "request_id", "row_end", "row_start", "stream", "tenant", "trace_context"]
    class TraceContextEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    JOBS_SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_END_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    callback_url: str
    created_unix_nano: int
    deadline_unix_nano: int
    id: str
    input_shapes: _containers.RepeatedCompositeFieldContainer[Shape]
    jobs_seq: int
    outputs: _containers.RepeatedScalarFieldContainer[str]
    parameters_json: bytes
    request_id: str
    row_end: int
    row_start: int
    stream: bool
    tenant: str
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., row_start: _Optional[int] = ..., row_end: _Optional[int] = ..., deadline_unix_nano: _Optional[int] = ..., parameters_json: _Optional[bytes] = ..., stream: bool = ..., attempt: _Optional[int] = ..., request_id: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., input_shapes: _Optional[_Iterable[_Union[Shape, _Mapping]]] = ..., jobs_seq: _Optional[int] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., created_unix_nano: _Optional[int] = ..., callback_url: _Optional[str] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ["batch_id", "jobs", "partial"]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobResult]
    partial: bool
    def __init__(self, batch_id: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobResult, _Mapping]]] = ..., partial: bool = ...) -> None: ...

class BlobRef(_message.Message):
    __slots__ = ["name", "sha256", "size"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ["batch_id", "job_id"]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    job_id: str
    def __init__(self, batch_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ["code", "message", "retryable"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: bool = ...) -> None: ...

class Health(_message.Message):
    __slots__ = ["time_unix_nano"]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    time_unix_nano: int
    def __init__(self, time_unix_nano: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ["attempt", "callback_url", "created_unix_nano", "deadline_unix_nano", "id", "inputs", "model", "outputs", "parameters_json", "priority", "request_id", "stream", "tenant", "version"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    callback_url: str
    created_unix_nano: int
    deadline_unix_nano: int
    id: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    model: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    parameters_json: bytes
    priority: int
    request_id: str
    stream: bool
    tenant: str
    version: str
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., priority: _Optional[int] = ..., created_unix_nano: _Optional[int] = ..., deadline_unix_nano: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., parameters_json: _Optional[bytes] = ..., stream: bool = ..., attempt: _Optional[int] = ..., request_id: _Optional[str] = ..., callback_url: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ["attempt", "batch_id", "callback_url", "created_unix_nano", "error", "job_id", "jobs_seq", "model", "outputs", "request_id", "status", "tenant", "time_unix_nano", "trace_context", "version", "worker"]
    class TraceContextEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOBS_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    batch_id: str
    callback_url: str
    created_unix_nano: int
    error: Error
    job_id: str
    jobs_seq: int
    model: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    request_id: str
    status: Status
    tenant: str
    time_unix_nano: int
    trace_context: _containers.ScalarMap[str, str]
    version: str
    worker: str
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., attempt: _Optional[int] = ..., time_unix_nano: _Optional[int] = ..., batch_id: _Optional[str] = ..., worker: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., request_id: _Optional[str] = ..., jobs_seq: _Optional[int] = ..., created_unix_nano: _Optional[int] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., callback_url: _Optional[str] = ...) -> None: ...

class JobEvents(_message.Message):
    __slots__ = ["events"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ["error", "job_id", "outputs"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    job_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, job_id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Load(_message.Message):
    __slots__ = ["device", "model", "options_json", "source"]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    device: str
    model: str
    options_json: bytes
    source: str
    def __init__(self, model: _Optional[str] = ..., source: _Optional[str] = ..., device: _Optional[str] = ..., options_json: _Optional[bytes] = ...) -> None: ...

class Ready(_message.Message):
    __slots__ = ["capacity", "continuous", "device", "model"]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CONTINUOUS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    capacity: int
    continuous: bool
    device: str
    model: str
    def __init__(self, model: _Optional[str] = ..., device: _Optional[str] = ..., capacity: _Optional[int] = ..., continuous: bool = ...) -> None: ...

class RunnerError(_message.Message):
    __slots__ = ["batch_id", "error", "job_id"]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    error: Error
    job_id: str
    def __init__(self, batch_id: _Optional[str] = ..., job_id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class RunnerFrame(_message.Message):
    __slots__ = ["batch", "cancel", "error", "health", "load", "ready", "result", "token"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    cancel: Cancel
    error: RunnerError
    health: Health
    load: Load
    ready: Ready
    result: BatchResult
    token: TokenChunk
    def __init__(self, load: _Optional[_Union[Load, _Mapping]] = ..., ready: _Optional[_Union[Ready, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., token: _Optional[_Union[TokenChunk, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ..., error: _Optional[_Union[RunnerError, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., health: _Optional[_Union[Health, _Mapping]] = ...) -> None: ...

class Shape(_message.Message):
    __slots__ = ["dims"]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dims: _Optional[_Iterable[int]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ["data", "datatype", "name", "ref", "shape"]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    datatype: str
    name: str
    ref: BlobRef
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., ref: _Optional[_Union[BlobRef, _Mapping]] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ["final", "job_id", "seq", "text", "token_id"]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    final: bool
    job_id: str
    seq: int
    text: str
    token_id: int
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ..., token_id: _Optional[int] = ..., final: bool = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ["id", "job_attempt", "job_id", "payload", "tenant", "time_unix_nano", "type", "url"]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_attempt: int
    job_id: str
    payload: bytes
    tenant: str
    time_unix_nano: int
    type: str
    url: str
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., url: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[bytes] = ..., job_id: _Optional[str] = ..., job_attempt: _Optional[int] = ..., time_unix_nano: _Optional[int] = ...) -> None: ...

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
