"""`./pants lint` runs the visibility rules (`__dependencies_rules__`) of every target given.

Pants 2.17 checks the rules only while it computes dependencies (`test`, `check`, `package`,
`dependencies`), and `lint` computes none, so an upward import passed `./pants lint ::`. This
linter (Pants 2.18's built-in `visibility` linter, back-ported) computes the dependencies of
each target and reports every violation at once. Skip it with `--visibility-skip`, select it
alone with `./pants lint --only=visibility ::`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pants.core.goals.lint import LintResult, LintTargetsRequest
from pants.core.util_rules.partitions import PartitionerType
from pants.engine.addresses import Addresses
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Dependencies, DependenciesRequest, FieldSet
from pants.option.option_types import SkipOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel


class VisibilityLint(Subsystem):
    options_scope = "visibility"
    name = "visibility"
    help = "The dependency rules of the visibility backend, checked by `lint`."

    skip = SkipOption("lint")


@dataclass(frozen=True)
class VisibilityFieldSet(FieldSet):
    required_fields = (Dependencies,)

    dependencies: Dependencies


class VisibilityLintRequest(LintTargetsRequest):
    field_set_type = VisibilityFieldSet
    tool_subsystem = VisibilityLint
    partitioner_type = PartitionerType.DEFAULT_SINGLE_PARTITION


@rule(desc="Check dependency rules", level=LogLevel.DEBUG)
async def visibility_lint(request: VisibilityLintRequest.Batch[VisibilityFieldSet, Any]) -> LintResult:
    violations = []
    for field_set in request.elements:
        try:
            # computing the dependencies applies the rules, and raises on a denied one
            await Get(Addresses, DependenciesRequest(field_set.dependencies))
        except Exception as e:  # DependencyRuleActionDeniedError, reported with the others
            violations.append(str(e).strip())
    return LintResult(
        exit_code=1 if violations else 0,
        stdout="\n\n".join(violations),
        stderr="",
        linter_name=request.tool_name,
        partition_description=request.partition_metadata.description,
    )


def rules() -> list:
    return [*collect_rules(), *VisibilityLintRequest.rules()]
