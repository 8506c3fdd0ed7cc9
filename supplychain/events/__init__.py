"""The event backbone (what SNS, SQS, the archiving Lambda and CloudWatch are in the seeds).

Transactional outbox, subscriptions with filter policies, one delivery per (event, subscription) with
retries, backoff and jitter, dead letters and redrive, an immutable audit log and metrics.
"""
