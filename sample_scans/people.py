"""Realistic synthetic people and the wording of their materials (deterministic from an RNG)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from catalog.idnumber import check_digit

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥建国文辉力明永健世广志义兴良海山仁波宁"
    "贵福生龙元全国胜学祥才发武新利清飞彬富顺信子杰涛昌成康星光天达安岩中茂进林有坚和彪博诚先敬震振壮会思"
    "群豪心邦承乐绍功松善厚庆磊民友裕河哲江超浩亮政谦亨奇固之轮翰朗伯宏言若鸣朋斌梁栋维启克伦翔旭鹏泽晨辰"
    "士以建家致树炎德行时泰盛雄琛钧冠策腾楠榕风航弘"
)
REGIONS = {
    "520102": "贵州省贵阳市南明区", "520103": "贵州省贵阳市云岩区", "520302": "贵州省遵义市红花岗区",
    "522601": "贵州省凯里市", "440106": "广东省广州市天河区", "510107": "四川省成都市武侯区",
    "430102": "湖南省长沙市芙蓉区", "330106": "浙江省杭州市西湖区", "420106": "湖北省武汉市武昌区",
    "530102": "云南省昆明市五华区", "450103": "广西壮族自治区南宁市青秀区", "500103": "重庆市渝中区",
}
ETHNIC = ["汉族"] * 8 + ["苗族", "布依族", "侗族", "土家族", "彝族"]
SCHOOLS = ["贵州大学", "贵州师范大学", "贵州财经大学", "遵义医科大学", "四川大学", "湖南师范大学",
           "华南理工大学", "云南大学", "武汉理工大学", "重庆邮电大学", "贵州民族大学", "凯里学院"]
MAJORS = ["汉语言文学", "会计学", "计算机科学与技术", "土木工程", "临床医学", "市场营销", "英语",
          "机械设计制造及其自动化", "法学", "行政管理", "电子信息工程", "财务管理"]
EMPLOYERS = ["贵阳市某建筑工程有限公司", "遵义市某商贸有限责任公司", "贵州某信息技术有限公司",
             "广州市某电子科技有限公司", "成都某物流有限公司", "贵州某酒业股份有限公司",
             "凯里市某农业开发合作社", "深圳市某通信设备有限公司", "贵阳某医药连锁有限公司"]
POSTS = ["技术员", "会计", "销售经理", "行政专员", "软件工程师", "施工员", "质量检验员", "人事主管"]
AGENCIES = ["贵州省人才交流服务中心", "贵阳市人才服务中心", "遵义市人才服务中心", "黔东南州人才服务中心"]


@dataclass
class Person:
    name: str
    gender: str
    born: dt.date
    region_code: str
    ethnic: str
    school: str
    major: str
    graduated: dt.date
    employer: str
    post: str
    id_number: str

    @property
    def native_place(self) -> str:
        return REGIONS[self.region_code]


def make_person(rng: random.Random) -> Person:
    surname = rng.choice(SURNAMES)
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
    gender = rng.choice("男女")
    born = dt.date(1965, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 35))
    region = rng.choice(sorted(REGIONS))
    order = rng.randrange(0, 100)
    sex_digit = rng.choice("13579" if gender == "男" else "02468")
    first17 = f"{region}{born:%Y%m%d}{order:02d}{sex_digit}"
    graduated = dt.date(born.year + 22, 7, 1)
    return Person(surname + given, gender, born, region, rng.choice(ETHNIC), rng.choice(SCHOOLS),
                  rng.choice(MAJORS), graduated, rng.choice(EMPLOYERS), rng.choice(POSTS),
                  first17 + check_digit(first17))


def cn_date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def history(p: Person, rng: random.Random) -> list[str]:
    """Study and work history lines, in order."""
    start = dt.date(p.born.year + 18, 9, 1)
    lines = [f"{start.year}.09—{p.graduated.year}.07 在{p.school}{p.major}专业学习"]
    year = p.graduated.year
    for _ in range(rng.randint(2, 4)):
        end = year + rng.randint(1, 5)
        lines.append(f"{year}.{rng.randint(1, 12):02d}—{end}.{rng.randint(1, 12):02d} "
                     f"在{rng.choice(EMPLOYERS)}任{rng.choice(POSTS)}")
        year = end
    return lines


AUTOBIOGRAPHY = [
    "我叫{name}，{gender}，{born}出生于{place}，{ethnic}。",
    "我的父母都是普通劳动者，从小教育我做人要诚实，做事要踏实。",
    "{start}年我考入{school}{major}专业学习，在校期间刻苦钻研专业知识，积极参加社会实践活动。",
    "毕业后我到{employer}工作，担任{post}，工作中服从安排，认真负责，多次受到单位表扬。",
    "我始终坚持学习政治理论和业务知识，努力提高自身素质，遵守国家法律法规和单位规章制度。",
    "在今后的工作中，我将继续发扬优点，克服不足，为社会多做贡献。",
    "我没有受过任何处分，家庭成员和主要社会关系均无政治历史问题。",
    "以上情况属实，如有不实之处，本人愿承担相应责任。",
]
APPRAISAL = [
    "该同志政治立场坚定，拥护党的路线方针政策，遵纪守法，作风正派。",
    "工作积极主动，责任心强，能够按时保质完成各项工作任务。",
    "业务能力较强，善于学习新知识、新技能，在{post}岗位上表现突出。",
    "团结同事，乐于助人，群众基础较好。",
    "不足之处是创新意识有待进一步加强。",
    "经考核，该同志{year}年度考核等次为{grade}。",
]
SELF_ASSESSMENT = [
    "大学四年，我在{school}{major}专业系统学习了专业基础理论知识。",
    "学习上勤奋刻苦，成绩优良，通过了全国大学英语四级考试和计算机等级考试。",
    "思想上积极要求进步，认真学习政治理论，关心国家大事。",
    "生活上艰苦朴素，与同学相处融洽，积极参加学校组织的各项文体活动。",
    "毕业实习期间，我在{employer}参与了实际工作，提高了分析问题和解决问题的能力。",
]
AWARD = [
    "关于表彰{year}年度先进个人的决定",
    "各部门：",
    "{year}年，全体员工团结协作，扎实工作，圆满完成了年度各项目标任务，涌现出一批先进典型。",
    "为表彰先进，树立典型，经研究决定，授予{name}同志“{year}年度先进个人”荣誉称号，并给予通报表扬。",
    "希望受表彰的同志珍惜荣誉，戒骄戒躁，再创佳绩。",
    "{employer}",
    "{date}",
]


def fill(lines: list[str], p: Person, rng: random.Random, year: int) -> list[str]:
    values = {
        "name": p.name, "gender": p.gender, "born": cn_date(p.born), "place": p.native_place,
        "ethnic": p.ethnic, "start": p.born.year + 18, "school": p.school, "major": p.major,
        "employer": p.employer, "post": p.post, "year": year,
        "grade": rng.choice(["优秀", "合格", "称职"]), "date": cn_date(dt.date(year + 1, 1, 15)),
    }
    return [line.format(**values) for line in lines]
