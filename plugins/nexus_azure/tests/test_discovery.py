"""Discovery against the fake Azure through the unmodified SDK: pages, filters, the ARM
fallback, throttling, 401/403 and the breaker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azurebed import make_arm

from nexus_azure.arm import GRAPH_API
from nexus_azure.discovery import Filters, find, kql
from nexus_azure.errors import AzureError
from nexus_azure.testing import FakeAzure, FakeVM, TestCredential


def names(vms):  # type: ignore[no-untyped-def]
    return [v.name for v in vms]


def test_every_page_of_resource_graph_is_read(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(fake, certificate)
    vms = find(arm, arm.config, Filters(), 0)
    assert names(vms) == ["db-1", "web-1", "web-2", "web-old", "win-1"]
    # 5 rows in pages of 2: three requests, the later two with the skip token of the one before
    tokens = [q["options"].get("$skipToken") for q in fake.graph_queries]
    assert tokens == [None, "2", "4"]
    assert all(q["subscriptions"] == ["sub-1"] for q in fake.graph_queries)
    web1 = vms[1]
    assert web1.id.endswith("/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/web-1")
    assert (web1.private_ips, web1.public_ips, web1.zones) == (("10.0.0.4",), ("20.1.1.1",), ("1",))
    assert (web1.size, web1.os, web1.power_state, web1.location) == (
        "Standard_B2s",
        "Linux",
        "running",
        "westeurope",
    )
    assert web1.tags == {"env": "prod", "role": "web"}
    assert fake.api_versions["graph"] == {GRAPH_API}


def test_filters_narrow_the_query_and_the_answer(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(fake, certificate)
    f = Filters.parse(
        {
            "tags": {"env": "prod"},
            "name": r"^web-",
            "power_state": "running",
            "location": "westeurope",
            "resource_group": "RG-APP",
        }
    )
    assert names(find(arm, arm.config, f, 0)) == ["web-1", "web-2"]
    query = fake.graph_queries[0]["query"]
    assert "tags['env'] =~ 'prod'" in query and "resourceGroup in~ ('RG-APP')" in query
    assert "location in~ ('westeurope')" in query
    assert names(find(arm, arm.config, Filters.parse({"os": "windows"}), 0)) == ["win-1"]
    assert names(find(arm, arm.config, Filters.parse({"tags": {"role": None}}), 0)) == [
        "db-1",
        "web-1",
        "web-2",
        "web-old",
    ]


def test_kql_quotes_values():
    q = kql(Filters.parse({"tags": {"owner": "o'brien"}}))
    assert "tags['owner'] =~ 'o\\'brien'" in q


def test_bad_filter_values_are_reported():
    from nexus_azure.discovery import FilterError

    with pytest.raises(FilterError, match="not a valid regular expression"):
        Filters.parse({"name": "("})
    with pytest.raises(FilterError, match="tags= takes a dict"):
        Filters.parse({"tags": ["env"]})
    with pytest.raises(FilterError, match="needs resource_group"):
        Filters.parse({"scale_set": "ss"})


def test_vms_the_graph_has_not_seen_come_from_arm(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    fake.vms.append(FakeVM("web-new", tags={"env": "prod"}, in_graph=False, created=datetime.now(UTC)))
    fake.vms.append(FakeVM("web-ghost", tags={"env": "prod"}, in_graph=False))  # created days ago: not added
    arm = make_arm(fake, certificate)
    vms = find(arm, arm.config, Filters.parse({"name": "^web-"}), 30)
    assert names(vms) == ["web-1", "web-2", "web-new", "web-old"]
    new = vms[2]
    assert (new.via, new.power_state, new.size) == ("arm", "running", "Standard_B2s")
    # the ARM list was paged too (6 standalone VMs, pages of 2)
    assert fake.count("GET", "/providers/Microsoft.Compute/virtualMachines") == 4


def test_throttling_is_waited_out(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    fake.throttle, fake.retry_after = 2, 0
    arm = make_arm(fake, certificate)
    assert len(find(arm, arm.config, Filters(), 0)) == 5
    assert fake.throttled == 2


def test_throttling_past_every_attempt_opens_the_breaker(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    fake.throttle, fake.retry_after = 1000, 0
    arm = make_arm(fake, certificate, azure_api_attempts=1)
    for _ in range(3):
        with pytest.raises(AzureError) as info:
            find(arm, arm.config, Filters(), 0)
        assert "429" in info.value.headline and info.value.exit_code == 3
    seen = fake.throttled
    with pytest.raises(AzureError, match="failed repeatedly") as info:
        find(arm, arm.config, Filters(), 0)
    assert fake.throttled == seen  # the open breaker sent nothing
    assert info.value.exit_code == 3


def test_a_rejected_token_is_a_configuration_error(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(fake, certificate, cred=TestCredential("expired"))
    with pytest.raises(AzureError) as info:
        find(arm, arm.config, Filters(), 0)
    assert "401" in info.value.headline and "InvalidAuthenticationToken" in info.value.headline
    assert info.value.exit_code == 2


def test_a_forbidden_subscription_says_which_role(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    fake.forbidden.add("sub-1")
    arm = make_arm(fake, certificate)
    with pytest.raises(AzureError) as info:
        find(arm, arm.config, Filters(), 30)
    assert "403 AuthorizationFailed" in info.value.headline
    assert "Reader" in info.value.hint and info.value.exit_code == 2


def test_no_subscription_is_a_configuration_error(fake: FakeAzure, certificate):  # type: ignore[no-untyped-def]
    arm = make_arm(fake, certificate, azure_subscription=None)
    with pytest.raises(AzureError, match="no Azure subscription is set") as info:
        find(arm, arm.config, Filters(), 0)
    assert info.value.exit_code == 2
