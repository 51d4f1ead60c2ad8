"""The "compliance viewer" and "compliance manager" groups (see ``audit.groups``).

Permissions are normally created after all migrations (``post_migrate``); they are created here
first so that a fresh database gets complete groups.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from audit.groups import COMPLIANCE_GROUPS, compliance_groups_ensure


def create_groups(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    compliance_groups_ensure(apps)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=COMPLIANCE_GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_admin_actions_chain_checks"),
        ("recordings", "0002_media_keys_links"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
