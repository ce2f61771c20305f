"""Staff of the synthetic province: roles, school levels and the 25 district offices.

Shares are plausible for a Korean provincial office of education (documented in the
docs/simulator.md): most staff are classroom teachers, office-level staff are mostly education
specialists and admin officers, and district sizes follow population.
"""
from __future__ import annotations

import numpy as np

ROLES = ("teacher", "head_teacher", "vice_principal", "principal", "education_specialist", "admin_officer", "support_staff")
ROLE_SHARES = (0.68, 0.08, 0.025, 0.025, 0.03, 0.09, 0.07)

LEVELS = ("kindergarten", "elementary", "middle", "high", "special", "office")
SCHOOL_LEVEL_SHARES = (0.08, 0.40, 0.22, 0.25, 0.05, 0.0)  # for staff working in schools
OFFICE_SHARE_BY_ROLE = {"education_specialist": 0.8, "admin_officer": 0.35, "support_staff": 0.1}

REGIONS = (
    "Suwon", "Seongnam", "Goyang", "Yongin", "Bucheon", "Ansan", "Hwaseong-Osan", "Anyang-Gwacheon",
    "Pyeongtaek", "Uijeongbu", "Siheung", "Paju", "Gimpo", "Gwangmyeong", "Gwangju-Hanam",
    "Gunpo-Uiwang", "Icheon", "Yangpyeong", "Guri-Namyangju", "Dongducheon-Yangju", "Anseong",
    "Yeoju", "Pocheon", "Gapyeong", "Yeoncheon",
)
REGION_WEIGHTS = (
    9.0, 7.0, 8.0, 9.0, 6.0, 5.0, 9.0, 5.0, 4.5, 3.5, 4.5, 4.0, 4.0, 2.2, 4.0,
    2.5, 1.6, 0.8, 6.0, 2.2, 1.2, 0.9, 1.1, 0.5, 0.4,
)


def sample_population(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes (indices into ROLES, LEVELS, REGIONS) for n staff members."""
    role = rng.choice(len(ROLES), size=n, p=np.asarray(ROLE_SHARES) / sum(ROLE_SHARES))
    school_p = np.asarray(SCHOOL_LEVEL_SHARES) / sum(SCHOOL_LEVEL_SHARES)
    level = rng.choice(len(LEVELS), size=n, p=school_p)
    office = LEVELS.index("office")
    for rname, share in OFFICE_SHARE_BY_ROLE.items():
        mask = role == ROLES.index(rname)
        level[mask & (rng.random(n) < share)] = office
    region_p = np.asarray(REGION_WEIGHTS) / sum(REGION_WEIGHTS)
    region = rng.choice(len(REGIONS), size=n, p=region_p)
    return role.astype(np.int64), level.astype(np.int64), region.astype(np.int64)
