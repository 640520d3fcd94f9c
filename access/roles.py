"""Roles and what each may do. A user has one role; an API token carries scopes, each a
permission. Staff and archivists act for one agency and see only its data."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"            # hand in batches; their agency's batches and reports
    ARCHIVIST = "archivist"    # search and view their agency's files
    AUDITOR = "auditor"        # read the audit trail
    ENGINEER = "engineer"      # the Dagster UI (through the proxy check); no personal data
    ADMIN = "admin"            # users, tokens, agencies, keys


class Permission(StrEnum):
    BATCHES_SUBMIT = "batches:submit"
    BATCHES_READ = "batches:read"
    FILES_SEARCH = "files:search"
    FILES_READ = "files:read"          # a file's catalog and its text, ID numbers masked
    FILES_DOCUMENTS = "files:documents"  # its page images and PDFs, which show ID numbers as printed
    ID_REVEAL = "files:reveal-id"      # the full ID number, one look at a time, audited
    AUDIT_READ = "audit:read"
    PIPELINE_UI = "pipeline:ui"
    ADMIN = "admin"
    TRANSFERS_REQUEST = "transfers:request"  # send a file of their agency to another agency
    TRANSFERS_READ = "transfers:read"        # their agency's outgoing and incoming transfers
    TRANSFERS_FETCH = "transfers:fetch"      # a receiving agency's client: the pull API


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.STAFF: frozenset({Permission.BATCHES_SUBMIT, Permission.BATCHES_READ}),
    Role.ARCHIVIST: frozenset({Permission.FILES_SEARCH, Permission.FILES_READ, Permission.FILES_DOCUMENTS,
                               Permission.ID_REVEAL, Permission.BATCHES_READ, Permission.TRANSFERS_REQUEST,
                               Permission.TRANSFERS_READ}),
    Role.AUDITOR: frozenset({Permission.AUDIT_READ}),
    Role.ENGINEER: frozenset({Permission.PIPELINE_UI}),
    Role.ADMIN: frozenset({Permission.ADMIN, Permission.PIPELINE_UI}),
}
AGENCY_ROLES = frozenset({Role.STAFF, Role.ARCHIVIST})
ROLE_ZH = {Role.STAFF: "档案工作人员", Role.ARCHIVIST: "档案管理员", Role.AUDITOR: "审计员",
           Role.ENGINEER: "数据工程师", Role.ADMIN: "系统管理员"}
# Permissions a token may carry: what machine clients do. A token of an agency acts for it.
TOKEN_SCOPES = frozenset({Permission.BATCHES_SUBMIT, Permission.BATCHES_READ, Permission.FILES_SEARCH,
                          Permission.FILES_READ, Permission.AUDIT_READ, Permission.TRANSFERS_REQUEST,
                          Permission.TRANSFERS_READ, Permission.TRANSFERS_FETCH})
AGENCY_SCOPES = frozenset({Permission.BATCHES_SUBMIT, Permission.BATCHES_READ, Permission.FILES_SEARCH,
                           Permission.FILES_READ, Permission.TRANSFERS_REQUEST, Permission.TRANSFERS_READ,
                           Permission.TRANSFERS_FETCH})
