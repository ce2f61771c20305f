"""Eligibility: the window and targeting rules of the banners contract, as properties."""
from hypothesis import given
from hypothesis import strategies as st

from recommender.domain import Banner
from recommender.eligibility import eligible_banners, is_eligible

ROLES = ["teacher", "principal", "admin_officer", "support_staff", "unknown-role"]
LEVELS = ["elementary", "middle", "high", "office", ""]
times = st.integers(0, 10_000).map(float)
profiles = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "school_level": st.sampled_from(LEVELS),
                                  "region": st.sampled_from(["Suwon", "Paju", ""])})


@st.composite
def banners(draw, i=None):
    start = draw(st.none() | times)
    end = draw(st.none() | times)
    if start is not None and end is not None and end <= start:
        end = start + 1
    target = {}
    for name, values in (("role", ROLES), ("school_level", LEVELS), ("region", ["Suwon", "Paju"])):
        target[name] = tuple(draw(st.lists(st.sampled_from(values), max_size=2, unique=True)))
    bid = draw(st.from_regex(r"b[0-9]{1,6}", fullmatch=True))
    return Banner(bid, "policy", start=start, end=end, target=target)


@given(st.none() | times, st.none() | times, times, profiles)
def test_untargeted_banner_is_eligible_exactly_inside_its_window(start, end, t, profile):
    if start is not None and end is not None and end <= start:
        end = start + 1
    b = Banner("b", "info", start=start, end=end)
    inside = (start is None or t >= start) and (end is None or t < end)
    assert is_eligible(b, profile, t) == inside


@given(banners(), profiles, times)
def test_banner_targeted_at_roles_is_never_eligible_for_another_role(b, profile, t):
    roles = b.target.get("role", ())
    if roles and profile["role"] not in roles:
        assert not is_eligible(b, profile, t)


@given(banners(), profiles, times)
def test_empty_target_lists_mean_everyone(b, profile, t):
    open_b = Banner(b.banner_id, b.category, start=b.start, end=b.end, target={k: () for k in b.target})
    assert is_eligible(open_b, profile, t) == is_eligible(Banner(b.banner_id, b.category, start=b.start, end=b.end), profile, t)
    if is_eligible(b, profile, t):
        assert is_eligible(open_b, profile, t)


@given(st.lists(banners(), max_size=12, unique_by=lambda b: b.banner_id), profiles, times, st.randoms())
def test_result_does_not_depend_on_catalog_order(catalog, profile, t, rnd):
    shuffled = list(catalog)
    rnd.shuffle(shuffled)
    a = {b.banner_id for b in eligible_banners(catalog, profile, t)}
    b = {b.banner_id for b in eligible_banners(shuffled, profile, t)}
    assert a == b
