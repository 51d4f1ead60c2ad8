"""The two compliance groups of the admin and their permissions.

* ``compliance viewer``: reads the access log, its digests, the access rules and the recordings
  with their callbacks; changes nothing.
* ``compliance manager``: the same, and adds and changes access rules and places and releases
  legal holds (rules and holds are never deleted, so there is no delete permission to grant).

Created by migration ``audit.0004`` and kept complete after every ``migrate`` (and after a
test run empties the tables) by a ``post_migrate`` hook: missing groups and permissions are
added, nothing granted by hand is removed.
"""

from __future__ import annotations

from typing import Any

VIEWER_PERMISSIONS = (
    ("audit", "view_accesslog"),
    ("audit", "view_accesslogdigest"),
    ("audit", "view_accessrule"),
    ("recordings", "view_recording"),
    ("recordings", "view_recordingevent"),
    ("recordings", "view_retentionpolicy"),
    ("recordings", "view_legalhold"),
    ("audit", "view_accessgrant"),
    ("audit", "view_controlchange"),
    ("audit", "view_accessreview"),
)
MANAGER_PERMISSIONS = (
    *VIEWER_PERMISSIONS,
    ("audit", "add_accessrule"),
    ("audit", "change_accessrule"),
    # Placing and releasing legal holds (holds are never deleted: no delete permission).
    ("recordings", "add_legalhold"),
    ("recordings", "change_legalhold"),
    # Four eyes on access requests (never the requester: audit.grants enforces it), and
    # marking recordings restricted.
    ("audit", "approve_accessgrant"),
    # Maker/checker: the second staff member on changes that weaken control (never the
    # proposer: audit.control_changes enforces it).
    ("audit", "approve_controlchange"),
    ("recordings", "restrict_recording"),
    # Periodic access reviews: assigned to (round-robin), signed off by and reassigned by
    # compliance managers (audit.reviews).
    ("audit", "review_accessreview"),
    ("audit", "assign_accessreview"),
)
COMPLIANCE_GROUPS = {
    "compliance viewer": VIEWER_PERMISSIONS,
    "compliance manager": MANAGER_PERMISSIONS,
}


def compliance_groups_ensure(apps: Any) -> None:
    """Create the groups that are missing and give each the permissions it lacks.

    ``apps`` is an app registry: a migration's historical one, or ``django.apps.apps``.
    Permissions that do not exist yet are skipped (the next ``migrate`` adds them).
    """
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in COMPLIANCE_GROUPS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            permission = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)
