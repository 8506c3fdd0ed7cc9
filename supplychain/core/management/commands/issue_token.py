"""``manage.py issue_token``: give a user a role and print their API token (creating the user if asked)."""

import json

from django.core.management.base import BaseCommand, CommandError

from supplychain.core.bootstrap import ROLES, issue_token
from supplychain.core.errors import DomainError


class Command(BaseCommand):
    help = "Give USER the role ROLE (a group) and print their API token; --create makes a new API-only user."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="User name.")
        parser.add_argument("--role", required=True, choices=sorted(ROLES), help="Role group to give the user.")
        parser.add_argument("--create", action="store_true", help="Create the user (non-staff, no password).")
        parser.add_argument("--rotate", action="store_true", help="Replace the user's token (the old one stops).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, user: str, role: str, create: bool, rotate: bool, json: bool, **options):
        try:
            issued = issue_token(username=user, role=role, create_user=create, rotate=rotate)
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        if json:
            self.stdout.write(_dumps(issued._asdict()))
            return
        self.stdout.write(issued.token)
        created = "created, " if issued.user_created else ""
        token = "new token" if issued.token_created else "existing token"
        self.stderr.write(f"user {issued.username} ({created}role {issued.role}, {token}) may {issued.may}")


def _dumps(value) -> str:
    return json.dumps(value, indent=2)
