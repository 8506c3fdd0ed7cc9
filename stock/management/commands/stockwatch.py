"""``manage.py stockwatch SKU…``: plot stock levels live in the terminal (on hand, reserved, history)."""

import time
from collections import deque
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from stock import selectors

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int) -> str:
    values = list(values)[-width:]
    if not values:
        return ""
    top = max(values) or Decimal(1)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in values)


def bar(on_hand: Decimal, reserved: Decimal, scale: Decimal, width: int) -> str:
    if scale <= 0:
        return "·" * width
    reserved_cells = int(reserved / scale * width)
    available_cells = int((on_hand - reserved) / scale * width)
    return ("▓" * reserved_cells + "█" * available_cells).ljust(width, "·")[:width]


class Command(BaseCommand):
    help = "Plot stock levels live: ▓ reserved, █ available, and the history of on hand as a sparkline."

    def add_arguments(self, parser):
        parser.add_argument("skus", nargs="*", help="SKUs to watch (all when none, up to 20).")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between refreshes.")
        parser.add_argument("--width", type=int, default=40)
        parser.add_argument("--frames", type=int, default=0, help="Stop after this many frames (0: until Ctrl-C).")

    def handle(self, *args, skus, interval, width, frames, **options):
        query = selectors.stock_levels()
        if skus:
            missing = sorted(set(skus) - set(query.filter(sku__in=skus).values_list("sku", flat=True)))
            if missing:
                raise CommandError(f"Unknown sku(s): {', '.join(missing)}")
            query = query.filter(sku__in=skus)
        history: dict[str, deque] = {}
        frame = 0
        try:
            while not frames or frame < frames:
                rows = []
                for ingredient in query[:20]:
                    history.setdefault(ingredient.sku, deque(maxlen=width)).append(ingredient.on_hand)
                    rows.append((ingredient, ingredient.on_hand, ingredient.reserved))
                scale = max([Decimal(1), *(max(history[i.sku]) for i, _, _ in rows)])
                lines = [f"stock levels at {time.strftime('%H:%M:%S')}  (▓ reserved  █ available)"]
                for ingredient, on_hand, reserved in rows:
                    low = " LOW" if ingredient.low else ""
                    lines.append(
                        f"{ingredient.sku:<14} {bar(on_hand, reserved, scale, width)} "
                        f"{on_hand:>12} on hand {reserved:>10} reserved{low}\n"
                        f"{'':<14} {sparkline(history[ingredient.sku], width)}"
                    )
                clear = "\033[2J\033[H" if self.stdout.isatty() else ""
                self.stdout.write(clear + "\n".join(lines))
                frame += 1
                if not frames or frame < frames:
                    time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("")
