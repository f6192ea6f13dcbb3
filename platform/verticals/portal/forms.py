from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from verticals.tenancy.models import ApiKey, Project, User
from verticals.tenancy.roles import Role, Scope
from verticals.tenancy.throttle import ThrottledLoginForm


class LoginForm(ThrottledLoginForm, AuthenticationForm):
    """The portal's sign-in: failed attempts are throttled per account and per address."""


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class GrantingForm(forms.Form):
    """A form with a `role` field offering only the roles its user may grant."""

    def __init__(self, *args, grantable: list[Role], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(r.value, r.label) for r in grantable]


class InviteForm(GrantingForm):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class NewAccountForm(forms.Form):
    """An invitee without an account chooses a name and a password."""

    full_name = forms.CharField(max_length=150)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif data.get("password1"):
            # An unsaved user, so that "too similar to your email or name" is checked too.
            person = User(email=self.email, full_name=data.get("full_name", ""))
            try:
                password_validation.validate_password(data["password1"], user=person)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(GrantingForm):
    name = forms.CharField(max_length=120)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.READ, Scope.PREDICT],
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label="All projects",
        help_text="Restrict the key to one project (optional).",
    )
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    mode = forms.ChoiceField(choices=ApiKey.Mode.choices, initial=ApiKey.Mode.LIVE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Set per request: the current tenant's projects (the scoped manager needs its context).
        self.fields["project"].queryset = Project.objects.all()
