"""django-otp's TOTP app under a name an officer can read: its app config has no
``verbose_name``, so the admin index showed the raw label ("Otp_Totp")."""

from __future__ import annotations

from django_otp.plugins.otp_totp.apps import DefaultConfig


class TotpDevicesConfig(DefaultConfig):
    """``django_otp.plugins.otp_totp`` named "Two-factor devices (TOTP)"; same label, models."""

    verbose_name = "Two-factor devices (TOTP)"
