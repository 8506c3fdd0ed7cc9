"""What the probe handlers leave behind, so tests can count effects across processes."""

from django.db import models


class Effect(models.Model):
    """One handler run that committed. Deliberately not unique: a double effect must be countable."""

    event_id = models.UUIDField()
    handler = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)


class Switch(models.Model):
    """A named on/off flag handlers read (e.g. 'broken' makes the failing handler fail)."""

    name = models.CharField(max_length=50, unique=True)
    on = models.BooleanField(default=False)
