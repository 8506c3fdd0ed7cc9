"""``manage.py bootstrap``: the admin user, the platform and operations API users and tokens, demo data once."""

import json

from django.core.management.base import BaseCommand

from supplychain.core.bootstrap import bootstrap


class Command(BaseCommand):
    help = (
        "Create the admin user, the role groups, a platform and an operations API token, and load demo data "
        "once (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")
        parser.add_argument("--json", action="store_true", help="Print the credentials as one JSON object.")

    def handle(self, *args, no_demo, json: bool, **options):
        credentials = bootstrap(demo=not no_demo)
        if json:
            self.stdout.write(_json(credentials))
            return
        self.stdout.write(self.style.SUCCESS("Bootstrap done."))
        self.stdout.write(f"  admin user : {credentials.admin_username}")
        self.stdout.write(f"  password   : {credentials.admin_password or '(changed since first run; not shown)'}")
        for token in credentials.tokens():
            self.stdout.write(f"  {token['role'] + ' token':<17}: {token['token']}   (user {token['username']})")
            self.stdout.write(f"  {'':<17}  may {token['may']}")
        if credentials.demo_loaded_now:
            self.stdout.write("  demo data  : loaded")
        else:
            self.stdout.write("  demo data  : already loaded earlier (or --no-demo)")


def _json(credentials) -> str:
    return json.dumps(
        {
            "admin": {"username": credentials.admin_username, "password": credentials.admin_password},
            "tokens": {token["role"]: token for token in credentials.tokens()},
            "demo_loaded_now": credentials.demo_loaded_now,
        },
        indent=2,
    )
