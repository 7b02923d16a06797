"""The theory's refusals and reasons name what the user passed, in the user's terms."""

import pytest

import mi_margin as mm


@pytest.mark.parametrize("op", ["multiply", "divide"])
def test_multiplication_names_the_group_of_even_order_not_a_modulus(op):
    """Z_7^* has order 6; the reason said "p=6 is not an odd prime" of a task with p=7."""
    pred = mm.theory.max_margin(mm.ModularOperation(p=7, op=op))
    assert not pred.applies and pred.gamma is None
    assert pred.reasons[0].startswith(f"{op} mod 7 composes in the group Z_7* ≅ Z_6")
    assert "order 6 is not an odd prime" in pred.reasons[0]
    assert not any("p=6" in why for why in pred.reasons)
    with pytest.raises(mm.MiMarginError, match=r"Z_7\* ≅ Z_6"):
        mm.theory.certificate(mm.ModularOperation(p=7, op=op))


def test_subtraction_is_still_covered():
    assert mm.theory.max_margin(mm.ModularOperation(p=7, op="subtract")).gamma is not None


def test_a_model_passed_for_a_task_is_named_by_its_type_only():
    """The whole module repr (tens of lines) was in the message."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(mm.ModularAddition(p=7), d_mlp=8))
    for call, what in ((mm.theory.max_margin, "max_margin"), (mm.theory.certificate,
                                                              "certificate")):
        with pytest.raises(mm.MiMarginError) as info:
            call(model)
        text = str(info.value)
        assert text.startswith(f"{what} takes a task") and text.endswith("got a HookedMLP")
        assert "\n" not in text


def test_a_group_name_is_answered_with_the_task_to_make():
    with pytest.raises(mm.MiMarginError, match=r"^certificate takes a task, got the string 'S4': "
                                               r"pass mm\.GroupComposition\('S4'\)"):
        mm.theory.certificate("S4")
    with pytest.raises(mm.MiMarginError, match=r"max_margin takes a task.*'modular_addition'.*"
                                               r"mm\.ModularAddition\(p=113\)"):
        mm.theory.max_margin("modular_addition")
