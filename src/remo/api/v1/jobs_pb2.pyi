from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Limits(_message.Message):
    __slots__ = ("cpu_cores", "memory_bytes", "io_read_bps", "io_write_bps", "pids", "output_bytes")
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_READ_BPS_FIELD_NUMBER: _ClassVar[int]
    IO_WRITE_BPS_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_cores: float
    memory_bytes: int
    io_read_bps: int
    io_write_bps: int
    pids: int
    output_bytes: int
    def __init__(self, cpu_cores: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., io_read_bps: _Optional[int] = ..., io_write_bps: _Optional[int] = ..., pids: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class When(_message.Message):
    __slots__ = ("delay_seconds", "at_unix", "every_seconds", "at")
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    delay_seconds: float
    at_unix: float
    every_seconds: float
    at: str
    def __init__(self, delay_seconds: _Optional[float] = ..., at_unix: _Optional[float] = ..., every_seconds: _Optional[float] = ..., at: _Optional[str] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("argv", "env", "cwd", "limits", "network", "private_tmp", "when", "request_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_TMP_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    limits: Limits
    network: str
    private_tmp: bool
    when: When
    request_id: str
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., network: _Optional[str] = ..., private_tmp: _Optional[bool] = ..., when: _Optional[_Union[When, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("job", "schedule")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    job: JobStatus
    schedule: Schedule
    def __init__(self, job: _Optional[_Union[JobStatus, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("id", "grace_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    grace_seconds: float
    def __init__(self, id: _Optional[str] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("id", "stop_running")
    ID_FIELD_NUMBER: _ClassVar[int]
    STOP_RUNNING_FIELD_NUMBER: _ClassVar[int]
    id: str
    stop_running: bool
    def __init__(self, id: _Optional[str] = ..., stop_running: _Optional[bool] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("all_users", "running_only", "limit")
    ALL_USERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    all_users: bool
    running_only: bool
    limit: int
    def __init__(self, all_users: _Optional[bool] = ..., running_only: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs", "schedules")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ..., schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("id", "offset", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    offset: int
    follow: bool
    def __init__(self, id: _Optional[str] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("id", "owner", "argv", "state", "pid", "exit_code", "signal", "started_at", "ended_at", "limits", "cpu_seconds", "peak_memory_bytes", "oom_killed", "reason", "cwd", "isolation", "schedule_id", "output_truncated", "oom_kills", "output_dropped_bytes", "output_dropped_disk_full")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DROPPED_DISK_FULL_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    state: str
    pid: int
    exit_code: int
    signal: int
    started_at: float
    ended_at: float
    limits: Limits
    cpu_seconds: float
    peak_memory_bytes: int
    oom_killed: bool
    reason: str
    cwd: str
    isolation: _containers.RepeatedScalarFieldContainer[str]
    schedule_id: str
    output_truncated: bool
    oom_kills: int
    output_dropped_bytes: int
    output_dropped_disk_full: bool
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., cpu_seconds: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., reason: _Optional[str] = ..., cwd: _Optional[str] = ..., isolation: _Optional[_Iterable[str]] = ..., schedule_id: _Optional[str] = ..., output_truncated: _Optional[bool] = ..., oom_kills: _Optional[int] = ..., output_dropped_bytes: _Optional[int] = ..., output_dropped_disk_full: _Optional[bool] = ...) -> None: ...

class ScheduleRun(_message.Message):
    __slots__ = ("due_at", "outcome", "job_id", "detail")
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    due_at: float
    outcome: str
    job_id: str
    detail: str
    def __init__(self, due_at: _Optional[float] = ..., outcome: _Optional[str] = ..., job_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "owner", "argv", "every_seconds", "next_run_at", "created_at", "active", "recent_runs")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    RECENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    every_seconds: float
    next_run_at: float
    created_at: float
    active: bool
    recent_runs: _containers.RepeatedCompositeFieldContainer[ScheduleRun]
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., every_seconds: _Optional[float] = ..., next_run_at: _Optional[float] = ..., created_at: _Optional[float] = ..., active: _Optional[bool] = ..., recent_runs: _Optional[_Iterable[_Union[ScheduleRun, _Mapping]]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "role", "serial", "not_after", "server_version", "protections_off")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTECTIONS_OFF_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    serial: str
    not_after: float
    server_version: str
    protections_off: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ..., serial: _Optional[str] = ..., not_after: _Optional[float] = ..., server_version: _Optional[str] = ..., protections_off: _Optional[_Iterable[str]] = ...) -> None: ...
