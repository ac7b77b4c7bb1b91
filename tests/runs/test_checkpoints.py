"""hypothesis: checkpoint JSON keeps inf and nan and stays strict JSON."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmcli.runs.checkpoints import from_json_safe, to_json_safe

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text("abc", max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(json_values)
def test_checkpoint_json_keeps_inf_and_nan_and_stays_strict(value: object) -> None:
    text = json.dumps(to_json_safe(value), allow_nan=False)  # strict JSON or it raises
    back = from_json_safe(json.loads(text))

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b and type(a) is type(b)

    assert same(value, back)
