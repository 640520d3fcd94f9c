"""The ten categories (类) of a personnel file and their sub-classes."""

from __future__ import annotations

CATEGORIES: dict[str, str] = {
    "1": "履历类",
    "2": "自传和思想类",
    "3": "考核鉴定类",
    "4": "学历学位、专业技术职务、学术评鉴和教育培训类",
    "4-1": "学历学位",
    "4-2": "专业技术职务",
    "4-3": "学术评鉴",
    "4-4": "教育培训",
    "5": "政审、审计和审核类",
    "6": "党、团类",
    "7": "表彰奖励类",
    "8": "违规违纪违法处理处分类",
    "9": "工资、任免、出国和会议代表类",
    "9-1": "工资",
    "9-2": "任免",
    "9-3": "出国(境)",
    "9-4": "会议代表",
    "10": "其他可供组织参考的材料",
}

# Classes 4 and 9 are filed only under their sub-classes.
_SPLIT = {"4", "9"}


def is_valid_class_code(code: str) -> bool:
    """True for a code a material can be filed under: `1`..`10` or `4-1`..`4-4`, `9-1`..`9-4`."""
    return code in CATEGORIES and code not in _SPLIT


def category_name(code: str) -> str:
    return CATEGORIES[code]
