"""Who is asking: a logged-in user (session) or a machine client (API token), and what they may do."""

from __future__ import annotations

from dataclasses import dataclass

from access.audit import Actor
from access.roles import ROLE_PERMISSIONS, Permission, Role


@dataclass(frozen=True)
class Identity:
    kind: str                        # user | token
    name: str                        # the user name, or the token's name
    ident: int                       # user_id or token_id
    agency: str | None               # the agency acted for; None for roles above agencies
    permissions: frozenset[Permission]
    role: Role | None = None         # users only
    client: str = ""

    @property
    def actor(self) -> Actor:
        label = f"user:{self.name}" if self.kind == "user" else f"token:{self.ident}:{self.name}"
        return Actor(label, self.client, self.agency)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


def user_identity(row: dict, client: str) -> Identity:
    role = Role(row["role"])
    return Identity("user", row["username"], row["user_id"], row["agency"], ROLE_PERMISSIONS[role], role, client)


def token_identity(row: dict, client: str) -> Identity:
    return Identity("token", row["name"], row["token_id"], row["agency"],
                    frozenset(Permission(s) for s in row["scopes"]), None, client)
