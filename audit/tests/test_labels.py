"""Every action and reason code the portal can write has a human label (issue 14: "Blank
Action"). The codes are gathered by reading the source, so a new code anywhere without a label
in ``audit.labels`` fails here; unknown codes of old rows still display as themselves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from audit import labels
from audit.models import AccessAction

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("recordings", "audit", "portal")
CODE = re.compile(r"[a-z][a-z0-9_]*")
FAMILY = re.compile(r"[a-z0-9_{}]+")
OUTCOMES = {"allowed", "denied", "error"}
AUDIT_KEYWORDS = {"reason_code"}


def _template(node: ast.JoinedStr) -> str:
    return "".join(
        str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
    )


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


class _Collector:
    """Reads one module and collects the codes it can write (see the patterns below)."""

    def __init__(self, found: dict[str, dict[str, str]]) -> None:
        self.found = found

    def add(self, kind: str, code: str, where: str) -> None:
        self.found[kind].setdefault(code, where)

    def reason(self, node: ast.expr | None, where: str, constants: dict[str, str]) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
            self.add("reasons", node.value, where)
        elif isinstance(node, ast.IfExp):
            self.reason(node.body, where, constants)
            self.reason(node.orelse, where, constants)
        elif isinstance(node, ast.JoinedStr):
            self.add("families", _template(node), where)
        elif isinstance(node, ast.Name) and node.id in constants:
            self.add("reasons", constants[node.id], where)

    def module(self, path: Path) -> None:
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(ROOT))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        if "ACTION" in constants:
            self.add("actions", constants["ACTION"], where)
        # Functions that pass one of their parameters on as a reason code: their callers'
        # arguments for it are reason codes too (``_log(request, obj, "created", …)``).
        passes: dict[str, int] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [arg.arg for arg in (*node.args.posonlyargs, *node.args.args)]
            offset = 1 if params[:1] in (["self"], ["cls"]) else 0
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call):
                    for keyword in inner.keywords:
                        if (
                            keyword.arg in AUDIT_KEYWORDS
                            and isinstance(keyword.value, ast.Name)
                            and keyword.value.id in params
                        ):
                            passes[node.name] = params.index(keyword.value.id) - offset
            for param, default in zip(
                params[len(params) - len(node.args.defaults) :], node.args.defaults, strict=True
            ):
                if param in ("reason", "reason_code"):
                    self.reason(default, f"{where}:{node.lineno}", constants)
        for node in ast.walk(tree):
            line = f"{where}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id in ("reason", "reason_code")
                for target in node.targets
            ):
                self.reason(node.value, line, constants)
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and isinstance(statement.value, ast.Constant)
                        and isinstance(statement.value.value, str)
                        and CODE.fullmatch(statement.value.value)
                        and any(
                            isinstance(target, ast.Name)
                            and (target.id == "code" or node.name == "ReasonCode")
                            for target in statement.targets
                        )
                    ):
                        self.add("reasons", statement.value.value, line)
            if not isinstance(node, ast.Call):
                continue
            called = _name(node.func)
            for keyword in node.keywords:
                if keyword.arg in ("reason_code", "reason"):
                    sentence = (
                        keyword.arg == "reason"
                        and isinstance(keyword.value, ast.Constant)
                        and not CODE.fullmatch(str(keyword.value.value))
                    )
                    if not sentence:  # a person's reason is a sentence, not a code
                        self.reason(keyword.value, line, constants)
                if keyword.arg == "action" and called != "add_argument":
                    if isinstance(keyword.value, ast.Constant):
                        self.add("actions", str(keyword.value.value), line)
                    elif isinstance(keyword.value, ast.Name) and keyword.value.id in constants:
                        self.add("actions", constants[keyword.value.id], line)
            if called in passes and len(node.args) > passes[called] >= 0:
                self.reason(node.args[passes[called]], line, constants)
            # An outcome followed by a code: ``finish(answer, "denied", "recording_deleted")``.
            for first, second in zip(node.args, node.args[1:], strict=False):
                is_outcome = (isinstance(first, ast.Constant) and first.value in OUTCOMES) or (
                    isinstance(first, ast.Attribute) and _name(first.value) == "AccessOutcome"
                )
                if not is_outcome:
                    continue
                if isinstance(second, ast.Constant) and CODE.fullmatch(str(second.value)):
                    self.add("reasons", str(second.value), line)
                elif isinstance(second, ast.JoinedStr) and FAMILY.fullmatch(_template(second)):
                    self.add("families", _template(second), line)
            # An error raised with its code: ``FlexAuthError("expired_token", "…")``.
            if (
                called.endswith("Error")
                and called not in {"ValueError", "TypeError", "KeyError", "CommandError"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and CODE.fullmatch(str(node.args[0].value))
            ):
                self.add("reasons", str(node.args[0].value), line)


def written_codes() -> dict[str, dict[str, str]]:
    """``actions``, ``reasons`` and ``families`` (f-string templates) found in the source,
    each with where it was first seen."""
    found: dict[str, dict[str, str]] = {"actions": {}, "reasons": {}, "families": {}}
    collector = _Collector(found)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            collector.module(path)
    return found


CODES = written_codes()


def test_the_scan_finds_the_codes_it_should():
    # The scan itself must keep working: codes of each pattern it reads.
    assert {"url_provider", "retention_delete", "media_playback"} <= set(CODES["actions"])
    assert {
        "no_matching_rule",  # a ReasonCode attribute
        "recording_deleted",  # ``reason = … if … else …``
        "missing_recording_sid",  # after an outcome
        "expired_token",  # an error raised with its code
        "media_not_found",  # an error class's ``code``
        "bad_password",  # a parameter's default
        "soft",  # a module constant
        "dashboard",  # a keyword
    } <= set(CODES["reasons"])
    assert {"access_log_{}", "rule_{}", "chain_{}"} <= set(CODES["families"])


@pytest.mark.parametrize("code", sorted({*CODES["actions"], *AccessAction.values}))
def test_every_action_has_a_label(code):
    assert code in labels.ACTION_LABELS, f"{code} ({CODES['actions'].get(code, 'AccessAction')})"
    assert labels.action_label(code) != code


@pytest.mark.parametrize("code", sorted(CODES["reasons"]))
def test_every_reason_has_a_label(code):
    assert code in labels.REASON_LABELS, f"{code} is written at {CODES['reasons'][code]}"


@pytest.mark.parametrize("template", sorted(CODES["families"]))
def test_every_family_of_reasons_is_listed_with_its_members(template):
    assert template in labels.REASON_FAMILIES, (
        f"{template} is written at {CODES['families'][template]}: list its codes in "
        "audit.labels.REASON_FAMILIES"
    )
    for part in labels.REASON_FAMILIES[template]:
        assert template.replace("{}", part) in labels.REASON_LABELS


def test_every_label_is_offered_by_the_filters():
    from audit.admin.filters import ActionFilter, ReasonFilter

    assert {code for code, _ in ActionFilter.lookups(None, None, None)} >= set(labels.ACTION_LABELS)
    assert {code for code, _ in ReasonFilter.lookups(None, None, None)} >= set(labels.REASON_LABELS)


def test_unknown_codes_display_as_themselves_never_a_dash():
    assert labels.action_label("some_future_action") == "some_future_action"
    assert labels.reason_label("some_old_reason") == "some_old_reason"
    assert labels.reason_label("") == ""
    assert labels.reason_label("no_matching_rule") == "no rule allows it"
