"""``--xcomsim-backend`` brings the contract suite along; capabilities come from the backend class."""

from __future__ import annotations

import pytest

from xcomsim.conformance import ContractDeclarationError, declared


@pytest.mark.parametrize(
    ("options", "collected"),
    [
        (["--xcomsim-backend=xcomsim.mutants.xcom.OverwriteAllowedXCom"], True),
        (["--xcomsim-backend=xcomsim.mutants.xcom.OverwriteAllowedXCom", "--xcomsim-conformance=off"], False),
        ([], False),
        (["--xcomsim-conformance=on"], True),
    ],
)
def test_the_suite_is_collected_when_a_backend_is_named(clean_pytester, options, collected):
    clean_pytester.makepyfile(test_x="def test_x(): pass")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--collect-only", "-q", *options)
    listed = "TestBackendContract::test_backend_agrees_with_the_model" in result.stdout.str()
    assert listed is collected, result.stdout.str()[-2000:]


def test_bad_conformance_mode_is_a_usage_error(clean_pytester):
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-conformance=sometimes")
    result.stderr.fnmatch_lines(["*xcomsim: --xcomsim-conformance='sometimes'; use auto, on or off*"])


@pytest.mark.parametrize(
    ("contract", "message"),
    [
        ({"offlaod": ({}, 1)}, r"unknown entries \['offlaod'\]"),
        ({"offload": ({}, -1)}, r"\['offload'\] must be \(config dict, threshold >= 0"),
        ({"push_once": "yes"}, r"\['push_once'\] must be True or False"),
        ({"scoping": "yes"}, r"\['scoping'\] must be one of \['xcomsim-policy'\]"),
        ({"claim_store": "no_such.module:f"}, r"\['claim_store'\] = 'no_such.module:f' cannot be loaded"),
        ({"claim_store": "no_colon"}, r"must be 'package.module:factory'"),
        ([], r"must be a dict"),
    ],
)
def test_malformed_declarations_name_the_entry(contract, message):
    backend = type("MyXCom", (), {"xcomsim_contract": contract})
    with pytest.raises(ContractDeclarationError, match=message):
        declared(backend)


def test_reference_declares_everything():
    from xcomsim.backend import ExclusiveXCom

    caps = declared(ExclusiveXCom)
    assert caps.offload == ({"xcomsim.xcom_objectstorage_threshold": 1000}, 1000)
    assert caps.scoping == "xcomsim-policy" and callable(caps.claim_store)


TINY_THRESHOLDS = '''
import json
import uuid

import boto3
import pytest
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

from xcomsim.conformance import XComBackendContract


class _Tiny(BaseXCom):
    THRESHOLD = 0

    @classmethod
    def serialize_value(cls, value, **kwargs):
        data = json.dumps(serialize(value), ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) < cls.THRESHOLD:
            return {"inline": serialize(value)}
        name = uuid.uuid4().hex
        boto3.client("s3").put_object(Bucket="xcomsim", Key=f"tiny/{name}", Body=data)
        return {"object": name}

    @staticmethod
    def deserialize_value(result):
        if "object" in result.value:
            body = boto3.client("s3").get_object(Bucket="xcomsim", Key=f"tiny/{result.value['object']}")["Body"]
            return deserialize(json.loads(body.read()))
        return deserialize(result.value["inline"])


class OneByte(_Tiny):
    THRESHOLD = 1
    xcomsim_contract = {"offload": ({}, 1)}


class TwoBytes(_Tiny):
    THRESHOLD = 2
    xcomsim_contract = {"offload": ({}, 2)}


@pytest.mark.xcomsim(backend="test_tiny.OneByte")
class TestOneByte(XComBackendContract):
    pass


@pytest.mark.xcomsim(backend="test_tiny.TwoBytes")
class TestTwoBytes(XComBackendContract):
    pass
'''


def test_thresholds_of_one_and_two_bytes_are_probed_and_kept(clean_pytester, monkeypatch):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", f"{root}:{root / 'tests'}")  # this checkout's xcomsim
    clean_pytester.makepyfile(test_tiny=TINY_THRESHOLDS)
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-profile=ci", "-p", "no:randomly",
                                                 "-k", "offload_at or declared_threshold or crash_at")  # fmt: skip
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*verdict for test_tiny.OneByte:", "  discovered: offloads every value to s3://xcomsim/tiny/",
                                 "*offload-threshold*kept", "*no-dangling-reference*kept"])  # fmt: skip
    result.stdout.fnmatch_lines(["*verdict for test_tiny.TwoBytes:", "  discovered: offloads >= 2 B to s3://xcomsim/tiny/; inline otherwise",
                                 "*offload-threshold*kept", "*no-dangling-reference*kept"])  # fmt: skip
