from ocr.quality import cer, corpus_cer
from ocr.text import normalise


def test_spaces_between_chinese_characters_removed():
    assert normalise("流 动 人 员 人 事 档 案") == "流动人员人事档案"
    assert normalise("在 贵州 大学 学习") == "在贵州大学学习"


def test_fullwidth_punctuation_after_chinese():
    assert normalise("姓名: 张三") == "姓名：张三"
    assert normalise("学习 , 工作 ; 生活") == "学习，工作；生活"
    assert normalise("(贵州)") == "（贵州）"


def test_latin_digits_and_times_keep_their_punctuation():
    assert normalise("1990.09—1992.07 at 10:30, ok") == "1990.09—1992.07 at 10:30, ok"
    assert normalise("English text stays as is") == "English text stays as is"
    assert normalise("  \n\n 张三 \n") == "张三"


def test_cer():
    assert cer("流动人员", "流动人员") == 0
    assert cer("流动 人员", "流动人员") == 0  # whitespace is not counted
    assert cer("流动人员", "流动人") == 0.25
    assert cer("", "") == 0 and cer("", "x") == 1
    assert corpus_cer([("ab", "ab"), ("cdef", "cdxf")]) == 1 / 6
