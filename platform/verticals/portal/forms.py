from django import forms

from verticals.tenancy.models import ApiKey
from verticals.tenancy.roles import Role, Scope


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)
    full_name = forms.CharField(max_length=150, required=False)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=120)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ, Scope.PREDICT]
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)
    project = forms.ChoiceField(required=False, help_text="Restrict the key to one project (optional).")
    expires_at = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    mode = forms.ChoiceField(choices=ApiKey.Mode.choices, initial=ApiKey.Mode.LIVE)

    def __init__(self, *args, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [("", "All projects")] + [(p.public_id, p.name) for p in projects]


class SwitchTenantForm(forms.Form):
    tenant = forms.CharField(max_length=40)
