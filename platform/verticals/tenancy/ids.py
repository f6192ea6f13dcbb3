"""Public ids: a short type prefix and random characters that reveal no counts (`prj_4fQ…`)."""

import secrets
import string

from django.db import models

ALPHABET = string.ascii_letters + string.digits
RANDOM_LENGTH = 20  # 62**20 ≈ 7e35: collisions are not a practical concern


def new_public_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))


class PublicIdField(models.CharField):
    """A unique, indexed, random public id with a type prefix, filled in on creation."""

    def __init__(self, *args, prefix: str = "", **kwargs):
        self.prefix = prefix
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("unique", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        for key, value in (("max_length", 32), ("unique", True), ("editable", False)):
            if kwargs.get(key) == value:
                kwargs.pop(key)
        return name, path, args, kwargs

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if not value:
            value = new_public_id(self.prefix)
            setattr(model_instance, self.attname, value)
        return value
