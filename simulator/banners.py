"""The synthetic banner catalog: 30 hand-written banners titled in Korean across the five
categories, with schedules (some start or end mid-period), targeting and a few pinned; and,
for catalogs of another size, a subset of them or more banners generated from the seed."""
from __future__ import annotations

import numpy as np

from recommender.domain import CATEGORIES, Banner

from .population import LEVELS, REGIONS, ROLES

# (id, category, title, tags, start as a fraction of the period or None, end fraction or None,
#  target, pinned, priority)
TEMPLATES = [
    ("b-policy-01", "policy", "2026 경기교육 주요업무 계획 안내", ["plan"], None, 0.3, {}, True, 10),
    ("b-policy-02", "policy", "교원 업무경감 추진 방안", ["workload"], None, None, {"role": ["teacher", "head_teacher"]}, False, 5),
    ("b-policy-03", "policy", "학교폭력 예방 및 대응 지침 개정", ["safety"], None, None, {}, False, 4),
    ("b-policy-04", "policy", "늘봄학교 운영 확대 안내", ["care"], None, None, {"school_level": ["elementary"]}, False, 3),
    ("b-policy-05", "policy", "AI 디지털교과서 도입 정책 설명", ["ai", "digital"], 0.3, None, {}, False, 6),
    ("b-policy-06", "policy", "공무원 복무 및 보안 수칙 강화", ["security"], None, 0.7, {"role": ["admin_officer", "education_specialist"]}, False, 2),
    ("b-info-01", "info", "수업 나눔 우수사례 모음집", ["teaching"], None, None, {}, False, 2),
    ("b-info-02", "info", "생성형 AI 활용 수업 연수 자료", ["ai", "digital"], None, None, {}, False, 3),
    ("b-info-03", "info", "학부모 상담 가이드북", ["counsel"], None, None, {"role": ["teacher", "head_teacher"]}, False, 1),
    ("b-info-04", "info", "교육활동 보호 매뉴얼", ["rights"], None, None, {}, False, 2),
    ("b-info-05", "info", "회계 및 예산 집행 실무 안내", ["finance"], None, None, {"role": ["admin_officer"]}, False, 1),
    ("b-info-06", "info", "유아 놀이중심 교육과정 자료", ["curriculum"], None, None, {"school_level": ["kindergarten"]}, False, 1),
    ("b-info-07", "info", "고교학점제 운영 FAQ", ["curriculum"], 0.2, None, {"school_level": ["high"]}, False, 2),
    ("b-custom-01", "custom", "신규 교사 멘토링 프로그램", ["mentoring"], None, None, {"role": ["teacher"]}, False, 1),
    ("b-custom-02", "custom", "교장·교감 리더십 아카데미", ["leadership"], None, None, {"role": ["principal", "vice_principal"]}, False, 2),
    ("b-custom-03", "custom", "수원 지역 교원 연구회 모집", ["community"], None, None, {"region": ["Suwon"]}, False, 1),
    ("b-custom-04", "custom", "특수교육 보조인력 연수", ["special"], None, None, {"school_level": ["special"]}, False, 1),
    ("b-custom-05", "custom", "교육행정직 역량강화 과정", ["training"], 0.5, None, {"role": ["admin_officer", "support_staff"]}, False, 1),
    ("b-custom-06", "custom", "중학교 진로교육 담당자 협의회", ["career"], None, None, {"school_level": ["middle"]}, False, 1),
    ("b-survey-01", "survey", "교직원 업무 만족도 조사", ["survey"], None, None, {}, False, 3),
    ("b-survey-02", "survey", "디지털 기기 활용 실태 조사", ["digital"], 0.25, None, {}, False, 2),
    ("b-survey-03", "survey", "초등 돌봄 수요 조사", ["care"], None, 0.6, {"school_level": ["elementary"]}, False, 2),
    ("b-survey-04", "survey", "연수 프로그램 수요 조사", ["training"], 0.55, None, {}, False, 1),
    ("b-survey-05", "survey", "행정업무 개선 의견 수렴", ["workload"], None, None, {"role": ["admin_officer", "education_specialist"]}, False, 1),
    ("b-event-01", "event", "스승의 날 감사 메시지 이벤트", ["event"], None, None, {}, False, 2),
    ("b-event-02", "event", "교직원 독서 챌린지 참여", ["reading"], 0.1, None, {}, False, 1),
    ("b-event-03", "event", "에듀테크 박람회 사전등록", ["ai", "digital"], 0.6, 0.8, {}, True, 8),
    ("b-event-04", "event", "교직원 건강걷기 캠페인", ["health"], None, None, {}, False, 1),
    ("b-event-05", "event", "우리 학교 자랑 사진 공모전", ["contest"], 0.65, None, {}, False, 1),
    ("b-event-06", "event", "고양 지역 교육 한마당 축제", ["community"], None, None, {"region": ["Goyang"]}, False, 1),
]


def make_banners(period_start: float, period_end: float, n_banners: int = len(TEMPLATES), seed: int = 0) -> list[Banner]:
    """``n_banners`` banners whose windows are placed inside [period_start, period_end) by fraction.

    Windows snap to midnight KST so a banner 'starts on a day', as operators schedule them.
    With the 30 templates' count the catalog is the templates; with fewer, the first
    templates of each category in turn (in catalog order); with more, the templates and
    banners generated from ``seed`` (``synthetic_templates``).
    """
    if n_banners < 1:
        raise ValueError("n_banners must be at least 1")
    if n_banners <= len(TEMPLATES):
        templates = _subset(n_banners)
    else:
        templates = TEMPLATES + synthetic_templates(n_banners - len(TEMPLATES), seed)
    span = period_end - period_start
    day = 86400.0

    def at(frac):
        if frac is None:
            return None
        return period_start + round(frac * span / day) * day

    out = []
    for bid, cat, title, tags, s, e, target, pinned, prio in templates:
        start = at(s)
        end = at(e)
        if start is not None and end is not None and end <= start:
            end = start + day
        out.append(Banner(bid, cat, title, start, end, {k: tuple(v) for k, v in target.items()}, pinned, prio, tuple(tags)))
    return out


def _subset(n: int) -> list[tuple]:
    """The first ``n`` templates taken one category at a time (so that every category keeps
    its share), in catalog order."""
    if n == len(TEMPLATES):
        return list(TEMPLATES)
    by_cat = [[i for i, t in enumerate(TEMPLATES) if t[1] == c] for c in CATEGORIES]
    picked: list[int] = []
    for k in range(max(len(v) for v in by_cat)):
        picked.extend(v[k] for v in by_cat if k < len(v))
    return [TEMPLATES[i] for i in sorted(picked[:n])]


# Title parts of generated banners, per category: a topic and a kind of notice.
_TOPICS = ("디지털 전환", "학생 안전", "교원 연수", "기초학력", "독서 교육", "생태 환경", "진로 진학", "학부모 소통",
           "마음 건강", "다문화 교육", "예술 교육", "체육 활동", "민주 시민", "인공지능", "업무 혁신", "지역 연계")
_KINDS = {"policy": "추진 계획 안내", "info": "참고 자료", "custom": "참여자 모집", "survey": "의견 조사",
          "event": "행사 안내"}
# tags of generated banners: most are the templates' own, a few are new
_NEW_TAGS = ("environment", "arts", "sports", "library", "wellbeing", "multicultural")


def synthetic_templates(n: int, seed: int) -> list[tuple]:
    """``n`` generated banner templates (as TEMPLATES), the same for the same ``seed``:
    categories in turn, tags drawn from the templates' tags and a few new ones, about a
    third targeted at a role, a school level or a region, about 40% starting mid-period
    and about 15% ending before the period does; none pinned."""
    rng = np.random.default_rng([seed, 0xBA])
    vocab = sorted({tag for t in TEMPLATES for tag in t[3]}) + list(_NEW_TAGS)
    out = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        topic = _TOPICS[int(rng.integers(len(_TOPICS)))]
        tags = sorted({str(x) for x in rng.choice(vocab, size=int(rng.integers(1, 3)), replace=False)})
        start = round(float(rng.uniform(0.05, 0.85)), 2) if rng.random() < 0.4 else None
        end = round(float(rng.uniform((start or 0.0) + 0.1, 1.0)), 2) if rng.random() < 0.15 else None
        target: dict[str, list[str]] = {}
        kind = rng.random()
        if kind < 0.15:
            target["role"] = sorted(str(x) for x in rng.choice(ROLES, size=int(rng.integers(1, 3)), replace=False))
        elif kind < 0.27:
            target["school_level"] = [str(rng.choice(LEVELS))]
        elif kind < 0.33:
            target["region"] = [str(rng.choice(REGIONS))]
        prio = int(rng.integers(1, 4))
        out.append((f"b-{cat}-{len(TEMPLATES) + i + 1:02d}", cat, f"{topic} {_KINDS[cat]}", tags, start, end, target,
                    False, prio))
    return out
