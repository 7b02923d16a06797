"""The shipped population summaries: every card is what its table shows."""

import json
import re

import pytest

import mi_margin as mm
from mi_margin.studies.ship import card
from mi_margin.zoo.recipes import POPULATIONS


@pytest.mark.parametrize("name", mm.zoo.populations.names())
def test_a_shipped_population_card_is_regenerated_from_its_table(name):
    """The card a user reads is the one computed from the table `mm.zoo.population` loads."""
    table = mm.zoo.population(name)
    pop = POPULATIONS[name]
    assert table["seed"].is_unique and table["seed"].between(0, pop.seeds - 1).all()
    shipped = mm.zoo.populations.population_card(name)
    rule = json.loads(re.search(r"stopped by the rule (\{.*?\})", shipped).group(1))
    assert card(pop, table, rule) + "\n" == shipped


def test_an_unknown_population_is_refused():
    with pytest.raises(mm.MiMarginError, match="no population 'nope'"):
        mm.zoo.population("nope")
