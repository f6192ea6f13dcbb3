"""Staff insights: revenue, partner margin and usage by partner, by task and by month; staff only."""

import re

import pytest

from tests.conftest import make_user
from tests.portal.test_billing_pages import invoiced, last_period, make_plan, signed_in, text
from verticals.billing import services
from verticals.billing.analytics import month_label
from verticals.billing.models import FEE


@pytest.mark.django_db
def test_insights_are_staff_only(world_a):
    assert signed_in(world_a.owner).get("/insights/").status_code == 404
    assert signed_in(world_a.partner_admin).get("/insights/").status_code == 404
    assert 'data-testid="nav-insights"' not in text(signed_in(world_a.owner).get("/projects/"))
    staff = make_user("ops@example.com")
    staff.is_staff = True
    staff.save()
    page = signed_in(staff).get("/insights/")
    assert page.status_code == 200 and "No usage or revenue in these months" in text(page)


@pytest.mark.django_db
def test_insights_show_revenue_margin_and_usage_by_partner_task_and_month(world_a, world_b):
    plan = make_plan("starter", fee="30", prices={"inference.requests": ("100", "0.01")})
    services.set_wholesale(world_a.partner, plan, FEE, "20")
    invoiced(world_a, plan, requests=150, task="sentiment")
    invoiced(world_b, plan, requests=300, task="image-classification")
    staff = make_user("ops@example.com")
    staff.is_staff = True
    staff.save()
    page = signed_in(staff).get("/insights/?months=3")
    assert page.status_code == 200
    body = text(page)
    a = re.search(rf'data-testid="partner-{world_a.partner.public_id}".*?</tr>', body).group(0)
    # The operator billed partner A 20.50 (wholesale); A billed its tenant 30.50 and keeps 10.00.
    assert (
        "Partner A" in a
        and "20.50 USD" in a
        and "30.50 USD" in a
        and "10.00 USD" in a
        and "Predictions 150" in a
    )
    b = re.search(rf'data-testid="partner-{world_b.partner.public_id}".*?</tr>', body).group(0)
    assert "32.00 USD" in b and "Predictions 300" in b
    task = re.search(r'data-testid="task-image-classification".*?</tr>', body).group(0)
    assert (
        "2.00 USD" in task and "Predictions 300" in task
    )  # 200 requests over the included 100, at 0.01
    assert "0.50 USD" in re.search(r'data-testid="task-sentiment".*?</tr>', body).group(0)
    assert "60.00 USD" in re.search(r'data-testid="task-\(plan fees\)".*?</tr>', body).group(0)
    month = month_label(last_period()[0].date())
    row = re.search(
        rf"<tr><td>{month}</td>.*?</tr>",
        re.search(r'data-testid="growth".*?</table>', body).group(0),
    ).group(0)
    assert (
        "60.00 USD" in row and "62.50 USD" in row
    )  # MRR of both tenants; revenue of both invoices
    assert 'data-testid="chart-by-partner"' in body and 'data-testid="chart-by-task"' in body
    assert 'data-testid="chart-mrr-USD"' in body and 'data-testid="nav-insights"' in body
