"""Request bodies of the v3 API as pydantic models: validated here and described in OpenAPI
from the same classes, so the description cannot drift from what is accepted."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PASSWORD_MIN_LENGTH = 12  # Rancher's `password-min-length` default
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"  # DNS label, like Kubernetes names


class Body(BaseModel):
    """Unknown fields are rejected, not dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class LoginInput(Body):
    """`POST /v3-public/localProviders/local?action=login`."""

    username: str = Field(min_length=1)
    password: str = Field(min_length=1)
    ttl: int = Field(default=0, ge=0, description="token lifetime in ms; 0 = the session default")
    description: str = ""
    responseType: Literal["", "token", "cookie", "json"] = ""


class UserCreate(Body):
    """`POST /v3/users` (admin)."""

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=PASSWORD_MIN_LENGTH)
    name: str = ""
    description: str = ""
    enabled: bool = True
    admin: bool = False
    mustChangePassword: bool = False


class UserUpdate(Body):
    """`PUT /v3/users/<id>` (admin): fields absent are left as they are."""

    name: str | None = None
    description: str | None = None
    enabled: bool | None = None
    admin: bool | None = None
    mustChangePassword: bool | None = None


class ChangePasswordInput(Body):
    """`POST /v3/users?action=changepassword` (any user, their own password)."""

    currentPassword: str = Field(min_length=1)
    newPassword: str = Field(min_length=PASSWORD_MIN_LENGTH)


class SetPasswordInput(Body):
    """`POST /v3/users/<id>?action=setpassword` (admin)."""

    newPassword: str = Field(min_length=PASSWORD_MIN_LENGTH)


class TokenCreate(Body):
    """`POST /v3/tokens`: an API key for the caller."""

    description: str = ""
    ttl: int = Field(default=0, ge=0, description="lifetime in ms; 0 = never expires")


class SettingUpdate(Body):
    """`PUT /v3/settings/<name>` (admin, writable settings only)."""

    value: str


class ClusterCreate(Body):
    """`POST /v3/clusters` (admin)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class ClusterUpdate(Body):
    """`PUT /v3/clusters/<id>` (admin): fields absent are left as they are."""

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    description: str | None = None
    labels: dict[str, str] | None = None


class RegistrationTokenCreate(Body):
    """`POST /v3/clusterregistrationtokens` (admin): a new token for a cluster."""

    clusterId: str = Field(min_length=1)
