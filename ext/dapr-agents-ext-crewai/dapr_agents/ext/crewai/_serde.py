"""Task outputs and usage metrics as JSON, the form in which they travel through the workflow.

A ``TaskOutput`` is dumped with pydantic's JSON mode; its ``pydantic`` field is dumped as a dict
and rebuilt with the task's ``output_pydantic`` class on the way back, so a ``CrewOutput`` built
from workflow history equals the one ``crew.kickoff()`` returns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crewai.tasks.task_output import TaskOutput
from crewai.types.usage_metrics import UsageMetrics

USAGE_FIELDS = tuple(UsageMetrics.model_fields)


def dump_task_output(output: TaskOutput, index: int, *, skipped: bool = False) -> dict[str, Any]:
    data = output.model_dump(mode="json", exclude={"pydantic"})
    # The field is typed BaseModel, so pydantic would dump it as {}: dump the model itself.
    data["pydantic"] = output.pydantic.model_dump(mode="json") if output.pydantic is not None else None
    data["_index"] = index
    if skipped:
        data["_skipped"] = True
    return data


def load_task_output(data: dict[str, Any], output_pydantic: type[BaseModel] | None) -> TaskOutput:
    fields = {k: v for k, v in data.items() if not k.startswith("_")}
    model = fields.pop("pydantic", None)
    output = TaskOutput.model_validate(fields)
    if model is not None:
        output.pydantic = output_pydantic.model_validate(model) if output_pydantic is not None else None
    return output


def usage_delta(before: UsageMetrics, after: UsageMetrics) -> dict[str, int]:
    return {name: int(getattr(after, name)) - int(getattr(before, name)) for name in USAGE_FIELDS}


def add_usage(total: dict[str, int], delta: dict[str, int]) -> None:
    for name in USAGE_FIELDS:
        total[name] = total.get(name, 0) + int(delta.get(name, 0))
