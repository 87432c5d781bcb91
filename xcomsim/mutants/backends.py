"""The reference backend with one broken claim store each: claim mutants the kit runs by backend path."""

from __future__ import annotations

from xcomsim.backend.xcom import ExclusiveXCom


def _with_claims(factory: str) -> dict[str, object]:
    return {**ExclusiveXCom.xcomsim_contract, "claim_store": f"xcomsim.mutants.claims:{factory}"}


class CheckThenActClaimsXCom(ExclusiveXCom):
    """Claims by SELECT, then UPDATE in a second transaction (``CheckThenActClaimStore``)."""

    xcomsim_contract = _with_claims("check_then_act_store")


class RedisGetThenSetClaimsXCom(ExclusiveXCom):
    """Claims by Redis GET, then SET (``RedisGetThenSetClaimStore``)."""

    xcomsim_contract = _with_claims("redis_get_then_set_store")


class NoLeaseClaimsXCom(ExclusiveXCom):
    """Claims that never expire (``NoLeaseClaimStore``): a crashed claimant's claim is lost for good."""

    xcomsim_contract = _with_claims("no_lease_store")
