"""The JSON API's documents, as pydantic models: the OpenAPI description is made from them,
and the pages render the same values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

PlanAction = Literal["resume", "cancel", "halt"]
StepAction = Literal["skip", "retry"]
BulkAction = Literal["resume", "skip", "skip_and_resume", "retry", "cancel", "halt"]


class ErrorView(BaseModel):
    class_name: str
    message: str
    traceback: str | None = None


class Counts(BaseModel):
    """How many plans are in each state, and the stopped ones by result."""

    total: int
    planned: int
    running: int
    paused: int
    stopped: int
    success: int
    warning: int
    error: int
    cancelled: int


class PlanSummary(BaseModel):
    id: str
    label: str
    state: str
    result: str
    action_class: str | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    #: seconds it has run: to its end, to its pause, or until now while running
    duration: float | None
    world_id: str | None = Field(description="the executor world that runs it, if one does")
    parent_id: str | None = Field(default=None, description="a sub-plan's parent plan")
    parent_step_id: int | None = Field(default=None, description="the parent's step")
    page: str = Field(description="the plan's page, a path")
    api: str = Field(description="the plan's JSON document, a path")


class PlanList(BaseModel):
    total: int
    page: int
    per_page: int
    pages: int
    filters: dict[str, str]
    counts: Counts
    plans: list[PlanSummary]
    version: str = Field(description="changes whenever what this answer holds changes")


class Progress(BaseModel):
    """The plan's run steps: ``done`` of ``total`` have succeeded or been skipped."""

    done: int
    total: int
    running: int
    failed: int
    waiting: int
    fraction: float = Field(
        0.0, description="how far the plan got, 0 to 1, with the progress its steps reported"
    )


class HistoryView(BaseModel):
    at: datetime
    event: str
    step_id: int | None
    world_id: str | None
    detail: Any = None


class StepView(BaseModel):
    id: int
    kind: str
    state: str
    action_id: int
    action_class: str
    queue: str
    world_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    attempts: int = Field(description="how many times it started running")
    progress: dict[str, Any] | None = Field(
        None, description="what the step reported (self.progress): done, total"
    )
    error: ErrorView | None
    actions: list[StepAction] = Field(description="the operator actions allowed on it now")


class LogLine(BaseModel):
    seq: int
    at: datetime
    message: str


class StepDetail(StepView):
    plan_id: str
    parent_action_id: int | None
    input: Any
    output: Any
    history: list[HistoryView]
    log: list[LogLine] = Field(description="what the step logged (self.log), its last lines")


class PlanDetail(PlanSummary):
    key: str | None
    error: ErrorView | None = Field(description="why planning failed, if it did")
    progress: Progress
    worlds: list[str] = Field(description="the worlds running it or its steps now")
    steps: list[StepView]
    finalize_order: list[int]
    history: list[HistoryView]
    actions: list[PlanAction] = Field(description="the operator actions allowed on it now")
    sub_plans: dict[str, int] = Field(
        default_factory=dict,
        description="its sub-plans per state (state/result once ended); none: empty",
    )
    version: str
    final: bool = Field(description="it is stopped: nothing about it changes any more")


class PlanStatus(BaseModel):
    """What the live pages poll: when ``version`` changes, the page is drawn again."""

    id: str
    state: str
    result: str
    progress: Progress
    version: str
    final: bool


class WorldView(BaseModel):
    id: str
    hostname: str | None
    pid: int | None
    executor: str | None
    queues: dict[str, int]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    stale: bool
    running_steps: int
    plans: int = Field(description="running plans it owns")


class QueueView(BaseModel):
    name: str
    limit: int | None
    threads: int = Field(description="worker threads of the live worlds serving it")
    worlds: dict[str, int]
    pending: int
    running: int
    suspended: int
    failed: int
    done: int


class RequestView(BaseModel):
    id: int | None
    plan_id: str
    kind: str
    for_world: str | None
    taken_by: str | None
    age: float
    declined: dict[str, str]


class Cluster(BaseModel):
    now: datetime
    worlds: list[WorldView]
    queues: list[QueueView]
    waiting: list[RequestView]
    released_plans: int = Field(description="running plans no world owns, waiting to be taken")


class ActionOptions(BaseModel):
    """The body of an operator action (optional)."""

    abort: bool = Field(False, description="cancel: call abort() rather than cancel()")
    resume: bool = Field(False, description="skip: resume the plan right after")


class ActionDone(BaseModel):
    plan_id: str
    action: str
    step_id: int | None
    message: str
    state: str
    result: str


class BulkRequest(BaseModel):
    action: BulkAction
    filters: dict[str, str] = Field(
        default_factory=dict,
        description="the plan list's filters: state, result, action, label, q, since, until",
    )
    dry_run: bool = True
    abort: bool = False


class BulkItem(BaseModel):
    plan_id: str
    label: str
    ok: bool
    message: str


class BulkResult(BaseModel):
    action: BulkAction
    dry_run: bool
    filters: dict[str, str]
    matched: int
    applicable: int
    results: list[BulkItem]


class ErrorBody(BaseModel):
    error: str
    status: int
