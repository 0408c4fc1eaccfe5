from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class Limits(_message.Message):
    __slots__ = ("cpu_cores", "io_read_bps", "io_write_bps", "memory_bytes", "output_bytes", "pids")
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
    def __init__(
        self,
        cpu_cores: float | None = ...,
        memory_bytes: int | None = ...,
        io_read_bps: int | None = ...,
        io_write_bps: int | None = ...,
        pids: int | None = ...,
        output_bytes: int | None = ...,
    ) -> None: ...

class When(_message.Message):
    __slots__ = ("at", "at_unix", "delay_seconds", "every_seconds")
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    delay_seconds: float
    at_unix: float
    every_seconds: float
    at: str
    def __init__(
        self,
        delay_seconds: float | None = ...,
        at_unix: float | None = ...,
        every_seconds: float | None = ...,
        at: str | None = ...,
    ) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("argv", "cwd", "env", "limits", "network", "private_tmp", "when")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_TMP_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    limits: Limits
    network: str
    private_tmp: bool
    when: When
    def __init__(
        self,
        argv: _Iterable[str] | None = ...,
        env: _Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        limits: Limits | _Mapping | None = ...,
        network: str | None = ...,
        private_tmp: bool | None = ...,
        when: When | _Mapping | None = ...,
    ) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("job", "schedule")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    job: JobStatus
    schedule: Schedule
    def __init__(
        self,
        job: JobStatus | _Mapping | None = ...,
        schedule: Schedule | _Mapping | None = ...,
    ) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: str | None = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("grace_seconds", "id")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    grace_seconds: float
    def __init__(self, id: str | None = ..., grace_seconds: float | None = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("id", "stop_running")
    ID_FIELD_NUMBER: _ClassVar[int]
    STOP_RUNNING_FIELD_NUMBER: _ClassVar[int]
    id: str
    stop_running: bool
    def __init__(self, id: str | None = ..., stop_running: bool | None = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("all_users", "limit", "running_only")
    ALL_USERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    all_users: bool
    running_only: bool
    limit: int
    def __init__(
        self,
        all_users: bool | None = ...,
        running_only: bool | None = ...,
        limit: int | None = ...,
    ) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs", "schedules")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(
        self,
        jobs: _Iterable[JobStatus | _Mapping] | None = ...,
        schedules: _Iterable[Schedule | _Mapping] | None = ...,
    ) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("follow", "id", "offset")
    ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    offset: int
    follow: bool
    def __init__(
        self, id: str | None = ..., offset: int | None = ..., follow: bool | None = ...
    ) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("data", "offset")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: int | None = ..., data: bytes | None = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = (
        "argv",
        "cpu_seconds",
        "cwd",
        "ended_at",
        "exit_code",
        "id",
        "isolation",
        "limits",
        "oom_killed",
        "output_truncated",
        "owner",
        "peak_memory_bytes",
        "pid",
        "reason",
        "schedule_id",
        "signal",
        "started_at",
        "state",
    )
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
    def __init__(
        self,
        id: str | None = ...,
        owner: str | None = ...,
        argv: _Iterable[str] | None = ...,
        state: str | None = ...,
        pid: int | None = ...,
        exit_code: int | None = ...,
        signal: int | None = ...,
        started_at: float | None = ...,
        ended_at: float | None = ...,
        limits: Limits | _Mapping | None = ...,
        cpu_seconds: float | None = ...,
        peak_memory_bytes: int | None = ...,
        oom_killed: bool | None = ...,
        reason: str | None = ...,
        cwd: str | None = ...,
        isolation: _Iterable[str] | None = ...,
        schedule_id: str | None = ...,
        output_truncated: bool | None = ...,
    ) -> None: ...

class ScheduleRun(_message.Message):
    __slots__ = ("detail", "due_at", "job_id", "outcome")
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    due_at: float
    outcome: str
    job_id: str
    detail: str
    def __init__(
        self,
        due_at: float | None = ...,
        outcome: str | None = ...,
        job_id: str | None = ...,
        detail: str | None = ...,
    ) -> None: ...

class Schedule(_message.Message):
    __slots__ = (
        "active",
        "argv",
        "created_at",
        "every_seconds",
        "id",
        "next_run_at",
        "owner",
        "recent_runs",
    )
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
    def __init__(
        self,
        id: str | None = ...,
        owner: str | None = ...,
        argv: _Iterable[str] | None = ...,
        every_seconds: float | None = ...,
        next_run_at: float | None = ...,
        created_at: float | None = ...,
        active: bool | None = ...,
        recent_runs: _Iterable[ScheduleRun | _Mapping] | None = ...,
    ) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("not_after", "protections_off", "role", "serial", "server_version", "user")
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
    def __init__(
        self,
        user: str | None = ...,
        role: str | None = ...,
        serial: str | None = ...,
        not_after: float | None = ...,
        server_version: str | None = ...,
        protections_off: _Iterable[str] | None = ...,
    ) -> None: ...
