"""The synthetic banner catalog: 30 banners titled in Korean across the five categories,
with schedules (some start or end mid-period), targeting and a few pinned."""
from __future__ import annotations

from recommender.domain import Banner

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


def make_banners(period_start: float, period_end: float) -> list[Banner]:
    """Banners whose windows are placed inside [period_start, period_end) by fraction.

    Windows snap to midnight KST so a banner 'starts on a day', as operators schedule them.
    """
    span = period_end - period_start
    day = 86400.0

    def at(frac):
        if frac is None:
            return None
        return period_start + round(frac * span / day) * day

    out = []
    for bid, cat, title, tags, s, e, target, pinned, prio in TEMPLATES:
        start = at(s)
        end = at(e)
        if start is not None and end is not None and end <= start:
            end = start + day
        out.append(Banner(bid, cat, title, start, end, {k: tuple(v) for k, v in target.items()}, pinned, prio, tuple(tags)))
    return out
