"""Rule validation: globs and the other constraints, shared by the import and the admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.exceptions import ValidationError

from audit.models import AccessRule
from audit.validation import AccessRuleInvalid, access_rule_validate, glob_problem


@pytest.mark.parametrize(
    "pattern", ["*", "qa_*", "a?c", "[ab]*", "[!q]*", "qa_[0-9]", "[]]x", "[!]]", "[a-]"]
)
def test_good_globs(pattern):
    assert glob_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("qa_[12", "unbalanced '['"),
        ("[", "unbalanced '['"),
        ("[!]", "unbalanced '['"),
        ("qa_]", "unbalanced ']'"),
        ("[z-a]", "reversed range"),
        ("", "empty"),
        ("a\nb", "control"),
        ("x" * 201, "at most"),
    ],
)
def test_bad_globs(pattern, complaint):
    assert complaint in glob_problem(pattern)


def test_validate_normalizes_dates_to_whole_utc_seconds():
    plus_two = timezone(timedelta(hours=2))
    cleaned = access_rule_validate(
        {"valid_from": datetime(2026, 1, 1, 2, 0, 0, 500, tzinfo=plus_two), "valid_until": None}
    )
    assert cleaned["valid_from"] == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert cleaned["valid_from"].tzinfo is UTC


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"name": " padded"}, "name"),
        ({"name": ""}, "name"),
        ({"effect": "permit"}, "effect"),
        ({"identities": "qa_*"}, "identities"),
        ({"roles": ["supervisor", 3]}, "roles"),
        ({"roles": [""]}, "roles"),
        ({"worker_sids": ["WK123"]}, "worker_sids"),
        ({"account_sids": ["AC" + "A" * 32]}, "account_sids"),
        ({"call_sids": ["RE" + "a" * 32]}, "call_sids"),
        ({"max_age_days": -1}, "max_age_days"),
        ({"max_age_days": True}, "max_age_days"),
        ({"max_age_days": 36501}, "max_age_days"),
        ({"valid_from": datetime(2026, 1, 1)}, "valid_from"),
        (
            {
                "valid_from": datetime(2026, 1, 2, tzinfo=UTC),
                "valid_until": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "valid_until",
        ),
        ({"reason": None}, "reason"),
    ],
)
def test_bad_values_name_the_field(values, field):
    with pytest.raises(AccessRuleInvalid) as caught:
        access_rule_validate(values)
    assert set(caught.value.errors) == {field}


@pytest.mark.django_db
def test_model_clean_uses_the_same_validation():
    rule = AccessRule(name="qa", effect="allow", identities=["qa_[1"])
    with pytest.raises(ValidationError) as caught:
        rule.full_clean()
    assert "identities" in caught.value.message_dict
    assert "unbalanced" in caught.value.message_dict["identities"][0]


@pytest.mark.django_db
def test_model_clean_accepts_empty_lists():
    AccessRule(name="everyone", effect="deny", reason="lockdown").full_clean()
