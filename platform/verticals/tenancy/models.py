"""Partners, tenants, users, memberships, projects and API keys."""

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from verticals.tenancy.ids import PublicIdField
from verticals.tenancy.roles import PartnerRole, Role
from verticals.tenancy.scoping import TenantOwnedModel

hex_colour = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Give a colour as #rrggbb, e.g. #1f6feb.")


class Partner(models.Model):
    """A channel partner (reseller). The platform operator is the root of the tree."""

    public_id = PublicIdField(prefix="ptn")
    name = models.CharField(max_length=120, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    brand_name = models.CharField(
        max_length=120, blank=True, help_text="Shown in its tenants' portal."
    )
    brand_colour = models.CharField(max_length=7, default="#1f6feb", validators=[hex_colour])
    logo = models.ImageField(upload_to="partner-logos/", blank=True)
    support_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # At most one root, the platform operator (NULLs never clash in a plain unique index).
            models.UniqueConstraint(
                Coalesce(F("parent"), Value(0)),
                condition=Q(parent__isnull=True),
                name="one_root_partner",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return self.brand_name or self.name

    def descendant_ids(self) -> list[int]:
        """Its own id and those of every partner below it (partner trees are shallow)."""
        ids, frontier = [self.pk], [self.pk]
        while frontier:
            frontier = list(
                Partner.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
            )
            ids.extend(frontier)
        return ids


class Tenant(models.Model):
    """A customer organization, run by one partner."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    public_id = PublicIdField(prefix="ten")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="tenants")
    name = models.CharField(max_length=120)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(max_length=500, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"], name="tenant_name_unique_per_partner"
            )
        ]
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_suspended(self) -> bool:
        return self.status == self.Status.SUSPENDED

    def suspension_message(self) -> str:
        message = f"Tenant '{self.name}' is suspended"
        if self.suspended_reason:
            message += f": {self.suspended_reason}"
        contact = self.partner.support_email
        return message + (f". Contact {contact}." if contact else ". Contact your provider.")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields) -> "User":
        if not email:
            raise ValueError("Users need an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password) if password else user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields) -> "User":
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person; logs in by email. Tenants and partners are reached through memberships."""

    public_id = PublicIdField(prefix="usr")
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email


class Membership(TenantOwnedModel):
    public_id = PublicIdField(prefix="mem")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant")
        ]
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} as {self.role}"


class Invitation(TenantOwnedModel):
    """An offer to join a tenant, sent by email; it becomes a membership only when accepted.

    Until then the inviting tenant learns nothing about the address (whether it has an
    account, its name), and nobody joins a tenant without saying yes.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    public_id = PublicIdField(prefix="inv")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.CharField(max_length=200)
    # Whose authority the invitation carries: it is revoked when that member goes or is lowered.
    invited_by_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One open invitation per address and tenant: a second one is a resend.
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant_id} as {self.role}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return self.Status.ACCEPTED
        if self.revoked_at:
            return self.Status.REVOKED
        if self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.PENDING


class PartnerMembership(models.Model):
    public_id = PublicIdField(prefix="pmem")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="partner_memberships")
    role = models.CharField(max_length=16, choices=PartnerRole.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "user"], name="one_membership_per_partner")
        ]


class Project(TenantOwnedModel):
    public_id = PublicIdField(prefix="prj")
    name = models.CharField(max_length=120)
    description = models.TextField(max_length=2000, blank=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="project_name_unique_per_tenant"
            )
        ]
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class ApiKey(TenantOwnedModel):
    """A tenant's API key. Only a hash of the secret is stored; the secret is shown once."""

    class Mode(models.TextChoices):
        LIVE = "live", "Live"
        TEST = "test", "Test"

    public_id = PublicIdField(prefix="key")
    name = models.CharField(max_length=120)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.LIVE)
    # The first characters of the random part, shown in lists and used to find the row.
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=Role.choices)
    scopes = models.JSONField(default=list)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # A key acts with its creator's authority: it goes when the creator does.
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # The key that created this one, if a key did: revoking it revokes this one too.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    @property
    def display_prefix(self) -> str:
        return f"vk_{self.mode}_{self.lookup}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class AuditEvent(TenantOwnedModel):
    """Who did what to which object of a tenant: written by the services, never edited."""

    public_id = PublicIdField(prefix="aud")
    action = models.CharField(max_length=64)
    # The actor's label stays readable after the user or key is gone.
    actor = models.CharField(max_length=200)
    actor_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=32)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_id}"


class PartnerAuditEvent(models.Model):
    """Who did what in a partner's console (its price book, its brand, its tenants' creation and
    plans): the partner's own trail, which it reads in its console. Partner-owned, not
    tenant-owned: on PostgreSQL only a platform scope, or the console of this partner, passes a
    row (`EnableRowLevelSecurity(..., partner="partner")` without a tenant)."""

    public_id = PublicIdField(prefix="paud")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="audit_events")
    action = models.CharField(max_length=64)
    # The actor's label stays readable after the user or key is gone.
    actor = models.CharField(max_length=200)
    actor_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=32)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_id}"


class AuthFailureWindow(models.Model):
    """Failed sign-ins or API key lookups counted for one subject (an account, an address, a key)
    in one fixed window: the throttle's counter (verticals.tenancy.throttle), shared by every web
    process through the database. Not tenant-owned: failures come before any tenant is known."""

    subject = models.CharField(
        max_length=80, help_text="kind:digest — the account, address or key, hashed."
    )
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "window_start"], name="one_auth_failure_window"
            )
        ]
        indexes = [models.Index(fields=["window_start"], name="auth_failure_window_start")]
