"""Platform records: one-time milestones such as "demo data loaded"."""

from django.db import models


class Milestone(models.Model):
    """A one-time step that has been done (so it is never done twice, whatever the database)."""

    name = models.CharField(max_length=100, unique=True)
    reached_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name
