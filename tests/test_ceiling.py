"""The ceiling of personalisation (simulator.ceiling): between what knowing the population
gives and what knowing everything gives, and closer to the latter with more evidence."""
import numpy as np

from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import GroundTruth
from simulator.ceiling import ceiling_scores
from simulator.quality import HeldOutRequests

DAY = 86400.0


def test_the_ceiling_lies_between_the_attribute_oracle_and_the_oracle(small_province):
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    staff, truth = load_staff(small_province / "staff.csv"), GroundTruth.load(small_province)
    last_day = float(log.ts.max()) - (float(log.ts.max()) + 9 * 3600) % DAY
    held = HeldOutRequests(truth, staff, catalog, log, since=last_day, max_requests=3000, seed=0)
    rep = held.report({})
    values = []
    for days in (0.0, 2.0):  # no evidence, then every earlier day
        values.append(held.value_of_scores(ceiling_scores(held, last_day - days * DAY, last_day), 3))
    # without evidence it ranks by the population part and the prior: the attribute oracle's
    # order (the posterior mean attractiveness is monotone in the known logit)
    assert np.isclose(values[0], rep.values["attribute_oracle"], rtol=1e-6)
    assert rep.values["attribute_oracle"] < values[1] < rep.values["oracle"]
