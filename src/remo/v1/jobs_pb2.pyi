import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_STOPPED: _ClassVar[JobState]
    JOB_STATE_KILLED: _ClassVar[JobState]
    JOB_STATE_LOST: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]

class Network(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_UNSPECIFIED: _ClassVar[Network]
    NETWORK_HOST: _ClassVar[Network]
    NETWORK_NONE: _ClassVar[Network]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_VIEWER: _ClassVar[Role]
    ROLE_OPERATOR: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]

class ScheduleRunOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_RUN_OUTCOME_UNSPECIFIED: _ClassVar[ScheduleRunOutcome]
    SCHEDULE_RUN_OUTCOME_STARTED: _ClassVar[ScheduleRunOutcome]
    SCHEDULE_RUN_OUTCOME_SKIPPED: _ClassVar[ScheduleRunOutcome]
    SCHEDULE_RUN_OUTCOME_FAILED: _ClassVar[ScheduleRunOutcome]
    SCHEDULE_RUN_OUTCOME_CAUGHT_UP: _ClassVar[ScheduleRunOutcome]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_STOPPED: JobState
JOB_STATE_KILLED: JobState
JOB_STATE_LOST: JobState
JOB_STATE_QUEUED: JobState
NETWORK_UNSPECIFIED: Network
NETWORK_HOST: Network
NETWORK_NONE: Network
ROLE_UNSPECIFIED: Role
ROLE_VIEWER: Role
ROLE_OPERATOR: Role
ROLE_ADMIN: Role
SCHEDULE_RUN_OUTCOME_UNSPECIFIED: ScheduleRunOutcome
SCHEDULE_RUN_OUTCOME_STARTED: ScheduleRunOutcome
SCHEDULE_RUN_OUTCOME_SKIPPED: ScheduleRunOutcome
SCHEDULE_RUN_OUTCOME_FAILED: ScheduleRunOutcome
SCHEDULE_RUN_OUTCOME_CAUGHT_UP: ScheduleRunOutcome
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream

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
    __slots__ = ("delay", "time", "time_expression", "period")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TIME_EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    delay: _duration_pb2.Duration
    time: _timestamp_pb2.Timestamp
    time_expression: str
    period: _duration_pb2.Duration
    def __init__(self, delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_expression: _Optional[str] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("argv", "env", "cwd", "limits", "network", "private_tmp", "when", "request_id", "name", "labels", "stdin")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
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
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    limits: Limits
    network: Network
    private_tmp: bool
    when: When
    request_id: str
    name: str
    labels: _containers.ScalarMap[str, str]
    stdin: bool
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., network: _Optional[_Union[Network, str]] = ..., private_tmp: _Optional[bool] = ..., when: _Optional[_Union[When, _Mapping]] = ..., request_id: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., stdin: _Optional[bool] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("job", "schedule")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    job: Job
    schedule: Schedule
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("id", "grace")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    grace: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class KillRequest(_message.Message):
    __slots__ = ("id", "signal")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: int
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[int] = ...) -> None: ...

class KillResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WaitResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "all_users", "states", "labels", "live_usage")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALL_USERS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LIVE_USAGE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    all_users: bool
    states: _containers.RepeatedScalarFieldContainer[JobState]
    labels: _containers.ScalarMap[str, str]
    live_usage: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., all_users: _Optional[bool] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., live_usage: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("id", "offset", "follow", "streams", "tail_lines", "since", "end_offset", "timestamps", "final_status")
    ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    FINAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    offset: int
    follow: bool
    streams: _containers.RepeatedScalarFieldContainer[OutputStream]
    tail_lines: int
    since: _timestamp_pb2.Timestamp
    end_offset: int
    timestamps: bool
    final_status: bool
    def __init__(self, id: _Optional[str] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ..., streams: _Optional[_Iterable[_Union[OutputStream, str]]] = ..., tail_lines: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_offset: _Optional[int] = ..., timestamps: _Optional[bool] = ..., final_status: _Optional[bool] = ...) -> None: ...

class OutputResponse(_message.Message):
    __slots__ = ("offset", "data", "stream", "time", "job")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    stream: OutputStream
    time: _timestamp_pb2.Timestamp
    job: Job
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., stream: _Optional[_Union[OutputStream, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class OutputManyRequest(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[OutputRequest]
    def __init__(self, jobs: _Optional[_Iterable[_Union[OutputRequest, _Mapping]]] = ...) -> None: ...

class OutputManyResponse(_message.Message):
    __slots__ = ("pieces",)
    PIECES_FIELD_NUMBER: _ClassVar[int]
    pieces: _containers.RepeatedCompositeFieldContainer[JobOutputPiece]
    def __init__(self, pieces: _Optional[_Iterable[_Union[JobOutputPiece, _Mapping]]] = ...) -> None: ...

class JobOutputPiece(_message.Message):
    __slots__ = ("job", "offset", "data", "stream", "time", "end", "error")
    JOB_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job: int
    offset: int
    data: bytes
    stream: OutputStream
    time: _timestamp_pb2.Timestamp
    end: bool
    error: str
    def __init__(self, job: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., stream: _Optional[_Union[OutputStream, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class WriteStdinRequest(_message.Message):
    __slots__ = ("id", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: bytes
    def __init__(self, id: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteStdinResponse(_message.Message):
    __slots__ = ("written_bytes", "job_stopped_reading")
    WRITTEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    JOB_STOPPED_READING_FIELD_NUMBER: _ClassVar[int]
    written_bytes: int
    job_stopped_reading: bool
    def __init__(self, written_bytes: _Optional[int] = ..., job_stopped_reading: _Optional[bool] = ...) -> None: ...

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

class GetScheduleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "all_users")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALL_USERS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    all_users: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., all_users: _Optional[bool] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules", "next_page_token")
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    next_page_token: str
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "role", "serial", "expire_time", "server_version", "protections_off")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTECTIONS_OFF_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: Role
    serial: str
    expire_time: _timestamp_pb2.Timestamp
    server_version: str
    protections_off: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., serial: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., server_version: _Optional[str] = ..., protections_off: _Optional[_Iterable[str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "owner", "argv", "state", "pid", "exit_code", "signal", "start_time", "end_time", "limits", "cpu_time", "peak_memory_bytes", "oom_killed", "oom_kills", "reason", "cwd", "isolation", "schedule_id", "output_dropped_bytes", "output_dropped_disk_full", "name", "labels", "live_usage")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DROPPED_DISK_FULL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LIVE_USAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    state: JobState
    pid: int
    exit_code: int
    signal: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    limits: Limits
    cpu_time: _duration_pb2.Duration
    peak_memory_bytes: int
    oom_killed: bool
    oom_kills: int
    reason: str
    cwd: str
    isolation: _containers.RepeatedScalarFieldContainer[str]
    schedule_id: str
    output_dropped_bytes: int
    output_dropped_disk_full: bool
    name: str
    labels: _containers.ScalarMap[str, str]
    live_usage: LiveUsage
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[JobState, str]] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., peak_memory_bytes: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., oom_kills: _Optional[int] = ..., reason: _Optional[str] = ..., cwd: _Optional[str] = ..., isolation: _Optional[_Iterable[str]] = ..., schedule_id: _Optional[str] = ..., output_dropped_bytes: _Optional[int] = ..., output_dropped_disk_full: _Optional[bool] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., live_usage: _Optional[_Union[LiveUsage, _Mapping]] = ...) -> None: ...

class LiveUsage(_message.Message):
    __slots__ = ("interval", "cpu_cores", "cpu_time", "memory_bytes", "peak_memory_bytes", "io_read_bytes_per_second", "io_write_bytes_per_second", "processes")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_READ_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    IO_WRITE_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    cpu_cores: float
    cpu_time: _duration_pb2.Duration
    memory_bytes: int
    peak_memory_bytes: int
    io_read_bytes_per_second: float
    io_write_bytes_per_second: float
    processes: int
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu_cores: _Optional[float] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., memory_bytes: _Optional[int] = ..., peak_memory_bytes: _Optional[int] = ..., io_read_bytes_per_second: _Optional[float] = ..., io_write_bytes_per_second: _Optional[float] = ..., processes: _Optional[int] = ...) -> None: ...

class ScheduleRun(_message.Message):
    __slots__ = ("due_time", "outcome", "job_id", "detail")
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    due_time: _timestamp_pb2.Timestamp
    outcome: ScheduleRunOutcome
    job_id: str
    detail: str
    def __init__(self, due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[ScheduleRunOutcome, str]] = ..., job_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "owner", "argv", "period", "next_run_time", "create_time", "active", "recent_runs", "name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    RECENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    period: _duration_pb2.Duration
    next_run_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    active: bool
    recent_runs: _containers.RepeatedCompositeFieldContainer[ScheduleRun]
    name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., next_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ..., recent_runs: _Optional[_Iterable[_Union[ScheduleRun, _Mapping]]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...
