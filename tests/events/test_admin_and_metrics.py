"""Operations views: admin pages and actions, the dashboard, and /metrics."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from supplychain.events import services
from supplychain.events.models import Delivery
from tests.events.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db
THING = "probe.thing_happened"


@pytest.fixture
def staff():
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def dead_delivery():
    subscription = SubscriptionFactory(name="flaky")
    services.publish(THING, {"sku": "ham", "quantity": 1}, key="order-5", correlation_id="trace-5")
    services.relay_pending()
    Delivery.objects.update(status="dead", dead_at=timezone.now(), attempts=3, last_error="HTTP 503: down")
    return Delivery.objects.get(subscription=subscription)


@pytest.mark.parametrize("model", ["subscription", "delivery", "outboxevent", "auditentry", "auditarchive"])
def test_changelists_render_with_filters_and_search(staff, dead_delivery, model):
    response = staff.get(f"/admin/events/{model}/", {"q": "order-5"})
    assert response.status_code == 200


def test_delivery_page_shows_its_history(staff, dead_delivery):
    response = staff.get(f"/admin/events/delivery/{dead_delivery.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Attempts and redrives" in html
    assert "HTTP 503: down" in html


def test_admin_redrive_action(staff, dead_delivery):
    response = staff.post(
        "/admin/events/delivery/", {"action": "redrive", "_selected_action": [dead_delivery.pk]}, follow=True
    )
    assert response.status_code == 200
    dead_delivery.refresh_from_db()
    assert dead_delivery.status == "pending"
    assert dead_delivery.redrive_count == 1


def test_audit_entries_cannot_be_deleted_in_the_admin(staff, dead_delivery):
    from supplychain.events.models import AuditEntry

    entry = AuditEntry.objects.first()
    assert staff.get(f"/admin/events/auditentry/{entry.pk}/delete/").status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_dashboard_summarises_dead_letters_and_the_last_hour(staff, dead_delivery):
    response = staff.get("/admin/events/subscription/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "flaky" in html
    assert "<svg" in html
    assert staff.get("/admin/").content.decode().count("Operations dashboard") == 1


def test_metrics_need_a_token_or_staff():
    assert Client().get("/metrics").status_code == 401
    with override_settings(METRICS_TOKEN="scrape-me"):
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_metrics_report_backlog_dead_letters_queues_and_published_counts(staff, dead_delivery):
    services.publish(THING, {"sku": "ham", "quantity": 1})  # not yet relayed
    body = staff.get("/metrics").content.decode()
    assert 'supplychain_deliveries{status="dead",subscription="flaky"} 1.0' in body
    assert 'supplychain_dead_letters{subscription="flaky"} 1.0' in body
    assert "supplychain_outbox_unrelayed 1.0" in body
    assert 'supplychain_queue_depth{queue="events"}' in body
    assert "supplychain_broker_up 1.0" in body

    # a committed publish moving supplychain_events_published_total: tests/events/test_guards.py
    # (test_a_committed_publish_moves_the_published_counter_and_a_rolled_back_one_does_not)


def test_audit_log_shows_times_to_the_second(staff, dead_delivery):
    from supplychain.events.models import AuditEntry

    when = timezone.localtime(AuditEntry.objects.first().occurred_at)
    html = staff.get("/admin/events/auditentry/").content.decode()
    assert when.strftime("%H:%M:%S") in html


def test_event_payload_is_a_table_not_raw_json(staff, dead_delivery):
    page = staff.get(f"/admin/events/outboxevent/{dead_delivery.event_id}/change/").content.decode()
    assert "&quot;sku&quot;" not in page and '"sku":' not in page
    assert re.search(r"<th>\s*sku\s*</th>\s*<td>\s*ham\s*</td>", page)


def test_celery_result_models_are_read_only(staff):
    from django_celery_results.models import TaskResult

    result = TaskResult.objects.create(task_id="abc-123", status="SUCCESS", task_name="stock.expire_batches")
    assert staff.get("/admin/django_celery_results/taskresult/").status_code == 200
    assert staff.get("/admin/django_celery_results/taskresult/add/").status_code == 403
    assert staff.get(f"/admin/django_celery_results/taskresult/{result.pk}/delete/").status_code == 403
    page = staff.get(f"/admin/django_celery_results/taskresult/{result.pk}/change/").content.decode()
    assert "abc-123" in page and 'name="_save"' not in page
    assert staff.get("/admin/django_celery_results/groupresult/add/").status_code == 403


def test_dashboard_chart_has_a_time_axis_labels_and_a_value_scale(staff, dead_delivery):
    from supplychain.events.models import AuditEntry

    now = timezone.localtime(AuditEntry.objects.first().occurred_at)
    html = staff.get("/admin/events/subscription/dashboard/").content.decode()
    chart = html[html.index('id="events-chart"') :]
    chart = chart[: chart.index("</svg>")]
    labels = re.findall(r"<text[^>]*>([^<]+)</text>", chart)
    assert now.strftime("%H:%M") in labels  # the x axis ends at the current minute
    assert (now - timedelta(minutes=30)).strftime("%H:%M") in labels  # and is labelled along the way
    assert "events per minute" in labels and "time" in " ".join(labels)  # axis titles
    assert "0" in labels and "1" in labels  # the y scale, up to the peak
