"""Request and response shapes of the tenancy resources, and the bases every request body stands
on (StrictSerializer: the declared fields and no other)."""

from collections.abc import Mapping

from rest_framework import serializers

from verticals.tenancy.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    Partner,
    Project,
    Tenant,
)
from verticals.tenancy.roles import Role, Scope


class StrictCharField(serializers.CharField):
    """A string, and only a string: 7 or 5.5 is a wrong type, not a name. Its length is checked as
    sent (the document's maxLength), before the surrounding whitespace is trimmed."""

    default_error_messages = {"invalid": "Give a string, not a {type}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", type=type(data).__name__)
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


# A request body: an object of the declared fields, and no other. An unknown field is refused by
# name, {name: ["Unknown field; <what the body takes>."]} (400), before any field is read: a misspelt
# field must not pass for an absent one. (A comment, not a docstring: the OpenAPI document would
# give it to every request body as its description.)
class StrictSerializer(serializers.Serializer):
    #: What the refusal says the body takes; {fields} stands for the declared fields, in order.
    takes: str = "this request takes {fields}"
    #: The error for a body that is no object (default: DRF's "Invalid data. Expected a dictionary").
    not_an_object: dict | None = None

    def unknown_field_message(self) -> str:
        return f"Unknown field; {self.takes.format(fields=', '.join(self.fields))}."

    def refuse_unknown_fields(self, data) -> None:
        """The first check of a body; a view may make it before others (whose partner it is)."""
        if not isinstance(data, Mapping):
            return
        unknown = sorted(str(name) for name in data if name not in self.fields)
        if unknown:
            message = self.unknown_field_message()
            raise serializers.ValidationError({name: [message] for name in unknown})

    def to_internal_value(self, data):
        if not isinstance(data, Mapping) and self.not_an_object is not None:
            raise serializers.ValidationError(self.not_an_object)
        self.refuse_unknown_fields(data)
        return super().to_internal_value(data)


class AsSentField(serializers.CharField):
    """A value passed on as sent (None, "" and numbers included) for a service to check, where the
    service's message says more than a field's would (a float refused as a price, a source
    name's rules). Documented as the string it should be; absent, it is `required`'s to judge."""

    def run_validation(self, data=serializers.empty):
        if data is serializers.empty:
            return serializers.Field.run_validation(self, data)
        return data

    def to_representation(self, value):
        return value


class PublicIdRelatedField(serializers.SlugRelatedField):
    """A reference to another object by public id, looked up in the caller's scope."""

    default_error_messages = {
        "does_not_exist": "No {model} with id '{value}' is visible to you.",
        "invalid": "Give the object's id as a string.",
    }

    def __init__(self, *, model_name: str, **kwargs):
        self.model_name = model_name
        super().__init__(slug_field="public_id", **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        queryset = self.get_queryset()
        obj = queryset.filter(public_id=data).first()
        if obj is None:
            self.fail("does_not_exist", model=self.model_name, value=data[:64])
        return obj


class ProjectSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    name = StrictCharField(max_length=120)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    user_id = serializers.CharField(source="user.public_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    full_name = serializers.CharField(source="user.full_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "email", "full_name", "role", "created_at"]


class InvitationSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    status = serializers.ChoiceField(choices=Invitation.Status.choices, read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "sent_at",
            "accepted_at",
            "revoked_at",
        ]


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ApiKeySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    prefix = serializers.CharField(source="display_prefix", read_only=True)
    project = serializers.CharField(source="project.public_id", read_only=True, allow_null=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "mode",
            "role",
            "scopes",
            "project",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "active",
            "created_by",
            "created_at",
        ]

    def get_active(self, key) -> bool:
        return key.is_active()


class ApiKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=120)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices),
        allow_empty=False,
        max_length=len(Scope.values),
    )
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    project = PublicIdRelatedField(
        model_name="project", queryset=Project.objects, required=False, allow_null=True
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    mode = serializers.ChoiceField(choices=ApiKey.Mode.choices, default=ApiKey.Mode.LIVE)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["secret"]


class PartnerRefSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = Partner
        fields = ["id", "name", "brand_name"]


class TenantSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    partner = PartnerRefSerializer(read_only=True)

    class Meta:
        model = Tenant
        fields = [
            "id",
            "name",
            "partner",
            "status",
            "suspended_reason",
            "suspended_at",
            "created_at",
        ]


class PartnerTenantCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=120)
    partner = PublicIdRelatedField(
        model_name="partner",
        queryset=Partner.objects,
        required=False,
        help_text="Needed only when you administer several partners.",
    )
    owner_email = serializers.EmailField(max_length=254, required=False)


class PartnerTenantUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=120)


class SuspendSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class AuditEventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "actor", "target_type", "target_id", "details", "created_at"]


# The JSON bodies of a predict call (the document describes them in api/registry.py): the inputs and
# parameters are the task's to check, as sent.
class PredictBodySerializer(StrictSerializer):
    takes = "a predict request takes inputs and parameters"

    inputs = AsSentField()
    parameters = AsSentField(required=False)


class GenerationBodySerializer(StrictSerializer):
    takes = "a predict request takes inputs, parameters and stream"

    inputs = AsSentField()
    parameters = AsSentField(required=False)
    stream = AsSentField(required=False)
