"""``manage.py bootstrap``: create the admin user, the API user and token, and load demo data once."""

from django.core.management.base import BaseCommand

from supplychain.core.bootstrap import bootstrap


class Command(BaseCommand):
    help = "Create the admin user and a least-privilege API token, and load demo data once (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")

    def handle(self, *args, no_demo, **options):
        credentials = bootstrap(demo=not no_demo)
        self.stdout.write(self.style.SUCCESS("Bootstrap done."))
        self.stdout.write(f"  admin user : {credentials.admin_username}")
        self.stdout.write(f"  password   : {credentials.admin_password or '(changed since first run; not shown)'}")
        self.stdout.write(f"  API user   : {credentials.api_username}")
        self.stdout.write(f"  API token  : {credentials.api_token}")
        if credentials.demo_loaded_now:
            self.stdout.write("  demo data  : loaded")
        else:
            self.stdout.write("  demo data  : already loaded earlier (or --no-demo)")
